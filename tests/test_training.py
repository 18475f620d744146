"""The training loop's seams: any step object, and callbacks that need no estimator."""

from __future__ import annotations

import io
import os
import signal

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.data import DataLoader
from anynet.errors import NonFiniteLossError
from anynet.io import load_checkpoint
from anynet.training import (
    Callback,
    Checkpointer,
    EarlyStopping,
    Interrupted,
    ProgressBar,
    TrainState,
    read_checkpoint,
    select_step,
    train,
)

be = anynet.get_backend("numpy")
data = np.random.default_rng(0)
X = data.normal(size=(90, 6)).astype("float32")
y = data.integers(0, 3, size=90)


def make_model():
    return nn.Sequential(nn.Dense(6, 10), nn.ReLU(), nn.Dropout(0.2), nn.Dense(10, 3))


def make_step(fast=True, params=None, opt_state=None):
    model = make_model()
    if params is None:
        params = model.init_params(rng=be.host_generator(1), backend=be)
    return select_step(model, nn.adam(0.01), params, opt_state, backend=be, fast=fast)


def loader():
    return DataLoader(X, y, 16, backend=be, seed=3, normalize=None)


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "generic"])
def test_the_two_halves_of_a_step_are_the_whole_step(fast):
    whole, halves = make_step(fast), make_step(fast)
    rng = be.generator(4)
    loss = whole(X[:16], y[:16], l2=0.01, rng=rng)
    rng = be.generator(4)
    loss2 = halves.compute_grads(X[:16], y[:16], l2=0.01, rng=rng)
    # The gradients are there between the halves, in the engine's structure.
    assert sorted(halves.grads) == sorted(halves.params)
    halves.apply_grads()
    assert float(loss) == float(loss2)
    for k in whole.params:
        np.testing.assert_array_equal(whole.params[k], halves.params[k])


