"""`anynet train` and `evaluate --plots` refuse a path they could not write before any work:
a bad ``--out``, ``--plots`` or ``--checkpoint-dir`` used to fail only after training, and the
trained model was lost. ``--resume`` with no checkpoint to resume is refused as well, rather than
silently training from scratch.

Each run points ``--data-dir`` at an empty folder with ``--no-download``: were the paths checked
only after loading the data, the error would be about Fashion-MNIST, not about the flag. So these
tests need no data and train nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from anynet.training import CHECKPOINT_NAME

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc: a folder nobody can write in"
)


def anynet_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANYNET_BACKEND": "numpy"}
    env.pop("ANYNET_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "anynet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def refused_before_the_work(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Fashion-MNIST" not in out.stderr  # the data was not even looked for


@pytest.fixture
def no_data(tmp_path) -> list[str]:
    empty = tmp_path / "no-data"
    empty.mkdir()
    return ["--data-dir", str(empty), "--no-download"]


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def test_out_in_a_missing_folder_names_the_folder(tmp_path, no_data):
    # As torch.save does: a model file's folder is not created behind the user's back (a typo
    # in it would hide the model somewhere unexpected).
    missing = tmp_path / "no-such-folder"
    out = anynet_cmd("train", *no_data, "--out", str(missing / "m.safetensors"))
    refused_before_the_work(out, "--out", str(missing), "does not exist")
    assert not missing.exists()


def test_out_that_is_a_folder(tmp_path, no_data):
    out = anynet_cmd("train", *no_data, "--out", str(tmp_path))
    refused_before_the_work(out, "--out", "is a folder", str(tmp_path / "model.safetensors"))


def test_out_that_is_not_a_regular_file(tmp_path, no_data):
    # A FIFO (or, as root, /dev/null) would be replaced by the model file.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = anynet_cmd("train", *no_data, "--out", str(fifo))
    refused_before_the_work(out, "--out", "not a regular file")


def test_out_whose_name_is_too_long(tmp_path, no_data):
    name = "m" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1)
    out = anynet_cmd("train", *no_data, "--out", str(tmp_path / name))
    refused_before_the_work(out, "--out", "file name", "bytes long")


@linux_only
def test_out_in_a_folder_that_cannot_be_written(no_data):
    # /proc takes no new files, even from root (a chmod would not stop root).
    out = anynet_cmd("train", *no_data, "--out", "/proc/m.safetensors")
    refused_before_the_work(out, "--out", "cannot write in /proc")


@pytest.mark.parametrize("flag", ["--plots", "--checkpoint-dir"])
def test_output_folder_that_is_a_file(flag, a_file, no_data):
    # It used to be a bare "[Errno 17] File exists" after the whole run.
    out = anynet_cmd("train", *no_data, flag, str(a_file))
    refused_before_the_work(out, flag, str(a_file), "is a file, not a folder")


@pytest.mark.parametrize("flag", ["--plots", "--checkpoint-dir"])
def test_output_folder_under_a_file(flag, a_file, no_data):
    out = anynet_cmd("train", *no_data, flag, str(a_file / "sub"))
    refused_before_the_work(out, flag, "cannot be created", str(a_file))


@linux_only
def test_checkpoint_folder_that_cannot_be_created(no_data):
    out = anynet_cmd("train", *no_data, "--checkpoint-dir", "/proc/anynet-ck")
    refused_before_the_work(out, "--checkpoint-dir", "cannot be created", "/proc")


def test_a_missing_output_folder_is_fine_and_left_for_the_run(tmp_path, no_data):
    # Folders the run writes into are created by it, parents too; checking creates nothing.
    plots, ck = tmp_path / "a" / "plots", tmp_path / "b" / "ck"
    out = anynet_cmd("train", *no_data, "--plots", str(plots), "--checkpoint-dir", str(ck))
    assert out.returncode == 1 and "Fashion-MNIST" in out.stderr  # got as far as the data
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_evaluate_plots_checked_before_loading_anything(a_file, no_data):
    out = anynet_cmd("evaluate", "missing.safetensors", *no_data, "--plots", str(a_file))
    refused_before_the_work(out, "--plots", "is a file, not a folder")


def test_resume_from_a_folder_that_does_not_exist(tmp_path, no_data):
    typo = tmp_path / "chekpoints"
    out = anynet_cmd("train", *no_data, "--checkpoint-dir", str(typo), "--resume")
    refused_before_the_work(out, "--resume", "--checkpoint-dir", str(typo), "does not exist")


def test_resume_from_a_folder_without_a_checkpoint(tmp_path, no_data):
    # A run killed before its first checkpoint leaves a folder (and its lock file), no more.
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.lock").write_text("pid 1\n")
    out = anynet_cmd("train", *no_data, "--checkpoint-dir", str(tmp_path / "ck"), "--resume")
    refused_before_the_work(out, "--resume", "--checkpoint-dir", f"no {CHECKPOINT_NAME}")


def test_resume_from_a_checkpoint_that_is_not_a_file(tmp_path, no_data):
    (tmp_path / "ck" / CHECKPOINT_NAME).mkdir(parents=True)
    out = anynet_cmd("train", *no_data, "--checkpoint-dir", str(tmp_path / "ck"), "--resume")
    refused_before_the_work(out, "--resume", "not a regular file")


def test_a_fresh_run_does_not_overwrite_a_checkpoint(tmp_path, no_data):
    # Rerunning a killed run's command without --resume would overwrite its last checkpoint at
    # the first epoch's end: the work it held would be lost.
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / CHECKPOINT_NAME).write_bytes(b"a previous run's")
    out = anynet_cmd("train", *no_data, "--checkpoint-dir", str(tmp_path / "ck"))
    refused_before_the_work(out, "--checkpoint-dir", "already holds", "--resume")
    assert (tmp_path / "ck" / CHECKPOINT_NAME).read_bytes() == b"a previous run's"


def test_out_written_as_a_folder(tmp_path, no_data):
    # 'models/' names a folder: it used to become a file called 'models' when it did not exist.
    folder = f"{tmp_path / 'models'}{os.sep}"
    out = anynet_cmd("train", *no_data, "--out", folder)
    assert out.returncode == 2 and "argument --out:" in out.stderr, out.stderr
    assert f"{folder}model.safetensors" in out.stderr
    assert not (tmp_path / "models").exists()
