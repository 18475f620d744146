"""Reliability: nothing lost, nothing silent. One test per fault class of the reliability issue.

Each test names its class and tries the faults an adversary found in it: data loss, resume that
is not exact, hostile files, divergence, non-finite weights, outputs checked too late, wrong
answers from the command line. Finer-grained tests of each piece live beside it (test_io_*,
test_idx, test_train_cli, test_training); these are the end-to-end guarantees.
"""

from __future__ import annotations

import math
import os
import threading
import tracemalloc
import zlib

import numpy as np
import pytest
from cli_helpers import anynet_cmd
from sklearn.datasets import make_classification

import anynet
from anynet import NNClassifier
from anynet.datasets import read_idx
from anynet.errors import (
    CheckpointLockedError,
    CheckpointMismatchError,
    DivergenceError,
    IDXFormatError,
    ModelFileError,
    NonFiniteLossError,
)
from anynet.io import load_checkpoint
from anynet.training import Callback, Checkpointer, TrainState

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X, Y = make_classification(
    n_samples=300, n_features=12, n_informative=8, n_classes=3, class_sep=2.0, random_state=1
)


class StopAt(Callback):
    """Ctrl-C at an exact optimizer step, as the loop sees it."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def same_weights(a, b):
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(x, y)


# --- 1. data loss -----------------------------------------------------------------------------


def test_1_a_non_finite_or_diverged_step_never_overwrites_a_good_checkpoint(tmp_path):
    """With checkpoints every few steps, the write after a bad step replaced the last good one,
    and every later resume failed: the run could not be recovered."""
    kw = dict(hidden_layer_sizes=(8,), batch_size=30, shuffle=False, random_state=0)
    bad = X.copy()
    bad[150:] *= 1e37  # finite, but the first layer's sums overflow float32 from batch 6 on
    with pytest.raises((NonFiniteLossError, DivergenceError), match=r"epoch 1, step 6 of"):
        NNClassifier(max_iter=3, checkpoint_steps=2, checkpoint_dir=tmp_path, **kw).fit(bad, Y)
    ckpt = load_checkpoint(tmp_path / "checkpoint.safetensors", backend="numpy")
    assert ckpt.step == 4 and all(np.isfinite(p).all() for p in ckpt.params.values())


def test_1_a_checkpoint_holds_parameters_whose_loss_was_checked(tmp_path):
    """A step's loss is that of the parameters before its update: with a checkpoint after
    every step, SGD at learning rate 1 saved the parameters of step 2 with a loss 159 times
    the first. A checkpoint is now written once the next batch's loss vouches for it."""
    kw = dict(solver="sgd", learning_rate_init=1.0, batch_size=30, shuffle=False)
    clf = NNClassifier((8,), max_iter=3, random_state=0, checkpoint_steps=1, **kw)
    with pytest.raises(DivergenceError, match=r"epoch 1, step \d+ of the epoch"):
        clf.set_params(checkpoint_dir=tmp_path).fit(X, Y)
    ckpt = load_checkpoint(tmp_path / "checkpoint.safetensors", backend="numpy")
    p, nxt = ckpt.params, slice(30 * ckpt.step, 30 * ckpt.step + 30)  # the batch after it
    logits = np.maximum(X[nxt] @ p["0.W"] + p["0.b"], 0) @ p["2.W"] + p["2.b"]
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    loss = -log_p[np.arange(30), Y[nxt]].mean()
    assert loss <= 100 * max(ckpt.extra["first_loss"], 1.0)


