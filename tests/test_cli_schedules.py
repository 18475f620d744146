"""``anynet train --lr-schedule``: scikit-learn's schedules from the command line, their
settings kept in the model file and the checkpoint's run, and their words the flags'."""

from __future__ import annotations

import pytest
from cli_helpers import anynet_cmd
from test_train_cli import needs_data

import anynet

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


QUICK = ["--limit", "500", "--epochs", "1", "--hidden", "8", "--quiet", "--solver", "sgd"]


@needs_data
@pytest.mark.parametrize(
    ("flags", "settings"),
    [
        (["--lr-schedule", "invscaling", "--power-t", "0.25"], ("invscaling", 0.25, 2**31 - 1)),
        (["--lr-schedule", "adaptive", "--patience", "3"], ("adaptive", 0.5, 3)),
        ([], ("constant", 0.5, 2**31 - 1)),
    ],
)
def test_the_schedule_flags_reach_the_model(flags, settings, tmp_path):
    out = anynet_cmd("train", *QUICK, *flags, "--out", str(tmp_path / "m.safetensors"))
    assert out.returncode == 0, out.stderr
    clf = anynet.load(tmp_path / "m.safetensors")
    assert (clf.learning_rate, clf.power_t, clf.n_iter_no_change) == settings
    if flags:
        assert f"lr 0.001 {settings[0]}" in out.stderr  # what it trains, said at the start


@needs_data
def test_resuming_under_another_power_t_names_the_flag(tmp_path):
    args = [*QUICK, "--lr-schedule", "invscaling", "--out", str(tmp_path / "m.safetensors")]
    args += ["--checkpoint-dir", str(tmp_path / "ck")]
    assert anynet_cmd("train", *args).returncode == 0
    out = anynet_cmd("train", *args, "--resume", "--power-t", "0.7")
    assert out.returncode == 1
    assert "    --power-t: the checkpoint's run has 0.5, this one 0.7" in out.stderr


@needs_data
def test_an_sgd_schedule_with_adam_warns_in_flags(tmp_path):
    args = [a for a in QUICK if a not in ("--solver", "sgd")]
    out = anynet_cmd(
        "train", *args, "--lr-schedule", "adaptive", "--out", str(tmp_path / "m.safetensors")
    )
    assert out.returncode == 0, out.stderr
    assert (
        "anynet train: warning: --lr-schedule 'adaptive' applies to --solver 'sgd' only, as in "
        "scikit-learn: --solver 'adam' trains at the constant --lr 0.001." in out.stderr
    )


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--power-t", "-1", "argument --power-t: expected a finite number >= 0"),
        ("--patience", "0", "argument --patience: expected a positive integer"),
        ("--lr-schedule", "linear", "argument --lr-schedule: invalid choice: 'linear'"),
    ],
)
def test_bad_schedule_flags_are_refused_by_name(flag, value, said):
    out = anynet_cmd("train", flag, value)
    assert out.returncode == 2
    assert said in out.stderr and len(out.stderr.strip().splitlines()) == 1
