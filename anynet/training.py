"""The training loop shared by :class:`anynet.NNClassifier` and ``anynet train``.

One loop: epochs of batches from a :class:`~anynet.data.DataLoader`, a :func:`~anynet.nn.train_step`
per batch, and callbacks at the end of each epoch (early stopping, checkpoints). Inside an epoch
nothing is read back from the device except, when a progress bar is shown, the running loss a
few times per epoch: every read is a synchronization.

Randomness is a pure function of where the run is: the loader's shuffle of epoch k depends on
``(seed, k)`` and the dropout masks of batch b on ``(seed, k, b)``, whether the run went straight
through or was resumed, even mid-epoch. That is what makes a resumed run's weights equal an
uninterrupted run's, bit for bit on NumPy.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from array_api_compat import array_namespace

from anynet.backends import Backend, derive_seed, to_numpy
from anynet.errors import DataError, NonFiniteLossError
from anynet.nn.layers import Layer
from anynet.nn.optim import GradientTransformation
from anynet.nn.step import train_step

__all__ = ["Callback", "EarlyStopping", "TrainState", "train"]

Array = Any


@dataclass
class TrainState:
    """Where a run stands; what callbacks see and checkpoints save.

    ``epoch`` counts completed epochs; ``step`` counts optimizer steps over the whole run;
    ``batch`` is the number of batches done in the epoch in progress (0 between epochs).
    ``history`` holds one value per completed epoch for each metric.
    """

    params: dict[str, Array]
    opt_state: Any
    epoch: int = 0
    step: int = 0
    batch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    stop: bool = False
    # The epoch in progress: its batch losses (device scalars, times batch size) and the loss
    # sum and sample count carried over from before a mid-epoch resume.
    batch_losses: list[Array] = field(default_factory=list, repr=False)
    seen: int = 0
    carried_loss: float = 0.0
    carried_seen: int = 0
    path: str = "generic"  # which step ran: "generic", or a fast path's name

    def epoch_loss_so_far(self) -> tuple[float, int]:
        """Summed loss and samples of the epoch in progress (reads the device once)."""
        total = self.carried_loss
        if self.batch_losses:
            xp = array_namespace(*self.batch_losses)
            total += float(to_numpy(xp.stack(self.batch_losses)).sum(dtype="float64"))
        return total, self.carried_seen + self.seen

    def log(self, **metrics: float) -> None:
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(float(value))


class Callback:
    """Hooks into :func:`train`. Override what you need."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After each epoch's metrics are logged; set ``state.stop = True`` to stop."""

    def on_step_end(self, state: TrainState) -> None:
        """After each optimizer step (keep it cheap: it runs on the hot path)."""

    def on_interrupt(self, state: TrainState) -> None:
        """On Ctrl-C, with the state of the last completed step."""


class EarlyStopping(Callback):
    """Stop when a metric has not improved by ``tol`` for more than ``patience`` epochs,
    scikit-learn's ``MLPClassifier`` rule.

    ``monitor='loss'`` (lower is better) or a score such as ``'val_accuracy'`` (higher is
    better). With ``restore_best``, the best epoch's parameters are put back at the end.
    """

    def __init__(
        self,
        monitor: str = "loss",
        *,
        tol: float = 1e-4,
        patience: int = 10,
        restore_best: bool = False,
    ):
        self.monitor = monitor
        self.tol = float(tol)
        self.patience = int(patience)
        self.restore_best = restore_best
        self.higher_is_better = monitor != "loss" and not monitor.endswith("loss")
        self.best = -math.inf if self.higher_is_better else math.inf
        self.best_params: dict[str, Array] | None = None
        self.no_improvement = 0

    def on_epoch_end(self, state: TrainState) -> None:
        value = state.history[self.monitor][-1]
        if self.higher_is_better:
            self.no_improvement = 0 if value >= self.best + self.tol else self.no_improvement + 1
            improved = value > self.best
        else:
            self.no_improvement = 0 if value <= self.best - self.tol else self.no_improvement + 1
            improved = value < self.best
        if improved:
            self.best = value
            if self.restore_best:  # a copy: a fast path updates parameters in place
                xp = array_namespace(*state.params.values())
                self.best_params = {k: xp.asarray(v, copy=True) for k, v in state.params.items()}
        if self.no_improvement > self.patience:
            state.stop = True