def test_1_a_fit_never_overwrites_another_runs_checkpoint(tmp_path):
    """A fit (or partial_fit) in a folder holding another run's checkpoint overwrote it
    silently; the command line refused. An estimator may overwrite only its own."""
    kw = dict(hidden_layer_sizes=(8,), batch_size=50, max_iter=3, random_state=0)
    with pytest.raises(KeyboardInterrupt):
        NNClassifier(**kw, checkpoint_dir=tmp_path).fit(X, Y, callbacks=[StopAt(8)])
    path = tmp_path / "checkpoint.safetensors"
    kept = path.read_bytes()
    other = NNClassifier(**{**kw, "learning_rate_init": 0.01}, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"checkpoint of another run(.|\n)*resume=True"):
        other.fit(X, Y)
    with pytest.raises(ValueError, match="checkpoint of another run"):
        other.partial_fit(X, Y, classes=np.unique(Y))
    assert path.read_bytes() == kept
    resumed = NNClassifier(**kw, checkpoint_dir=tmp_path, resume=True).fit(X, Y)
    resumed.fit(X, Y)  # its own checkpoint now: a second fit may replace it
    assert load_checkpoint(path, backend="numpy").step == resumed.n_iter_ * 6


# --- 2. early stopping and resume ------------------------------------------------------------


@pytest.mark.parametrize("stop_step", [24, 50])  # after the best epoch; after the run stopped
def test_2_an_interrupted_early_stopping_run_ends_as_an_uninterrupted_one(tmp_path, stop_step):
    """The best epoch's parameters were never saved: a run killed after its best epoch ended
    with other weights, and a run that had already stopped trained one more epoch."""
    kw = dict(
        hidden_layer_sizes=(8,),
        batch_size=45,
        max_iter=40,
        early_stopping=True,
        n_iter_no_change=2,
        learning_rate_init=0.05,
        random_state=3,
    )
    straight = NNClassifier(**kw).fit(X, Y)  # 6 steps an epoch; stops early
    assert straight.n_iter_ < 40
    interrupted = NNClassifier(**kw, checkpoint_dir=tmp_path)
    if stop_step < 6 * straight.n_iter_:
        with pytest.raises(KeyboardInterrupt):
            interrupted.fit(X, Y, callbacks=[StopAt(stop_step)])
    else:  # the whole run, stopped: resuming must not train on
        interrupted.fit(X, Y)
    resumed = NNClassifier(**kw, checkpoint_dir=tmp_path, resume=True).fit(X, Y)
    same_weights(resumed, straight)
    assert resumed.n_iter_ == straight.n_iter_
    assert resumed.validation_scores_ == straight.validation_scores_


# --- 3. resume is exact or refuses ------------------------------------------------------------


BASE = dict(hidden_layer_sizes=(8,), batch_size=50, max_iter=2, random_state=1, dropout=0.1)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"batch_size": 40}, "batch_size"),
        ({"learning_rate_init": 0.01}, "learning_rate_init"),
        ({"random_state": 2}, "seed"),
        ({"activation": "tanh"}, "network"),
        ({"dtype": "float64"}, "dtype"),
        ({"dropout": 0.2}, "network"),
        ({"solver": "sgd"}, "solver"),
        ({"data": "subset"}, "data"),
    ],
)
def test_3_resuming_another_run_is_refused_naming_each_difference(tmp_path, change, named):
    """Today a different batch size, learning rate, seed, activation, dtype, dropout or data
    subset resumed with exit 0 and no message; a different solver ended in a traceback."""
    NNClassifier(**BASE, checkpoint_dir=tmp_path).fit(X, Y)
    change = dict(change)
    data = X[:200] if change.pop("data", None) else X
    other = NNClassifier(**{**BASE, **change}, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointMismatchError, match=rf"another run(.|\n)*\n  {named}[.:\[]"):
        other.fit(data, Y[: len(data)])


def test_3_the_same_run_resumes_and_a_seedless_one_takes_the_checkpoints_seed(tmp_path):
    straight = NNClassifier(**{**BASE, "max_iter": 4}).fit(X, Y)
    NNClassifier(**BASE, checkpoint_dir=tmp_path).fit(X, Y)
    # max_iter may grow (a run extended); random_state=None resumes with the run's own seed.
    seedless = {**BASE, "max_iter": 4, "random_state": None}
    resumed = NNClassifier(**seedless, checkpoint_dir=tmp_path, resume=True).fit(X, Y)
    same_weights(resumed, straight)


