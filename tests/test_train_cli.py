"""`anynet train / evaluate / predict` as a user types them, on the real Fashion-MNIST files
(CI installs Debian's dataset-fashion-mnist), and a training run killed and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import anynet_cmd

import anynet
from anynet.datasets import load_fashion_mnist

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def have_data() -> bool:
    try:
        load_fashion_mnist("test", download=False)
    except anynet.AnynetError:
        return False
    return True


needs_data = pytest.mark.skipif(not have_data(), reason="Fashion-MNIST not installed here")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    out = anynet_cmd(
        "train",
        "--limit",
        "3000",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--out",
        str(d / "m.safetensors"),
        "--plots",
        str(d / "plots"),
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    return d, out


@needs_data
def test_train_writes_model_and_plots(trained):
    d, out = trained
    assert "test accuracy" in out.stdout
    accuracy = float(out.stdout.split("test accuracy ")[1].split("%")[0]) / 100
    assert 0.6 < accuracy <= 1.0  # 3000 images, 2 epochs: well above chance (10%)
    clf = anynet.load(d / "m.safetensors")
    assert clf.n_iter_ == 2 and clf.n_features_in_ == 784
    for name in ("learning_curves", "predictions", "probabilities", "confusion_matrix", "tsne"):
        png = (d / "plots" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name


@needs_data
def test_evaluate_reports_accuracy_and_confusion(trained):
    d, _ = trained
    out = anynet_cmd("evaluate", str(d / "m.safetensors"))
    assert out.returncode == 0, out.stderr
    assert "accuracy" in out.stdout and "Ankle boot" in out.stdout
    assert "confusion matrix" in out.stdout
    clf = anynet.load(d / "m.safetensors")
    X, y = load_fashion_mnist("test")
    assert f"{np.mean(clf.predict(X) == y):.3f}" in out.stdout


@needs_data
def test_predict_png_and_idx(trained, tmp_path):
    from PIL import Image

    d, _ = trained
    X, _ = load_fashion_mnist("test")
    Image.fromarray(X[0]).save(tmp_path / "boot.png")
    out = anynet_cmd(
        "predict",
        str(d / "m.safetensors"),
        str(tmp_path / "boot.png"),
        "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "--top",
        "2",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 + 10000
    clf = anynet.load(d / "m.safetensors")
    names = anynet.datasets.FASHION_MNIST_CLASSES
    assert lines[0].startswith(f"{tmp_path / 'boot.png'}: {names[int(clf.predict(X[:1])[0])]}")


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["train", "--epochs", "0"], 2, "expected a positive integer"),
        (["train", "--hidden", "256,x"], 2, "hidden layer sizes"),
        (["train", "--lr", "-1"], 2, "expected a finite number >= 0"),
        (["train", "--resume"], 1, "--resume needs --checkpoint-dir"),
        (["train", "--data-dir", "/nonexistent", "--no-download"], 1, "/nonexistent"),
        (["evaluate", "missing.safetensors"], 1, "missing.safetensors"),
        (["train", "--backend", "tensorflow"], 1, "unknown backend"),
    ],
)
def test_bad_arguments_give_one_line(args, code, needle):
    out = anynet_cmd(*args)
    assert out.returncode == code, out.stderr
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@needs_data
def test_bad_files_give_one_line(trained, tmp_path):
    d, _ = trained
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    out = anynet_cmd("predict", str(d / "m.safetensors"), str(text))
    assert out.returncode == 1 and "not a PNG/JPEG" in out.stderr
    assert "Traceback" not in out.stderr
    tampered = tmp_path / "tampered.safetensors"
    blob = bytearray((d / "m.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    tampered.write_bytes(bytes(blob))
    out = anynet_cmd("evaluate", str(tampered))
    assert out.returncode == 1 and "modified or corrupted" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


TRAIN = [
    "train",
    "--limit",
    "8000",
    "--epochs",
    "5",
    "--hidden",
    "64",
    "--dropout",
    "0.1",
    "--quiet",
    "--seed",
    "3",
]


def coefs(path: Path) -> list[np.ndarray]:
    clf = anynet.load(path)
    return clf.coefs_ + clf.intercepts_


@needs_data
@pytest.mark.parametrize("how", ["kill", "ctrl-c", "sigterm"])
def test_killed_run_resumes_to_identical_weights(tmp_path, how):
    """SIGKILL (no chance to save) or SIGINT (Ctrl-C: saves, exits cleanly) mid-run; resuming
    from the checkpoint ends with the weights of an uninterrupted run, bit for bit."""
    from anynet.io import load_checkpoint

    straight = anynet_cmd(*TRAIN, "--out", str(tmp_path / "straight.safetensors"))
    assert straight.returncode == 0, straight.stderr

    ckdir = tmp_path / "ck"
    env = {**os.environ, "ANYNET_BACKEND": "numpy"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anynet",
            *TRAIN,
            "--checkpoint-dir",
            str(ckdir),
            "--out",
            str(tmp_path / "never.safetensors"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A shell that runs the suite in the background ignores SIGINT for its children.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ckpt = ckdir / "checkpoint.safetensors"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    sent = {"kill": signal.SIGKILL, "ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM}[how]
    proc.send_signal(sent)
    _, err = proc.communicate(timeout=120)
    if how == "kill":
        assert proc.returncode == -signal.SIGKILL
    else:  # saved at the end of the step in progress, and a clean exit
        assert proc.returncode == 128 + sent, err
        said = "interrupted" if how == "ctrl-c" else "stopped by SIGTERM"
        assert said in err and "--resume" in err and "Traceback" not in err
    stopped_at = load_checkpoint(ckpt, backend="numpy").epoch
    assert stopped_at < 5, "the run finished before it could be interrupted"

    resumed = anynet_cmd(
        *TRAIN,
        "--checkpoint-dir",
        str(ckdir),
        "--resume",
        "--out",
        str(tmp_path / "resumed.safetensors"),
    )
    assert resumed.returncode == 0, resumed.stderr
    for a, b in zip(
        coefs(tmp_path / "resumed.safetensors"),
        coefs(tmp_path / "straight.safetensors"),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    clf = anynet.load(tmp_path / "resumed.safetensors")
    assert clf.n_iter_ == 5 and len(clf.history_["val_accuracy"]) == 5


@needs_data
def test_resume_with_more_epochs_extends_the_run(tmp_path):
    """A finished run continued with a larger --epochs ends as a run that had asked for them all
    from the start: --epochs is not part of what a checkpoint holds its run to."""
    args = ["train", "--limit", "1000", "--hidden", "16", "--quiet"]
    ck = ["--checkpoint-dir", str(tmp_path / "ck")]
    first = anynet_cmd(*args, *ck, "--epochs", "1", "--out", str(tmp_path / "one.safetensors"))
    assert first.returncode == 0, first.stderr
    more = anynet_cmd(
        *args, *ck, "--epochs", "2", "--resume", "--out", str(tmp_path / "more.safetensors")
    )
    assert more.returncode == 0, more.stderr
    assert "after 2 epochs" in more.stdout
    straight = anynet_cmd(*args, "--epochs", "2", "--out", str(tmp_path / "two.safetensors"))
    assert straight.returncode == 0, straight.stderr
    for a, b in zip(
        coefs(tmp_path / "more.safetensors"), coefs(tmp_path / "two.safetensors"), strict=True
    ):
        np.testing.assert_array_equal(a, b)


@needs_data
@pytest.mark.parametrize("checkpoints", [True, False])
def test_a_model_that_cannot_be_written_says_where_it_is(
    tmp_path, monkeypatch, capsys, checkpoints
):
    """--out checked at the start can still fail at the end (a full disk): the error says
    whether the trained model is kept, and the --resume it suggests writes it."""
    from anynet.cli import main

    args = ["train", "--limit", "1000", "--epochs", "1", "--hidden", "8", "--quiet"]
    args += ["--out", str(tmp_path / "m.safetensors")]
    ck = ["--checkpoint-dir", str(tmp_path / "ck")] if checkpoints else []

    def disk_full(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.delenv("ANYNET_DEBUG", raising=False)
    with monkeypatch.context() as m:
        m.setattr(anynet, "save", disk_full)
        assert main([*args, *ck]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"anynet train: error: --out {tmp_path / 'm.safetensors'}: No space")
    assert not (tmp_path / "m.safetensors").exists()
    if not checkpoints:
        assert "the trained model is lost" in error
        return
    assert "rerun this command with --resume" in error
    again = anynet_cmd(*args, *ck, "--resume")
    assert again.returncode == 0, again.stderr
    assert anynet.load(tmp_path / "m.safetensors").n_iter_ == 1