def _check_labels_fit(model: Layer, loader: Any) -> None:
    """Refuse labels the model has no output for: the generic losses would train on garbage
    (a one-hot row of zeros), and the fast paths' kernels index the logits by label, so an
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


def _needs_rng(model: Layer) -> bool:
    layers = getattr(model, "layers", (model,))
    return any(getattr(layer, "p", 0.0) > 0.0 for layer in layers)


def train(
    model: Layer,
    optimizer: GradientTransformation,
    state: TrainState,
    loader: Any,
    *,
    epochs: int,
    backend: Backend,
    seed: int,
    loss: str | Callable = "softmax_cross_entropy",
    l1: float = 0.0,
    l2: float = 0.0,
    l2_per_sample: bool = False,
    reduction: str = "mean",
    validate: Callable[[dict[str, Array]], dict[str, float]] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    progress_every: int | None = None,
    fast: bool = True,
) -> TrainState:
    """Train until ``state.epoch == epochs`` or a callback stops the run.

    Parameters
    ----------
    model, optimizer
        The network and its optimizer.
    state : TrainState
        Parameters and optimizer state to start from; a fresh run has ``epoch == step == 0``,
        a resumed one continues from where its checkpoint says (also mid-epoch: the batches
        already done in ``state.batch`` are skipped).
    loader : anynet.data.DataLoader
        Training batches; it must draw its shuffle from ``(its seed, epoch)``.
    epochs : int
        The epoch count to reach (not how many more to run).
    backend : Backend
        Where the arrays live.
    seed : int
        Seeds the dropout masks, per batch.
    loss, l1, l2
        As for :func:`anynet.nn.loss_and_grads`. With ``l2_per_sample`` the L2 strength is
        divided by each batch's size (scikit-learn's ``alpha``).
    reduction : {'mean', 'sum'}
        How each batch's loss combines its samples (the from-scratch seed sums).
    validate : callable, optional
        ``validate(params) -> {'val_accuracy': ..., ...}`` after each epoch.
    callbacks : sequence of Callback
    progress : bool
        Show a tqdm progress bar (epoch, loss, accuracy, samples/s) on stderr.
    fast : bool
        Use a backend fast path where one applies (:mod:`anynet.fast`); ``False`` forces
        the generic engine. The fast path's parameters are updated in place.

    Raises
    ------
    DataError
        Before any step, if the loader's labels need more outputs than the model has.
    NonFiniteLossError
        A batch loss was NaN or infinite; the message names the epoch and step. Parameters
        of that epoch are not handed to callbacks, so the last checkpoint stays the last good.
    KeyboardInterrupt
        After every callback's ``on_interrupt`` ran (a checkpointer saves there).
    """
    xp = backend.xp
    _check_labels_fit(model, loader)
    n_batches = len(loader)
    # A fused step for this backend and model, where one exists (the same math, fewer passes
    # over memory); it updates its flat buffers in place and shows them as state.params.
    fused = None
    if fast:
        from anynet.fast import fused_step

        fused = fused_step(
            model, optimizer, backend, state.params, state.opt_state, loss=loss, reduction=reduction
        )
    if fused is not None:
        state.params, state.opt_state = fused.params, fused.opt_state
    state.path = fused.name if fused is not None else "generic"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=(epochs - state.epoch) * n_batches - state.batch,
            unit="batch",
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )
        every = progress_every or max(1, n_batches // 10)
    dropout = _needs_rng(model)
    try:
        while state.epoch < epochs and not state.stop:
            epoch = state.epoch
            loader.set_epoch(epoch)
            if state.batch == 0:  # a fresh epoch; a resumed one keeps what it carried
                state.carried_loss, state.carried_seen = 0.0, 0
            state.batch_losses, state.seen = [], 0
            losses = state.batch_losses
            t0 = time.perf_counter()
            for b, (X, y) in enumerate(loader):
                if b < state.batch:  # resumed mid-epoch: these steps are already in params
                    continue
                n = int(X.shape[0])
                # Dropout masks from a generator named by (seed, epoch, batch): a run resumed
                # mid-epoch draws exactly the masks the uninterrupted run drew.
                rng = backend.generator(derive_seed(seed, epoch, b, 1)) if dropout else None
                step_l2 = l2 / n if l2_per_sample else l2
                if fused is not None:
                    value = fused(X, y, l1=l1, l2=step_l2, rng=rng)
                    state.opt_state = fused.opt_state  # params are its views, updated in place
                else:
                    params, opt_state, value = train_step(
                        model,
                        optimizer,
                        state.params,
                        state.opt_state,
                        X,
                        y,
                        loss=loss,
                        l1=l1,
                        l2=step_l2,
                        reduction=reduction,
                        train=True,
                        rng=rng,
                        xp=xp,
                    )
                    state.params, state.opt_state = params, opt_state
                state.step += 1
                state.batch = b + 1
                losses.append(value * n if reduction == "mean" else value)  # a batch sum
                state.seen += n
                for cb in callbacks:
                    cb.on_step_end(state)
                if bar is not None:
                    bar.update(1)
                    if state.batch % every == 0 or state.batch == n_batches:
                        host = _check_finite(backend, losses, epoch, state.step - len(losses))
                        total = state.carried_loss + float(host.sum(dtype="float64"))
                        seen = state.carried_seen + state.seen
                        rate = state.seen / max(time.perf_counter() - t0, 1e-9)
                        bar.set_description(f"epoch {epoch + 1}/{epochs}")
                        bar.set_postfix_str(f"loss {total / seen:.4f}, {rate:,.0f} samples/s")
            if state.carried_seen + state.seen == 0:
                raise ValueError("the loader gave no batches: is the data set empty?")
            # One read per epoch: the batch losses, checked before anything else sees params.
            total, seen = state.carried_loss, state.carried_seen + state.seen
            if losses:
                host = _check_finite(backend, losses, epoch, state.step - len(losses))
                total += float(host.sum(dtype="float64"))
            metrics = {"loss": total / seen, "epoch_seconds": time.perf_counter() - t0}
            if validate is not None:
                metrics.update(validate(state.params))
            # The epoch counts as done only once its metrics are in the history: a Ctrl-C
            # during validation leaves it at its last batch, and the resumed run validates it.
            state.log(**metrics)
            state.epoch, state.batch = epoch + 1, 0
            state.batch_losses, state.seen = [], 0
            state.carried_loss, state.carried_seen = 0.0, 0
            if bar is not None:
                shown = ", ".join(
                    f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch_seconds"
                )
                bar.set_postfix_str(f"{shown}, {seen / metrics['epoch_seconds']:,.0f} samples/s")
            for cb in callbacks:
                cb.on_epoch_end(state)
    except KeyboardInterrupt:
        for cb in callbacks:
            cb.on_interrupt(state)
        raise
    finally:
        if bar is not None:
            bar.close()
    return state


def _check_finite(backend: Backend, losses: list[Array], epoch: int, first_step: int):
    """The batch losses on the host (one read), after raising if any is NaN or infinite,
    naming the first such step."""
    import numpy as np

    host = backend.to_numpy(backend.xp.stack(losses))
    bad = np.flatnonzero(~np.isfinite(host))
    if bad.size:
        i = int(bad[0])
        raise NonFiniteLossError(
            f"the training loss became {host[i]} at epoch {epoch + 1}, step {i + 1} of the "
            f"epoch (global step {first_step + i + 1}); training stopped. Lower the learning "
            "rate, scale the inputs (standardize), or check the data for NaN. The last "
            "checkpoint, if any, holds the last good parameters."
        )
    return host
