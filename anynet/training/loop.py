"""The training loop shared by :class:`anynet.NNClassifier`, ``anynet train`` and your own code.

One loop: epochs of batches from a :class:`~anynet.data.DataLoader`, one call of a training
step (:class:`anynet.nn.Step`: the generic one, or a fused one that
:func:`~anynet.training.select_step` picks) per batch, and callbacks around them (progress,
early stopping, checkpoints: :mod:`anynet.training.callbacks`). Inside an epoch nothing is read
back from the device unless a callback asks (a progress bar, a few times per epoch): every read
is a synchronization.

Randomness is a pure function of where the run is: the loader's shuffle of epoch k depends on
``(seed, k)`` and the dropout masks of batch b on ``(seed, k, b)``, whether the run went straight
through or was resumed, even mid-epoch. That is what makes a resumed run's weights equal an
uninterrupted run's, bit for bit on NumPy.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from anynet.backends import Backend, derive_seed
from anynet.errors import DataError, ModelFileError
from anynet.nn.step import Step
from anynet.training.state import TrainState, weight_scales

__all__ = ["Interrupted", "TrainState", "train"]

Array = Any


class Interrupted(KeyboardInterrupt):
    """A run ended by a signal (Ctrl-C's SIGINT, or SIGTERM) between two steps; ``signum``
    says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StepBoundary:
    """Ctrl-C and SIGTERM take effect between steps, never inside one.

    A signal handled where it lands can split a step: a fused update is several array
    operations, and even a one-call update is followed by the step count. A checkpoint saved
    then holds a state no uninterrupted run passes through, and the resumed run differs. Here
    the first signal is noted and raised as :class:`Interrupted` once the step in progress is
    complete; a second Ctrl-C raises at once. Handlers are set only in the main thread (the
    only one Python delivers signals to) and only where the signal is not ignored; the previous
    ones come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> _StepBoundary:
        self.pending: int | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                previous = signal.getsignal(signum)
                if previous is signal.SIG_IGN:
                    continue
                signal.signal(signum, self._note)
                self._previous[signum] = signal.SIG_DFL if previous is None else previous
        return self

    def _note(self, signum: int, frame: Any) -> None:
        if self.pending is not None and signum == signal.SIGINT:
            raise Interrupted(signum)  # asked twice: now
        self.pending = signum

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal came since the run began."""
        if self.pending is not None:
            raise Interrupted(self.pending)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _on_backend(tree: Any, backend: Backend) -> Any:
    """A callback state read from a file, its host arrays moved to ``backend``."""
    if isinstance(tree, dict):
        return {k: _on_backend(v, backend) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_on_backend(v, backend) for v in tree)
    if isinstance(tree, np.ndarray):
        return backend.asarray(tree)
    return tree


def _check_resumed_counters(state: TrainState, loader: Any) -> None:
    """Refuse a resumed state whose counters this loader could not have produced: the batches
    skipped and the samples carried over follow from them, and a checkpoint is a file (the
    run record ties it to the data and batch size, so they must agree)."""
    per_epoch = len(loader)
    batch_size = getattr(loader, "batch_size", None)
    n_samples = getattr(loader, "n_samples", None)
    problem = None
    if state.batch > per_epoch or state.step != state.epoch * per_epoch + state.batch:
        problem = (
            f"step {state.step} is not its {state.epoch} epochs of {per_epoch} batches plus "
            f"the {state.batch} batches of the epoch in progress"
        )
    elif state.stop and state.batch:
        problem = f"it stopped in the middle of an epoch (batch {state.batch}); runs stop at ends"
    elif batch_size is not None and n_samples is not None:
        seen = min(state.batch * batch_size, n_samples)
        if state.carried_seen != seen:
            problem = (
                f"{state.carried_seen} samples seen in the epoch in progress, where its "
                f"{state.batch} batches of {batch_size} hold {seen}"
            )
    if problem:
        raise ModelFileError(
            f"the resumed state does not fit this run's data: {problem}. The checkpoint was "
            "altered or is of another run; start afresh, or resume another checkpoint."
        )


def _check_labels_fit(model: Any, loader: Any) -> None:
    """Refuse labels the model has no output for: the generic losses would train on garbage
    (a one-hot row of zeros), and the fused steps' kernels index the logits by label, so an
    out-of-range one reads and writes outside them (a crash on the CPU or the GPU)."""
    n_classes = getattr(loader, "n_classes", None)
    layers = getattr(model, "layers", (model,))
    width = next((lyr.n_out for lyr in reversed(layers) if hasattr(lyr, "n_out")), None)
    if n_classes is not None and width is not None and n_classes > width:
        raise DataError(
            f"the loader's labels run from 0 to {n_classes - 1} ({n_classes} classes), but the "
            f"model has {width} outputs. Give the last Dense layer n_out={n_classes}, or check "
            "the labels (they must be 0 to the number of classes - 1)."
        )


def train(
    step: Step,
    loader: Any,
    *,
    epochs: int,
    seed: int = 0,
    state: TrainState | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    l2_per_sample: bool = False,
    validate: Callable[[dict[str, Array]], dict[str, float]] | None = None,
    callbacks: Sequence[Any] = (),
    backend: Backend | None = None,
    divergence_factor: float | None = 100.0,
) -> TrainState:
    """Train until ``state.epoch == epochs`` or a callback stops the run.

    Parameters
    ----------
    step : anynet.nn.Step
        The training step, holding the parameters and optimizer state it starts from:
        :func:`~anynet.training.select_step` gives the fastest one for a model and backend.
        Its parameters are updated (in place, for a fused step).
    loader : anynet.data.DataLoader
        Training batches, ``(X, y)`` or ``(X, y, sample_weight)``; it must draw its shuffle
        from ``(its seed, epoch)``. A loader with a ``shard`` gives a data-parallel rank its
        part of each batch (step: an
        :class:`anynet.distributed.DataParallelStep`); sample counts are then the global
        batches' (``loader.batch_samples(b)``).
    epochs : int
        The epoch count to reach (not how many more to run).
    seed : int
        Seeds the dropout masks, per batch.
    state : TrainState, optional
        Where to continue from (a resumed run: its ``epoch``, ``step``, ``batch`` and
        ``history``; the batches already done in ``state.batch`` are skipped). Default: a
        fresh run.
    l1, l2 : float
        Penalty strengths, as for :func:`anynet.nn.loss_and_grads`. With ``l2_per_sample``
        the L2 strength is divided by each batch's size (scikit-learn's ``alpha``), or by the
        sum of its sample weights (``loader.batch_weight(b)``) when batches come weighted; a
        batch of weights all 0 adds no penalty.
    validate : callable, optional
        ``validate(params) -> {'val_accuracy': ..., ...}`` after each epoch.
    callbacks : sequence of Callback
        See :class:`anynet.training.Callback`.
    backend : Backend, optional
        Where the arrays live; default: the loader's.
    divergence_factor : float or None
        Stop with :class:`~anynet.errors.DivergenceError` when a batch's loss per sample exceeds
        this many times the run's first one (or 1, if that is smaller): a learning rate far
        too high shows as a loss in the thousands or beyond long before it is NaN. ``None``
        turns the check off (NaN and infinities always stop a run).

    Returns
    -------
    TrainState

    Raises
    ------
    DataError
        Before any step, if the loader's labels need more outputs than the model has.
    NonFiniteLossError, DivergenceError
        A batch loss was NaN or infinite, or diverged; the message names the epoch and step.
        Losses are checked before every checkpoint is written, so the last checkpoint holds
        the last good parameters.
    KeyboardInterrupt
        After every callback's ``on_interrupt`` ran (a checkpointer saves there). Ctrl-C and
        SIGTERM arrive as :class:`Interrupted` at the end of the step they came in (a second
        Ctrl-C at once), so a checkpoint saved then is a state the run really passed through.

    Examples
    --------
    >>> import numpy as np, anynet
    >>> from anynet import nn
    >>> from anynet.data import DataLoader
    >>> from anynet.training import select_step, train
    >>> be = anynet.get_backend("numpy")
    >>> X, y = np.random.default_rng(0).random((64, 4)), np.arange(64) % 2
    >>> loader = DataLoader(X, y, 16, seed=0, normalize=None, backend=be)
    >>> model = nn.Sequential(nn.Dense(4, 8), nn.ReLU(), nn.Dense(8, 2))
    >>> params = model.init_params(rng=be.host_generator(0), backend=be)
    >>> step = select_step(model, nn.adam(0.01), params, backend=be)
    >>> state = train(step, loader, epochs=3)
    >>> state.epoch, state.step, len(state.history["loss"])
    (3, 12, 3)
    """
    backend = backend if backend is not None else loader.backend
    state = TrainState() if state is None else state
    state.train_step, state._backend = step, backend
    state.epochs, state.batches_per_epoch = int(epochs), len(loader)
    state.divergence_factor = None if divergence_factor is None else float(divergence_factor)
    state.strong_penalty = max(l1, l2) >= 1.0
    _check_labels_fit(step.model, loader)
    state.losses_are_means = getattr(step, "reduction", "mean") == "mean"
    state.callbacks = tuple(callbacks)
    state.completed = False
    if state.step > 0:
        _check_resumed_counters(state, loader)
    if state.weight_scales is None:  # a fresh run (or a checkpoint from before they were kept)
        state.weight_scales = weight_scales(step.params, backend)
    if state.step > 0:  # resumed: the callbacks continue from what the checkpoint kept
        for cb in state.callbacks:
            saved = state.callback_states.get(cb.name)
            cb.load_state_dict(_on_backend(saved, backend), state)
    # (rank, size) of a data-parallel run's loader (anynet.distributed), else None.
    shard = getattr(loader, "shard", None)
    rank = 0 if shard is None else shard[0]
    boundary = _StepBoundary()
    try:
        boundary.__enter__()
        for cb in callbacks:
            cb.on_train_begin(state)
        while state.epoch < epochs and not state.stop:
            epoch = state.epoch
            loader.set_epoch(epoch)
            if state.batch == 0:  # a fresh epoch; a resumed one keeps what it carried
                state.carried_loss, state.carried_seen = 0.0, 0
            state.batch_losses, state.batch_sizes, state.seen = [], [], 0
            t0 = time.perf_counter()
            for b, (X, y, *weights) in enumerate(loader):
                if b < state.batch:  # resumed mid-epoch: these steps are already in params
                    continue
                # A data-parallel rank's batch is its part of the global batch b; counts and
                # per-sample penalties are the global batch's, the same on every rank.
                n = int(X.shape[0]) if shard is None else loader.batch_samples(b)
                # Dropout masks from a generator named by (seed, epoch, batch): a run resumed
                # mid-epoch draws exactly the masks the uninterrupted run drew. Ranks other
                # than 0 add their rank: their samples get masks of their own.
                key = (seed, epoch, b, 1) if not rank else (seed, epoch, b, 1, rank)
                rng = backend.generator(derive_seed(*key)) if step.needs_rng else None
                # A weighted loader's batches come with their weights; scikit-learn divides the
                # penalty by their sum, where plain batches divide it by their size.
                w = weights[0] if weights else None
                l2_step = l2
                if l2_per_sample:
                    total = loader.batch_weight(b) if weights else n
                    l2_step = l2 / total if total else 0.0
                value = step(X, y, l1=l1, l2=l2_step, rng=rng, sample_weight=w)
                state.step += 1
                state.batch = b + 1
                state.batch_losses.append(value)
                state.last_batch = (X, y)
                state.batch_sizes.append(n)
                state.seen += n
                for cb in callbacks:
                    cb.on_step_end(state)
                boundary.check()  # a step is whole here: state and counters agree
            if state.carried_seen + state.seen == 0:
                raise ValueError("the loader gave no batches: is the data set empty?")
            # One read per epoch: the batch losses and the parameters they led to, checked
            # before anything else sees them.
            total, seen = state.epoch_loss_so_far()
            state.check_params()
            metrics = {"loss": total / seen, "epoch_seconds": time.perf_counter() - t0}
            if validate is not None:
                metrics.update(validate(state.params))
            # The epoch counts as done only once its metrics are in the history: a Ctrl-C
            # during validation leaves it at its last batch, and the resumed run validates it.
            state.log(**metrics)
            state.epoch, state.batch = epoch + 1, 0
            state.batch_losses, state.batch_sizes, state.seen = [], [], 0
            state.carried_loss, state.carried_seen = 0.0, 0
            for cb in callbacks:
                cb.on_epoch_end(state)
            boundary.check()
        state.completed = True
    except KeyboardInterrupt:
        for cb in callbacks:
            cb.on_interrupt(state)
        raise
    finally:
        boundary.__exit__()
        for cb in callbacks:
            cb.on_train_end(state)
    return state
