"""The command's errors speak the command line's words: the flag the user typed (``--data-dir``,
``--no-download``, ``--hidden``), not the Python argument behind it (``data_dir=``,
``download=False``); malformed values are refused where they are parsed, naming the flag.

Runs that must fail before any data is read point ``--data-dir`` at an empty folder with
``--no-download``: a value accepted by mistake shows as an error about Fashion-MNIST instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def anynet_cmd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANYNET_BACKEND": "numpy"}
    env.pop("ANYNET_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "anynet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def no_data(tmp_path) -> list[str]:
    empty = tmp_path / "no-data"
    empty.mkdir()
    return ["--data-dir", str(empty), "--no-download"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--hidden", "64,,32"),  # an empty item was dropped: a 64-32 network, without a word
        ("--hidden", "64,"),
        ("--hidden", ",64"),
        ("--hidden", "1_000"),  # int() reads it; nobody means it
        ("--hidden", "64;32"),
        ("--hidden", "0"),
        ("--momentum", "2"),  # was refused only after the data loaded, as momentum=
        ("--momentum", "1"),
        ("--dropout", "1"),
        ("--seed", "-1"),  # was "expected non-negative integer", after the data loaded
        ("--seed", "1.5"),
    ],
)
def test_malformed_values_are_refused_naming_the_flag(flag, value, no_data):
    out = anynet_cmd("train", *no_data, f"{flag}={value}")
    assert out.returncode == 2, out.stderr
    assert f"argument {flag}:" in out.stderr and repr(value) in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "sizes"),
    [("64,32", "784-64-32-10"), (" 64 , 32 ", "784-64-32-10"), ("8", "784-8-10")],
)
def test_well_formed_hidden_sizes_still_parse(value, sizes, no_data):
    from anynet.cli import build_parser

    args = build_parser().parse_args(["train", "--hidden", value])
    assert "-".join(str(s) for s in (784, *args.hidden, 10)) == sizes
