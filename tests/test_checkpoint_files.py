"""Checkpoint files read back to resume a run: every value checked before the loop uses it, the
folder's lock file never followed, and a refused resume that says what differs."""

from __future__ import annotations

import os

import numpy as np
import pytest

import anynet
from anynet import io, nn
from anynet.data import DataLoader
from anynet.errors import CheckpointLockedError, CheckpointMismatchError, ModelFileError
from anynet.training import (
    Callback,
    Checkpointer,
    EarlyStopping,
    read_checkpoint,
    select_step,
    train,
)
from anynet.training.checkpoints import LOCK_NAME

be = anynet.get_backend("numpy")
data = np.random.default_rng(0)
X = data.normal(size=(90, 6)).astype("float32")
y = data.integers(0, 3, size=90)
RUN = {"seed": 5, "dtype": "float32"}


def make_model():
    return nn.Sequential(nn.Dense(6, 10), nn.ReLU(), nn.Dense(10, 3))


def make_step(params=None, opt_state=None):
    model = make_model()
    if params is None:
        params = model.init_params(rng=be.host_generator(1), backend=be)
    return select_step(model, nn.adam(0.01), params, opt_state, backend=be)


def loader():
    return DataLoader(X, y, 16, backend=be, seed=3, normalize=None)


def stopper():
    return EarlyStopping("loss", patience=5, restore_best=True)


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def write_checkpoint(folder, stop=14):
    """A checkpoint anynet wrote: epoch 2, mid-epoch (batch 2 of 6), step 14."""
    with pytest.raises(KeyboardInterrupt):
        train(
            make_step(),
            loader(),
            epochs=4,
            seed=5,
            callbacks=[stopper(), Checkpointer(folder, run=RUN), StopAt(stop)],
        )
    return folder / "checkpoint.safetensors"


def read(path, **kw):
    return read_checkpoint(path, backend=be, param_shapes=make_model().param_shapes(), **kw)


def edit(path, change):
    """Rewrite the checkpoint's metadata (a valid file, digest and all: what an adversary or a
    script can write) with ``change(meta, arrays)``."""
    arrays, meta = io.read_arrays(path)
    change(meta, arrays)
    used = set(tensors(meta))
    io.write_arrays(path, {k: v for k, v in arrays.items() if k in used}, meta)


def tensors(node):
    """The tensor names an encoded value refers to."""
    if isinstance(node, dict):
        if set(node) == {"$array"}:
            yield node["$array"]
        for value in node.values():
            yield from tensors(value)
    elif isinstance(node, list):
        for value in node:
            yield from tensors(value)


def set_extra(key, value):
    def change(meta, arrays):
        meta["extra"]["$dict"][key] = value

    return change


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("good"))