def test_3_resume_without_a_checkpoint_is_refused_and_auto_starts_afresh(tmp_path):
    """resume=True with a mistyped folder trained from scratch without a word."""
    typo = tmp_path / "chekpoints"
    with pytest.raises(ValueError, match=r"holds no checkpoint(.|\n)*resume='auto'"):
        NNClassifier(**BASE, checkpoint_dir=typo, resume=True).fit(X, Y)
    with pytest.raises(ValueError, match="resume=True needs a checkpoint_dir"):
        NNClassifier(**BASE, resume=True).fit(X, Y)
    fresh = NNClassifier(**BASE, checkpoint_dir=typo, resume="auto").fit(X, Y)
    same_weights(fresh, NNClassifier(**BASE).fit(X, Y))
    again = NNClassifier(**BASE, checkpoint_dir=typo, resume="auto").fit(X, Y)  # resumes it
    same_weights(again, fresh)
    assert again.n_iter_ == fresh.n_iter_ == 2


def test_3_a_resumed_fit_counts_its_run_once_and_warm_start_with_resume_is_refused(tmp_path):
    """warm_start with resume counted the checkpoint's epochs twice (n_iter_, loss_curve_,
    t_); which parameters it continued from was not said."""
    clf = NNClassifier(**BASE, checkpoint_dir=tmp_path).fit(X, Y)
    clf.set_params(resume=True).fit(X, Y)  # the finished run, resumed: nothing more to do
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2 and clf.t_ == 2 * len(X)
    with pytest.raises(ValueError, match="warm_start=True and resume"):
        clf.set_params(warm_start=True).fit(X, Y)


def test_3_resuming_cannot_undo_epochs(tmp_path):
    """--epochs 2 on a 3-epoch checkpoint printed "2 epochs", then "after 3 epochs", exit 0."""
    NNClassifier(**{**BASE, "max_iter": 3}, checkpoint_dir=tmp_path).fit(X, Y)
    with pytest.raises(ValueError, match=r"max_iter=2, but the checkpoint's run has trained 3"):
        NNClassifier(**BASE, checkpoint_dir=tmp_path, resume=True).fit(X, Y)


def test_3_one_writer_per_checkpoint_folder_and_no_orphans(tmp_path):
    orphan = tmp_path / ".anynet-0123456789abcdef.tmp"  # anynet.io.TEMPORARY_FILES
    orphan.write_bytes(b"half a checkpoint, from a killed write")
    first, second = Checkpointer(tmp_path), Checkpointer(tmp_path)
    first.on_train_begin(TrainState())
    assert not orphan.exists()
    try:
        with pytest.raises(CheckpointLockedError, match=r"another run \(pid \d+"):
            second.on_train_begin(TrainState())
    finally:
        first.on_train_end(TrainState())
    second.on_train_begin(TrainState())  # free again once the first run ended
    second.on_train_end(TrainState())


# --- 4. a small file that asks for gigabytes ---------------------------------------------


def saved_model(tmp_path):
    clf = NNClassifier((4,), max_iter=2, random_state=0).fit(X, Y)
    return anynet.save(clf, tmp_path / "model.safetensors")


def tamper(path, change):
    """Rewrite a model file's classifier metadata, digest and all: what anyone who can write the
    file can do (the digest is an integrity check, not a signature)."""
    arrays, meta = anynet.io.read_arrays(path)
    change(meta["metadata"]["$dict"])
    return anynet.io.write_arrays(path, arrays, meta)


def test_4_a_2_kb_model_file_cannot_ask_for_gigabytes(tmp_path):
    """A class-label dtype of 'U500000000' went straight into NumPy: 5.6 GiB for a 2 KB file."""
    path = tamper(saved_model(tmp_path), lambda m: m.update(classes_dtype="<U500000000"))
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="U500000000"):
            anynet.load(path)
        assert tracemalloc.get_traced_memory()[1] < 64 * 2**20
    finally:
        tracemalloc.stop()