def test_a_steps_gradients_are_the_engines():
    fused, generic = make_step(True), make_step(False)
    assert fused.name.startswith("fused") and generic.name == "generic"
    model = make_model()
    params = {k: np.array(v) for k, v in generic.params.items()}
    for step in (fused, generic):
        step.compute_grads(X[:16], y[:16], rng=be.generator(4))
    _, want = nn.loss_and_grads(model, params, X[:16], y[:16], rng=be.generator(4))
    for k in want:
        np.testing.assert_allclose(fused.grads[k], want[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(generic.grads[k], want[k], rtol=1e-6, atol=1e-7)


class AveragingStep(nn.Step):
    """A stand-in for a data-parallel step: it wraps another step and changes the gradients
    between the halves (here: averages two copies of them, which must change nothing)."""

    def __init__(self, inner):
        self.inner, self.model, self.name = inner, inner.model, f"averaged {inner.name}"
        self.loss = inner.loss
        self.needs_rng, self.calls = inner.needs_rng, 0

    params = property(lambda self: self.inner.params)
    opt_state = property(lambda self: self.inner.opt_state)
    grads = property(lambda self: self.inner.grads)

    def compute_grads(self, X, y, **kw):
        loss = self.inner.compute_grads(X, y, **kw)
        for g in self.inner.grads.values():
            g[...] = (g + g) / 2
        self.calls += 1
        return loss

    def apply_grads(self):
        self.inner.apply_grads()


def test_the_loop_takes_any_step():
    plain = train(make_step(), loader(), epochs=2, seed=5)
    wrapped_step = AveragingStep(make_step())
    wrapped = train(wrapped_step, loader(), epochs=2, seed=5)
    assert wrapped_step.calls == plain.step == wrapped.step == 12
    assert wrapped.path == f"averaged {plain.path}"
    for k in plain.params:
        np.testing.assert_array_equal(plain.params[k], wrapped.params[k])


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop", [4, 6, 9])  # mid-epoch, at its end, in the next
def test_checkpoints_resume_exactly_without_the_estimator(tmp_path, stop):
    straight = train(make_step(), loader(), epochs=3, seed=5)
    with pytest.raises(KeyboardInterrupt):
        train(
            make_step(),
            loader(),
            epochs=3,
            seed=5,
            callbacks=[Checkpointer(tmp_path), StopAt(stop)],
        )
    path = tmp_path / "checkpoint.safetensors"
    state, ckpt = read_checkpoint(path, backend=be, param_shapes=make_model().param_shapes())
    # An interrupt after an epoch's last step leaves that epoch unlogged: epoch 0, batch 6.
    assert (state.step, state.epoch, state.batch) == (stop, (stop - 1) // 6, (stop - 1) % 6 + 1)
    step = make_step(params=ckpt.params, opt_state=ckpt.opt_state)
    resumed = train(step, loader(), epochs=3, seed=5, state=state)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    np.testing.assert_allclose(resumed.history["loss"], straight.history["loss"], rtol=1e-6)


def test_a_checkpoint_of_other_shapes_is_refused(tmp_path):
    train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(tmp_path)])
    other = nn.Sequential(nn.Dense(6, 4), nn.ReLU(), nn.Dense(4, 3))
    with pytest.raises(anynet.errors.ModelFileError, match="do not fit this network"):
        read_checkpoint(
            tmp_path / "checkpoint.safetensors", backend=be, param_shapes=other.param_shapes()
        )


def test_a_non_finite_step_never_overwrites_the_last_checkpoint(tmp_path):
    """With checkpoints every few steps, the write after a NaN step would have replaced the last
    good checkpoint (and every resume would then fail): the losses are checked first. The
    state after step 4 is not written either: step 5's NaN is the loss of its parameters."""
    X_bad = X.copy()
    X_bad[64:] = 3e38  # finite, but batch 5 overflows the first layer: the loss turns NaN
    bad = DataLoader(X_bad, y, 16, backend=be, seed=3, normalize=None, shuffle=False)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 5 of the epoch"):
        train(make_step(), bad, epochs=1, callbacks=[Checkpointer(tmp_path, every_steps=2)])
    ckpt = load_checkpoint(tmp_path / "checkpoint.safetensors", backend="numpy")
    assert ckpt.step == 2
    assert all(np.isfinite(p).all() for p in ckpt.params.values())


def test_early_stopping_stops_and_replays():
    stopper = EarlyStopping("loss", tol=10.0, patience=1)
    state = train(make_step(), loader(), epochs=10, callbacks=[stopper])
    assert state.stop and state.epoch == 3  # no improvement by 10 in epochs 2 and 3
    again = EarlyStopping("loss", tol=10.0, patience=1)
    assert again.replay(state.history)  # a resumed run stays stopped
    assert not EarlyStopping("loss", tol=10.0, patience=1).replay(
        {"loss": state.history["loss"][:2]}
    )


def test_progress_bar_writes_where_it_is_told():
    out = io.StringIO()
    train(make_step(), loader(), epochs=2, callbacks=[ProgressBar(file=out, bar=True)])
    text = out.getvalue()
    assert "epoch 2/2" in text and "loss" in text and "samples/s" in text
    assert "\r" in text  # tqdm's redraws


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_line_per_epoch_off_a_terminal_and_a_bar_on_one():
    out = io.StringIO()  # a file or a pipe
    state = train(make_step(), loader(), epochs=3, callbacks=[ProgressBar(file=out)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    for epoch, line in enumerate(lines, 1):
        loss = state.history["loss"][epoch - 1]
        assert line.startswith(f"epoch {epoch}/3: loss {loss:.4f}, ") and " s, " in line
        assert line.endswith(" samples/s")
    terminal = _Terminal()
    train(make_step(), loader(), epochs=1, callbacks=[ProgressBar(file=terminal)])
    assert "\r" in terminal.getvalue() and "batch" in terminal.getvalue()


def test_a_fresh_state_and_a_given_one():
    state = TrainState()
    out = train(make_step(), loader(), epochs=1, state=state)
    assert out is state and state.epoch == 1 and state.step == 6 and state.epochs == 1
    assert state.batches_per_epoch == 6 and state.path.startswith("fused")


class SignalInside(AveragingStep):
    """A step that receives ``times`` SIGINTs between its two halves, at step ``at``."""

    def __init__(self, inner, at, times=1, signum=signal.SIGINT):
        super().__init__(inner)
        self.at, self.times, self.signum = at, times, signum

    def apply_grads(self):
        if self.calls == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)
        self.inner.apply_grads()


@pytest.fixture
def python_sigint():
    """SIGINT handled as Python does by default (KeyboardInterrupt), even where the suite runs
    in the background of a shell, which starts it with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_a_step_ends_the_run_after_it(tmp_path, signum):
    """Handled where it lands, the signal would split the step (gradients computed, update not
    applied, or applied and not counted) and the checkpoint would hold a state no run passes
    through. It takes effect at the end of the step."""
    with pytest.raises(Interrupted) as info:
        step = SignalInside(make_step(), at=3, signum=signum)
        train(step, loader(), epochs=2, callbacks=[Checkpointer(tmp_path)])
    assert info.value.signum == signum
    state, ck = read_checkpoint(
        tmp_path / "checkpoint.safetensors", backend=be, param_shapes=make_model().param_shapes()
    )
    assert (state.step, state.batch) == (3, 3)  # the step the signal came in, complete
    step = make_step(params=ck.params, opt_state=ck.opt_state)
    resumed = train(step, loader(), epochs=2, state=state)
    straight = train(make_step(), loader(), epochs=2)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    # The handlers are put back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        step = SignalInside(make_step(), at=2)
        state = train(step, loader(), epochs=1)
        assert state.epoch == 1  # the run went on: whoever ignored SIGINT meant it
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint")
def test_a_second_ctrl_c_interrupts_at_once():
    step = SignalInside(make_step(), at=2, times=2)
    state = TrainState()
    with pytest.raises(KeyboardInterrupt):
        train(step, loader(), epochs=2, state=state)
    assert state.step == 1  # the second step never finished: the second Ctrl-C stopped it


def test_a_diverging_loss_stops_the_run_unless_the_check_is_off():
    model = make_model()
    params = model.init_params(rng=be.host_generator(1), backend=be)
    wild = select_step(model, nn.sgd(50.0), params, backend=be)  # a learning rate far too high
    with pytest.raises(anynet.errors.DivergenceError, match=r"more than 100 times its first"):
        train(wild, loader(), epochs=3)
    tame = select_step(model, nn.sgd(0.01), params, backend=be)
    # A factor the normal run crosses nowhere; and the check off.
    train(tame, loader(), epochs=2, divergence_factor=1.5)
    train(make_step(), loader(), epochs=1, divergence_factor=None)


def test_a_checkpoint_of_another_run_is_refused_listing_each_difference(tmp_path):
    run = {"seed": 5, "batch_size": 16, "optimizer": ["adam", 0.01]}
    train(make_step(), loader(), epochs=1, callbacks=[Checkpointer(tmp_path, run=run)])
    path, shapes = tmp_path / "checkpoint.safetensors", make_model().param_shapes()
    read_checkpoint(path, backend=be, param_shapes=shapes, run=run)  # the same run
    other = {**run, "seed": 6, "batch_size": 32}
    with pytest.raises(anynet.errors.CheckpointMismatchError) as info:
        read_checkpoint(path, backend=be, param_shapes=shapes, run=other)
    message = str(info.value)
    assert "batch_size: the checkpoint's run has 16, this one 32" in message
    assert "seed: the checkpoint's run has 5, this one 6" in message
    assert "optimizer" not in message


def test_callbacks_continue_from_the_state_a_checkpoint_kept(tmp_path):
    class Counter(Callback):
        name = "counter"

        def __init__(self):
            self.steps = 0

        def on_step_end(self, state):
            self.steps += 1

        def state_dict(self):
            return {"steps": self.steps, "seen": np.arange(3.0)}

        def load_state_dict(self, saved, state):
            self.steps = saved["steps"]
            assert isinstance(saved["seen"], np.ndarray)  # arrays come back on the backend

    first = Counter()
    with pytest.raises(KeyboardInterrupt):
        train(make_step(), loader(), epochs=2, callbacks=[Checkpointer(tmp_path), first, StopAt(8)])
    state, ckpt = read_checkpoint(
        tmp_path / "checkpoint.safetensors", backend=be, param_shapes=make_model().param_shapes()
    )
    again = Counter()
    step = make_step(params=ckpt.params, opt_state=ckpt.opt_state)
    train(step, loader(), epochs=2, state=state, callbacks=[again])
    assert again.steps == 12  # 8 before the interrupt, 4 after


class PoisonAt(AveragingStep):
    """A step after which one weight is NaN: ReLU maps it to 0, so the loss stays finite."""

    def __init__(self, inner, at):
        super().__init__(inner)
        self.at = at

    def apply_grads(self):
        self.inner.apply_grads()
        if self.calls == self.at:
            self.inner.params["0.W"][0, 0] = np.nan


def test_non_finite_parameters_are_never_checkpointed_even_with_a_finite_loss(tmp_path):
    step = PoisonAt(make_step(), at=5)
    with pytest.raises(anynet.errors.NonFiniteLossError, match=r"'0.W' holds 1 NaN .* step 6"):
        train(step, loader(), epochs=2, callbacks=[Checkpointer(tmp_path, every_steps=3)])
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", backend="numpy").step == 3