@pytest.fixture
def ckpt(good, tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(good.read_bytes())
    return path


def test_a_good_checkpoint_resumes(ckpt):
    state, _ = read(ckpt, run=RUN)
    assert (state.epoch, state.step, state.batch) == (2, 14, 2)
    assert state.carried_seen == 32 and state.carried_loss > 0 and state.first_loss > 0
    assert len(state.history["loss"]) == 2 and "early_stopping" in state.callback_states


def es(key, value):
    def change(meta, arrays):
        meta["extra"]["$dict"]["callbacks"]["$dict"]["early_stopping"]["$dict"][key] = value

    return change


def history(key, value):
    def change(meta, arrays):
        meta["history"]["$dict"][key] = value

    return change


def epoch_step(epoch=None, step=None):
    def change(meta, arrays):
        if epoch is not None:
            meta["epoch"] = epoch
        if step is not None:
            meta["step"] = step

    return change


def drop_extra(key):
    def change(meta, arrays):
        del meta["extra"]["$dict"][key]

    return change


def not_dict_extra(meta, arrays):
    meta["extra"] = [1]


def cast_params(dtype, only=None):
    def change(meta, arrays):
        for name in list(arrays):
            if name.startswith(("params/", "extra/")) or (only and name.startswith(only)):
                arrays[name] = arrays[name].astype(dtype)

    return change


HUGE = 10**30
HOSTILE = {
    # the divergence baseline
    "first_loss string": (
        set_extra("first_loss", "abc"),
        r"first_loss .* is \"abc\"; expected null",
    ),
    "first_loss list": (set_extra("first_loss", [1]), r"first_loss .* is \[1\]"),
    "first_loss negative": (set_extra("first_loss", -5.0), r"first_loss .* is -5.0"),
    "first_loss 1e308": (set_extra("first_loss", 1e308), r"first_loss .* is 1e\+308"),
    "first_loss nan": (set_extra("first_loss", {"$float": "nan"}), r"first_loss .* is NaN"),
    "first_loss bool": (set_extra("first_loss", True), r"first_loss .* is true"),
    # where the epoch in progress stands
    "batch float": (set_extra("batch", 2.0), r"its batch is 2.0; expected an integer from 0 to 12"),
    "batch string": (set_extra("batch", "2"), r"its batch is \"2\""),
    "batch negative": (set_extra("batch", -1), r"its batch is -1"),
    "batch huge": (set_extra("batch", HUGE), r"its batch is 10{30}"),
    "batch over step": (set_extra("batch", 13), r"its batch is 13; expected .* to 12"),
    "seen negative": (set_extra("seen", -32), r"its seen .* is -32; expected an integer >= 2"),
    "seen float": (set_extra("seen", 32.0), r"its seen .* is 32.0"),
    "loss_sum huge": (set_extra("loss_sum", 1e300), r"its loss_sum .* is 1e\+300; expected a"),
    "loss_sum inf": (set_extra("loss_sum", {"$float": "inf"}), r"its loss_sum .* is Infinity"),
    "loss_sum negative": (set_extra("loss_sum", -1.0), r"its loss_sum .* is -1.0"),
    "loss_sum string": (set_extra("loss_sum", "1"), r"its loss_sum .* is \"1\""),
    "stop string": (set_extra("stop", "no"), r"its stop is \"no\"; expected true or false"),
    "stop int": (set_extra("stop", 1), r"its stop is 1; expected true or false"),
    "callbacks list": (set_extra("callbacks", [1]), r"callbacks' states are \[1\]; expected"),
    "callbacks of strings": (
        set_extra("callbacks", {"$dict": {"counter": "x"}}),
        r"callbacks' states are .*counter",
    ),
    "extra not a mapping": (not_dict_extra, r"its extra state is \[1\]; expected a mapping"),
    "extra without stop": (drop_extra("stop"), r"its extra state lacks \['stop'\]"),
    # counters and history
    "epoch over step": (epoch_step(epoch=15), r"its epoch 15 is more than its step 14"),
    "epoch huge": (epoch_step(epoch=HUGE), r"its epoch is 10{30}; expected an integer from 0"),
    "epoch negative": (epoch_step(epoch=-1), r"its epoch is -1"),
    "step huge": (epoch_step(step=HUGE), r"its step is 10{30}"),
    "epoch past history": (epoch_step(epoch=3), r"its history '\w+' holds 2 values; expected 3"),
    "history a dict": (
        history("loss", {"$dict": {}}),
        r"history is not a mapping of names to lists",
    ),
    "history strings": (history("loss", ["a", "b"]), r"its history 'loss' holds 'a', not a number"),
    "history too short": (history("loss", [1.0]), r"its history 'loss' holds 1 values; expected 2"),
    "history nan": (
        history("loss", [1.0, {"$float": "nan"}]),
        r"its history 'loss' holds NaN; expected finite numbers",
    ),
    "history without loss": (
        lambda meta, arrays: meta["history"]["$dict"].pop("loss"),
        r"its history holds \[\"epoch_seconds\"\]; expected .* 'loss' among them",
    ),
    # the run's dtype
    "params float64": (cast_params("f8", "opt/1/"), r"dtypes '0.W' float64.*expected all float32"),
    "params float16": (cast_params("f2", "opt/1/"), r"dtypes '0.W' float16"),
    "mu float16": (
        lambda meta, arrays: arrays.update({"opt/1/mu/0.W": arrays["opt/1/mu/0.W"].astype("f2")}),
        r"AdamState.mu\['0.W'\] has dtype float16; its parameter's is float32",
    ),
    # early stopping's state
    "es best string": (es("best", "x"), r"early-stopping state has the best loss 'x'"),
    "es best nan": (es("best", {"$float": "nan"}), r"early-stopping state has the best loss nan"),
    "es best not the history's": (es("best", 0.5), r"has the best loss 0.5; .* makes it"),
    "es count huge": (es("no_improvement", HUGE), r"counts 10{30} epochs .* from 0 to 2"),
    "es count negative": (es("no_improvement", -1), r"counts -1 epochs"),
    "es monitor other": (es("monitor", "val_loss"), r"monitors 'val_loss', a metric the .* not"),
    "es best_params partial": (
        lambda meta, arrays: (
            arrays.update(x=arrays["params/0.W"]),
            es("best_params", {"$dict": {"0.W": {"$array": "x"}}})(meta, arrays),
        ),
        r"holds best parameters \['0.W'\]; this network's are \['0.W', '0.b', '2.W', '2.b'\]",
    ),
    "es best_params string": (es("best_params", "x"), r"holds best parameters 'x'"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_every_value_of_a_checkpoint_is_checked_before_it_is_used(ckpt, case):
    change, match = HOSTILE[case]
    edit(ckpt, change)
    with pytest.raises(ModelFileError, match=match) as info:
        read(ckpt, run=RUN)
    message = str(info.value)
    assert message.startswith(f"{ckpt}: ")
    assert "start afresh" in message and "another checkpoint folder" in message


def test_a_run_dtype_is_checked_without_a_run_record(ckpt):
    edit(ckpt, cast_params("f8", "opt/1/"))
    read(ckpt)  # float64 throughout: one dtype
    with pytest.raises(ModelFileError, match="expected all float32, the run's dtype"):
        read(ckpt, dtype="float32")


def test_early_stopping_checks_the_state_it_is_given():
    state, params = type("S", (), {})(), make_step().params
    state.params, state.history = params, {"loss": [2.0, 1.0]}
    host = {k: np.array(v) for k, v in params.items()}
    good = {"monitor": "loss", "best": 1.0, "no_improvement": 0, "best_params": host}
    rule = stopper()
    rule.load_state_dict(good, state)
    assert rule.best == 1.0 and rule.best_params is host
    bad = {
        "other monitor": ({**good, "monitor": "val_loss"}, "monitors 'val_loss'"),
        "score a string": ({**good, "best": "x"}, "has the best loss 'x'"),
        "count huge": ({**good, "no_improvement": 10**9}, "counts 1000000000 epochs"),
        "extra key": ({**good, "x": 1}, "holds \\['best', 'best_params', 'monitor',"),
        "float16 params": (
            {**good, "best_params": {k: v.astype("f2") for k, v in host.items()}},
            r"best parameter '0.W' of shape \(6, 10\) and dtype float16",
        ),
        "non-finite params": (
            {**good, "best_params": {**host, "0.b": np.full(10, np.nan, "f4")}},
            "'0.b' with NaN or infinite entries",
        ),
    }
    for saved, match in bad.values():
        with pytest.raises(ModelFileError, match=match):
            stopper().load_state_dict(saved, state)
    with pytest.raises(
        ModelFileError, match="monitors 'loss'; this run's early stopping monitors 'val_accuracy'"
    ):
        EarlyStopping("val_accuracy").load_state_dict(good, state)
    with pytest.raises(ModelFileError, match="does not keep"):
        EarlyStopping("loss").load_state_dict(good, state)  # restore_best=False


def test_a_checkpoint_without_early_stopping_state_still_resumes(tmp_path):
    path = write_checkpoint(tmp_path)
    edit(path, set_extra("callbacks", {"$dict": {}}))
    state, _ = read(path, run=RUN)
    assert state.callback_states == {}


# --- the lock file --------------------------------------------------------------------------


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("years of work\n")
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(victim)
    with pytest.raises(ModelFileError, match="lock file is a symbolic link") as info:
        train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(folder)])
    assert str(folder / LOCK_NAME) in str(info.value) and "another checkpoint folder" in str(
        info.value
    )
    assert victim.read_text() == "years of work\n"


def test_a_dangling_symlink_lock_creates_nothing(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ModelFileError, match="symbolic link"):
        train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(folder)])
    assert not (tmp_path / "elsewhere").exists()


