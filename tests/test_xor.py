"""The seed's XOR warm-up, run from examples/xor.py, learns the truth table on every backend."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "xor.py"
xor = runpy.run_path(str(EXAMPLE), run_name="xor_example")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_xor_is_learned(backend, seed):
    be, model, params = xor["train_xor"](backend, seed=seed)
    probs = xor["predict"](be, model, params)
    np.testing.assert_array_equal(probs > 0.5, [False, True, True, False])
    assert np.all(np.abs(probs - [0, 1, 1, 0]) < 0.1), probs


def test_untrained_network_does_not_know_xor():
    """The check above can fail: before training the same network gets XOR wrong."""
    be, model, params = xor["train_xor"]("numpy", seed=0, epochs=0)
    probs = xor["predict"](be, model, params)
    assert not np.all(np.abs(probs - [0, 1, 1, 0]) < 0.1)


def test_example_script_runs_and_reports():
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "learned XOR" in out.stdout
