"""The `anynet` command: `info` tells the truth about backends; errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize(
    ("env", "step"),
    [({}, "fused cpu"), ({"ANYNET_NUMBA": "0"}, "fused cpu (NumPy passes only: ANYNET_NUMBA=0)")],
)
def test_info_says_which_cpu_step_trains_and_why(capsys, monkeypatch, env, step):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["info"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"training step on the CPU (numpy): {step}")
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cpu_training_step"]["name"].startswith("fused")


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