def test_a_hard_linked_lock_file_is_refused(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    folder = tmp_path / "ck"
    folder.mkdir()
    os.link(victim, folder / LOCK_NAME)
    with pytest.raises(ModelFileError, match="2 hard links"):
        train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(folder)])
    assert victim.read_text() == "keep me\n"


def test_a_lock_path_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    with pytest.raises(ModelFileError, match="lock file is a folder"):
        train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(tmp_path)])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_lock_path_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / LOCK_NAME)
    with pytest.raises(ModelFileError, match="lock file is a FIFO"):
        train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(tmp_path)])


def test_the_lock_still_locks(tmp_path):
    first = Checkpointer(tmp_path)
    first.on_train_begin(None)
    try:
        with pytest.raises(CheckpointLockedError, match=f"pid {os.getpid()}"):
            Checkpointer(tmp_path).on_train_begin(None)
    finally:
        first.on_train_end(None)
    assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} on ")


# --- a refused resume says what differs ------------------------------------------------------


def test_a_mismatch_names_each_differing_entry_in_full(tmp_path):
    network = {"layers": [["Dense", {"n_in": 6, "n_out": 10}], ["ReLU", {}], ["Dense", {}]]}
    run = {"network": network, "seed": 5, "note": "x" * 150}
    train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(tmp_path, run=run)])
    other = {
        "network": {"layers": [["Dense", {"n_in": 6, "n_out": 12}], ["Tanh", {}], ["Dense", {}]]},
        "seed": 5,
        "note": "x" * 149 + "y",
        "added": True,
    }
    with pytest.raises(CheckpointMismatchError) as info:
        read(tmp_path / "checkpoint.safetensors", run=other)
    lines = str(info.value).splitlines()
    assert lines[1:5] == [
        "  added: the checkpoint's run has (none), this one true",
        "  network.layers[0][1].n_out: the checkpoint's run has 10, this one 12",
        '  network.layers[1][0]: the checkpoint\'s run has "ReLU", this one "Tanh"',
        f'  note: the checkpoint\'s run has "{"x" * 150}", this one "{"x" * 149}y"',
    ]
    assert len(lines) == 6 and "seed" not in str(info.value)


