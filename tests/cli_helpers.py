"""Running the ``anynet`` command in a subprocess, as a user would, for the command's tests."""

from __future__ import annotations

import os
import subprocess
import sys


def anynet_cmd(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python -m anynet *args`` on NumPy, its output captured as text."""
    env = {**os.environ, "ANYNET_BACKEND": "numpy", "PYTHONUNBUFFERED": "1"}
    env.pop("ANYNET_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "anynet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )
