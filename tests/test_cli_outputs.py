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
from cli_helpers import anynet_cmd

from anynet.training import CHECKPOINT_NAME

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc: a folder nobody can write in"
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


# --- outputs that would replace each other, or an input -------------------------------------


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A checkpoint folder holding a run's checkpoint and lock, as a killed run leaves them."""
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / CHECKPOINT_NAME).write_bytes(b"a run's checkpoint")
    (ck / "checkpoint.lock").write_text("pid 1\n")
    return ck


@pytest.mark.parametrize(
    "out",
    [
        "ck/checkpoint.safetensors",
        "ck/checkpoint.lock",  # the run empties it for its lock; a later run would too
        "link/checkpoint.safetensors",  # a symlink to the folder
        "ck/../ck/checkpoint.safetensors",
        "other/../ck/checkpoint.lock",
    ],
)
def test_out_that_is_the_resumed_checkpoint(out, tmp_path, run_folder, no_data):
    # The model used to replace the checkpoint at the end of the run, and every later resume
    # failed: the run could not be continued.
    (tmp_path / "link").symlink_to(run_folder)
    (tmp_path / "other").mkdir()
    before = {p.name: p.read_bytes() for p in run_folder.iterdir()}
    out = anynet_cmd(
        "train", *no_data, "--checkpoint-dir", str(run_folder), "--resume",
        "--out", str(tmp_path / out),
    )  # fmt: skip
    refused_before_the_work(out, "--out", "give --out another")
    assert {p.name: p.read_bytes() for p in run_folder.iterdir()} == before


@pytest.mark.parametrize("name", [CHECKPOINT_NAME, "checkpoint.lock"])
def test_out_in_a_fresh_checkpoint_folder_with_its_names(name, tmp_path, no_data):
    # No checkpoint yet: the run's first checkpoint would be replaced by the model at the end
    # (or the model by the next checkpoint, or emptied by the next run's lock).
    (tmp_path / "ck").mkdir()
    out = anynet_cmd(
        "train", *no_data, "--checkpoint-dir", str(tmp_path / "ck"),
        "--out", str(tmp_path / "ck" / name),
    )  # fmt: skip
    refused_before_the_work(out, "--out", "--checkpoint-dir", "would replace each other")


def test_out_that_is_another_runs_checkpoint(tmp_path, run_folder, no_data):
    # Not this run's --checkpoint-dir, but a run's all the same: its checkpoint would be lost.
    out = anynet_cmd("train", *no_data, "--out", str(run_folder / CHECKPOINT_NAME))
    refused_before_the_work(out, "--out", "is the checkpoint of the run", str(run_folder))
    assert (run_folder / CHECKPOINT_NAME).read_bytes() == b"a run's checkpoint"


def test_a_model_beside_the_checkpoint_is_fine(tmp_path, run_folder, no_data):
    # Only the checkpoint folder's own files are refused, not the folder.
    out = anynet_cmd(
        "train", *no_data, "--checkpoint-dir", str(run_folder), "--resume",
        "--out", str(run_folder / "model.safetensors"),
    )  # fmt: skip
    assert out.returncode == 1 and "Fashion-MNIST" in out.stderr  # got as far as the data


def test_out_that_is_a_symlink_to_the_checkpoint_replaces_only_the_symlink(
    tmp_path, run_folder, no_data
):
    # The model is written whole and renamed to --out: a symlink there is replaced, not what it
    # points to. Not a clash, so not refused.
    (tmp_path / "m.safetensors").symlink_to(run_folder / CHECKPOINT_NAME)
    out = anynet_cmd(
        "train", *no_data, "--checkpoint-dir", str(run_folder), "--resume",
        "--out", str(tmp_path / "m.safetensors"),
    )  # fmt: skip
    assert out.returncode == 1 and "Fashion-MNIST" in out.stderr  # got as far as the data


@pytest.mark.parametrize("name", ["t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte"])
def test_out_named_as_a_fashion_mnist_file(name, tmp_path, no_data):
    data = Path(no_data[1]) / name
    data.write_bytes(b"the data")
    out = anynet_cmd("train", *no_data, "--out", str(data))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"anynet train: error: --out {data} is named as Fashion-MNIST's")
    assert len(out.stderr.strip().splitlines()) == 1  # not the data's not-found message
    assert data.read_bytes() == b"the data"


@pytest.mark.parametrize("flag", ["--checkpoint-dir", "--plots"])
@pytest.mark.parametrize("where", ["", "sub"])
def test_out_where_the_run_makes_a_folder(flag, where, tmp_path, no_data):
    # The run makes the folder, then cannot write the model where it is: it used to fail only
    # then, with the trained model lost.
    out_path = tmp_path / "run"
    out = anynet_cmd("train", *no_data, flag, str(out_path / where), "--out", str(out_path))
    refused_before_the_work(out, "--out", "a folder the run makes first")


def test_out_that_is_a_plot(tmp_path, no_data):
    (tmp_path / "plots").mkdir()
    out = anynet_cmd(
        "train", *no_data, "--plots", str(tmp_path / "plots"),
        "--out", str(tmp_path / "plots" / "tsne.png"),
    )  # fmt: skip
    refused_before_the_work(out, "--out", "--plots", "tsne.png", "would replace each other")


def test_plot_symlinked_to_the_model(tmp_path, no_data):
    # A plot is written through a symlink of its name: to the model file, here.
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "learning_curves.png").symlink_to(tmp_path / "m.safetensors")
    out = anynet_cmd(
        "train", *no_data, "--plots", str(tmp_path / "plots"),
        "--out", str(tmp_path / "m.safetensors"),
    )  # fmt: skip
    refused_before_the_work(out, "--out", "--plots", "learning_curves.png")


def test_plot_that_is_a_folder(tmp_path, no_data):
    (tmp_path / "plots" / "tsne.png").mkdir(parents=True)
    out = anynet_cmd("train", *no_data, "--plots", str(tmp_path / "plots"))
    refused_before_the_work(out, "--plots", "tsne.png in it is a folder")


@pytest.mark.parametrize("how", ["in the folder", "symlink"])
def test_evaluate_plot_that_is_the_model(how, tmp_path, no_data):
    # evaluate --plots P writes P/confusion_matrix.png: never over the model it evaluates.
    plots = tmp_path / "plots"
    plots.mkdir()
    if how == "in the folder":
        model = plots / "confusion_matrix.png"
    else:
        model = tmp_path / "m.safetensors"
        (plots / "confusion_matrix.png").symlink_to(model)
    model.write_bytes(b"a model")
    out = anynet_cmd("evaluate", str(model), *no_data, "--plots", str(plots))
    refused_before_the_work(out, "--plots", "the model being evaluated", "give --plots")
    assert model.read_bytes() == b"a model"


def test_out_where_the_data_is_to_be_downloaded(tmp_path):
    # The data would be downloaded into a new folder of that name, and the model then fail to
    # be written over the folder, after training.
    out = anynet_cmd("train", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "d"))
    refused_before_the_work(out, "--out", "which is --data-dir", "a folder the run makes")
    assert not (tmp_path / "d").exists()