def test_a_list_of_another_length_is_shown_whole(tmp_path):
    run = {"hidden": [64, 32]}
    train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(tmp_path, run=run)])
    with pytest.raises(
        CheckpointMismatchError, match=r"  hidden: .* has \[64, 32\], this one \[64\]"
    ):
        read(tmp_path / "checkpoint.safetensors", run={"hidden": [64]})


# --- values that are each in range but disagree with the run ---------------------------------


def scale_array(prefix, factor):
    """Multiply the tensors whose names start with ``prefix`` (weights only) by ``factor``."""

    def change(meta, arrays):
        for name in list(arrays):
            if name.startswith(prefix) and arrays[name].ndim >= 2:
                arrays[name] = arrays[name] * np.float32(factor)

    return change


def test_weights_beyond_the_runs_divergence_limit_are_refused(ckpt):
    """Finite but exploded weights, in the parameters or in early stopping's best ones, passed
    every check, and the resumed fit kept them (a score of 0.1)."""
    _, meta = io.read_arrays(ckpt)
    scales = meta["extra"]["$dict"]["weight_scales"]["$dict"]
    assert set(scales) == {"0.W", "2.W"}
    for prefix in ("params/", "extra/"):
        path = ckpt.with_name(f"{prefix[:-1]}.safetensors")
        path.write_bytes(ckpt.read_bytes())
        edit(path, scale_array(prefix, 1e6))
        read(path)  # no limit asked for: taken as it is
        with pytest.raises(ModelFileError, match=r"reaches magnitude .* beyond 100 times") as e:
            read(path, divergence_factor=100.0)
        assert str(e.value).startswith(f"{path}: ")


def test_weight_scales_must_name_each_weight(ckpt):
    edit(ckpt, set_extra("weight_scales", {"$dict": {"0.W": 0.5}}))
    with pytest.raises(ModelFileError, match=r"weight_scales .* for each of \['0.W', '2.W'\]"):
        read(ckpt)


def test_a_run_stopped_mid_epoch_is_refused(ckpt):
    edit(ckpt, set_extra("stop", True))
    with pytest.raises(ModelFileError, match="stopped at batch 2 of an epoch"):
        read(ckpt)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("batch", 3, "step 14 is not its 2 epochs of 6 batches plus the 3 batches"),
        ("seen", 33, "33 samples seen in the epoch in progress, where its 2 batches of 16 hold 32"),
    ],
)
def test_counters_that_disagree_with_the_loader_are_refused(ckpt, key, value, says):
    """A batch one too many skipped a batch silently, and the weights differed."""
    edit(ckpt, set_extra(key, value))
    state, stored = read(ckpt)
    with pytest.raises(ModelFileError, match=says):
        train(make_step(stored.params, stored.opt_state), loader(), epochs=4, state=state)