# --- 5. special files and decompression bombs ---------------------------------------------


def refused_without_blocking(read, path, error):
    """``read(path)`` raises ``error``, or the test fails after 10 s instead of hanging."""
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_raised(read, path)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader, then fail
        with open(path, "wb"):
            pass
        pytest.fail(f"reading {path} blocked")
    assert isinstance(outcome[0], error), outcome[0]


def _raised(read, path):
    try:
        read(path)
    except Exception as exc:
        return exc
    return None


def test_5_special_files_are_refused_and_gzip_bombs_stay_small(tmp_path):
    """A FIFO hung anynet.load and read_idx for ever, /dev/zero was read without bound, and a
    small gzip that inflates to gigabytes was refused only after 4 GB of peak memory."""
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    refused_without_blocking(anynet.load, fifo, ModelFileError)
    refused_without_blocking(read_idx, fifo, IDXFormatError)
    with pytest.raises(ModelFileError, match="regular file"):
        anynet.load("/dev/zero")
    # An IDX header that declares 10 bytes, then a gzip stream inflating to 256 MiB of zeros.
    bomb = tmp_path / "bomb-idx1-ubyte.gz"
    zeros = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(bomb, "wb") as f:
        f.write(zeros.compress(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big")))
        chunk = bytes(2**20)
        for _ in range(256):
            f.write(zeros.compress(chunk))
        f.write(zeros.flush())
    tracemalloc.start()
    try:
        with pytest.raises(IDXFormatError):
            read_idx(bomb)
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()


# --- 6. divergence beyond NaN ---------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [dict(solver="adam", learning_rate_init=1e6), dict(solver="sgd", learning_rate_init=10.0)],
    ids=["adam-lr-1e6", "sgd-lr-10"],
)
def test_6_divergence_is_caught_beyond_nan(tmp_path, settings):
    """Adam at 1e6 (a loss of ~1e15) or SGD at 10 on raw data ended with exit 0, a chance-level
    model, and a checkpoint of it."""
    clf = NNClassifier((16,), max_iter=3, random_state=0, checkpoint_dir=tmp_path, **settings)
    with pytest.raises((DivergenceError, NonFiniteLossError), match="epoch 1, step"):
        clf.fit(X * 100, Y)
    assert not hasattr(clf, "params_")  # nothing fitted, nothing saved as a model
    off = NNClassifier((16,), max_iter=1, random_state=0, divergence_factor=None, **settings)
    try:
        off.fit(X * 100, Y)  # the check off: the run ends, unless NaN stops it
    except NonFiniteLossError:
        pass


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_6_exploding_weights_are_divergence_too():
    """SGD on raw pixels blew the weights up while the loss stayed under 100 times its
    (already large) first value, and ended at chance level with exit 0."""
    from anynet.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist(download=False)
    images, labels = images[:3000], labels[:3000]
    kw = dict(solver="sgd", learning_rate_init=1e-3, batch_size=128, max_iter=2, random_state=0)
    with pytest.raises(DivergenceError, match=r"weight '\d.W' reached magnitude(.|\n)*scale"):
        NNClassifier((64,), **kw).fit(images, labels)
    unchecked = NNClassifier((64,), **kw, divergence_factor=None).fit(images, labels)
    assert unchecked.score(images, labels) < 0.3  # what the check kept from being kept


@pytest.mark.parametrize("penalty", [dict(alpha=1e38), dict(l1=1e38)], ids=["alpha", "l1"])
def test_6_an_overflowing_penalty_is_named_not_only_the_learning_rate(penalty):
    with pytest.raises(NonFiniteLossError, match=r"or the penalty strengths \(alpha, l1\)"):
        NNClassifier((8,), max_iter=3, random_state=0, **penalty).fit(X, Y)
    with pytest.raises(NonFiniteLossError) as default_alpha:
        NNClassifier((8,), max_iter=3, random_state=0).fit(X * 1e37, Y)
    assert "penalty" not in str(default_alpha.value)


@pytest.mark.parametrize(
    ("init", "width"), [("he_uniform", 30000), ("uniform", 100000)], ids=["he", "uniform"]
)
def test_6_weights_their_initializer_drew_large_are_not_divergence(init, width):
    """The weight limit took Glorot's scale for every initializer: He's draws for a wide layer
    on one feature, or U(-1, 1), were already beyond 100 times it, and a sound run stopped."""
    clf = NNClassifier((width,), init=init, max_iter=2, random_state=0, batch_size=100)
    clf.fit(X[:, :1] if init == "he_uniform" else X, Y)
    assert clf.n_iter_ == 2


# --- 7. non-finite weights and probabilities ------------------------------------------------


def test_7_non_finite_weights_are_refused_and_probabilities_stay_finite(tmp_path):
    clf = NNClassifier((8,), max_iter=20, random_state=0, output="sigmoid").fit(X, Y)
    # Logits so negative that every class's sigmoid underflows: NaN rows, and class 0, before.
    far = X * 1e4
    proba = clf.predict_proba(far)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (clf.predict(far) == clf.classes_[proba.argmax(axis=1)]).all()
    huge = NNClassifier((8,), max_iter=5, random_state=0).fit(X, Y)
    huge.coefs_[1][...] = 3e38  # finite, but the logits overflow: NaN probabilities, class 0
    with pytest.raises(ValueError, match="outputs are not finite"):
        huge.predict(X)
    clf.coefs_[0][0, 0] = math.nan  # ReLU maps NaN to 0: it would have predicted plausibly
    with pytest.raises(ValueError, match=r"params_\['0.W'\] holds 1 NaN"):
        clf.predict(X)
    with pytest.raises(ValueError, match="NaN"):
        anynet.save(clf, tmp_path / "m.safetensors")


# --- 10. hostile model and checkpoint contents -----------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda m: m.update(classes=[2, 0, 1]), "sorted"),
        (lambda m: m.update(classes=[0, 0, 1]), "unique|sorted"),
        (lambda m: m["params"]["$dict"].update(checkpoint_dir="/tmp/elsewhere"), "checkpoint_dir"),
        (lambda m: m["params"]["$dict"].update(backend="cupy"), "backend"),
    ],
    ids=["unsorted-classes", "duplicate-classes", "checkpoint-dir-from-file", "backend-from-file"],
)
def test_10_hostile_model_contents_are_refused(tmp_path, change, says):
    """Unsorted or duplicate classes relabelled silently; hyper-parameters in a file set where
    a run writes."""
    with pytest.raises(ModelFileError, match=says):
        anynet.load(tamper(saved_model(tmp_path), change))


