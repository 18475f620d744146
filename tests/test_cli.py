"""The `anynet` command: `info` tells the truth about backends; errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys

import anynet
from anynet.cli import main


def test_info_lists_every_backend_truthfully(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"anynet {anynet.__version__}" in out
    for s in anynet.backend_status():
        line = next(line for line in out.splitlines() if line.startswith(s.name + " "))
        assert ("yes" if s.available else "no") in line.split()[1]


def test_info_json_agrees_with_available_backends(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [b["name"] for b in data["backends"] if b["available"]]
    assert names == anynet.available_backends()
    assert all(b["reason"] for b in data["backends"] if not b["available"])


def test_console_script_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "anynet", "info"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "numpy" in out.stdout


def test_bad_command_is_a_usage_error_not_a_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "anynet", "frobnicate"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr and "Traceback" not in out.stderr