def test_10_hostile_checkpoint_contents_are_refused(tmp_path):
    """Optimizer state of the wrong shape was broadcast in; missing keys gave a raw KeyError."""
    NNClassifier((4,), max_iter=1, random_state=0, checkpoint_dir=tmp_path).fit(X, Y)
    path = tmp_path / "checkpoint.safetensors"
    arrays, meta = anynet.io.read_arrays(path)
    opt = [k for k in arrays if k.startswith("opt")]
    assert opt  # the optimizer state's tensors, named by the codec
    wrong = {k: (v[:1] if k == opt[0] else v) for k, v in arrays.items()}
    anynet.io.write_arrays(path, wrong, meta)
    with pytest.raises(ModelFileError, match=str(path)):
        load_checkpoint(path, backend="numpy")
    missing = {k: v for k, v in arrays.items() if k != opt[0]}
    anynet.io.write_arrays(path, missing, meta)
    with pytest.raises(ModelFileError, match=str(path)):
        load_checkpoint(path, backend="numpy")


# --- 8. outputs checked before the work ------------------------------------------------------


def test_8_every_output_path_is_checked_before_training(tmp_path):
    """A missing --out folder, an --out that is a folder, a --plots or --checkpoint-dir that is
    a file failed at the end of the run, and the trained model was lost. No data here: an
    output checked too late shows as a data error instead."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    tries = {
        "--out": ["--out", str(tmp_path / "missing" / "m.safetensors")],
        "--out ": ["--out", str(empty)],
        "--plots": ["--plots", str(a_file)],
        "--checkpoint-dir": ["--checkpoint-dir", str(a_file)],
    }
    for flag, args in tries.items():
        out = anynet_cmd("train", "--data-dir", str(empty), "--no-download", *args)
        assert out.returncode != 0 and "Traceback" not in out.stderr
        assert flag.strip() in out.stderr and "Fashion-MNIST" not in out.stderr, out.stderr
    # A legal 248-byte file name: the temporary name used to grow past 255 bytes.
    clf = NNClassifier((4,), max_iter=1, random_state=0).fit(X, Y)
    path = anynet.save(clf, tmp_path / ("m" * 236 + ".safetensors"))
    assert len(path.name.encode()) == 248 and anynet.load(path).n_features_in_ == 12


# --- 9. wrong answers from the command line --------------------------------------------------


def test_9_the_command_refuses_what_it_would_misread_and_speaks_in_flags(tmp_path):
    """A 16-bit PNG was clipped to mostly white and still got a confident class; --hidden
    64,,32 was accepted; errors named Python arguments (data_dir=) where the user typed
    flags."""
    from PIL import Image

    from anynet.cli.predict import _read_images

    gray = np.random.default_rng(0).integers(0, 256, (28, 28)).astype(np.uint8)
    eight, sixteen = tmp_path / "8.png", tmp_path / "16.png"
    Image.fromarray(gray).save(eight)
    Image.fromarray(gray.astype(np.uint16) * 257).save(sixteen)  # the same picture, 16 bits
    np.testing.assert_array_equal(
        _read_images(sixteen, False, 784), _read_images(eight, False, 784)
    )
    hidden = anynet_cmd("train", "--hidden", "64,,32")
    assert hidden.returncode == 2 and "--hidden" in hidden.stderr
    assert "empty" in hidden.stderr and "Traceback" not in hidden.stderr
    missing = anynet_cmd("train", "--data-dir", str(tmp_path / "none"), "--no-download")
    assert missing.returncode == 1 and "--data-dir" in missing.stderr
    assert "data_dir=" not in missing.stderr and "download=" not in missing.stderr


def test_9_python_arguments_are_named_and_checked_before_the_work(tmp_path):
    """NumPy scalars as hyper-parameters ended in a JSON TypeError; a checkpoint_dir that is
    a file in a bare [Errno 17]; labels holding None in a message about regression."""
    clf = NNClassifier((4,), max_iter=1, learning_rate_init=np.float32(0.01))
    clf.set_params(checkpoint_dir=tmp_path / "ck").fit(X, Y)
    assert clf.n_iter_ == 1
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(ValueError, match=r"checkpoint_dir must be a folder(.|\n)*afile"):
        NNClassifier((4,), max_iter=1, checkpoint_dir=afile).fit(X, Y)
    with pytest.raises(ValueError, match=r"checkpoint_dir must be a folder(.|\n)*afile is not"):
        NNClassifier((4,), max_iter=1, checkpoint_dir=afile / "sub").fit(X, Y)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1; got 'big'. Or"):
        NNClassifier((4,), batch_size="big").fit(X, Y)
    mine = NNClassifier((4,), max_iter=1, random_state=0, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ValueError, match="partial_fit continues this estimator's own"):
        mine.set_params(resume=True).partial_fit(X, Y, classes=np.unique(Y))
    labels = Y.astype(object)
    labels[[3, 7]] = None
    with pytest.raises(ValueError, match=r"y holds None at positions \[3, 7\]"):
        NNClassifier((4,), max_iter=1).fit(X, labels)
