"""Callbacks: what runs around the training loop's steps, without the loop knowing what.

A callback overrides the hooks it needs. :class:`ProgressBar` shows the run, and
:class:`EarlyStopping` ends it by scikit-learn's rule; checkpoints are the
:class:`~anynet.training.checkpoints.Checkpointer`'s. The estimator, the command line and a
script of your own hand the same objects to :func:`~anynet.training.train`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from anynet.backends import to_numpy
from anynet.errors import ModelFileError

__all__ = ["Callback", "EarlyStopping", "ProgressBar", "saved_state_problem"]

Array = Any


class Callback:
    """Hooks into :func:`~anynet.training.train`; each receives the
    :class:`~anynet.training.TrainState`. Override what you need.

    A callback whose decisions depend on the epochs it has seen (early stopping) saves what it
    knows with each checkpoint: :meth:`state_dict` gives it, under the callback's ``name``, and
    :meth:`load_state_dict` takes it back when a run resumes, so the resumed run decides as the
    uninterrupted one would have.
    """

    #: The key of this callback's state in a checkpoint.
    name = "callback"

    def state_dict(self) -> dict[str, Any] | None:
        """What a checkpoint must hold for this callback to continue exactly (arrays allowed),
        or ``None``: nothing."""
        return None

    def load_state_dict(self, saved: dict[str, Any] | None, state: Any) -> None:
        """Continue from ``saved`` (what :meth:`state_dict` gave, read from a file: check what
        you use), or, for a checkpoint written without it, from the run's ``state.history``
        as far as that allows. ``state`` is the resumed :class:`~anynet.training.TrainState`
        (its parameters are there to check against)."""

    def on_train_begin(self, state: Any) -> None:
        """Before the first step (``state.epochs`` and ``state.batches_per_epoch`` are set)."""

    def on_step_end(self, state: Any) -> None:
        """After each optimizer step (keep it cheap: it runs on the hot path)."""

    def on_epoch_end(self, state: Any) -> None:
        """After each epoch's metrics are logged; set ``state.stop = True`` to stop."""

    def on_interrupt(self, state: Any) -> None:
        """On Ctrl-C, with the state of the last completed step."""

    def on_train_end(self, state: Any) -> None:
        """Last, however the run ended (also after an error)."""


class EarlyStopping(Callback):
    """Stop when a metric has not improved by ``tol`` for more than ``patience`` epochs,
    scikit-learn's ``MLPClassifier`` rule.

    ``monitor='loss'`` (lower is better) or a score such as ``'val_accuracy'`` (higher is
    better). With ``restore_best``, the best epoch's parameters are kept in
    :attr:`best_params` (a copy), for the caller to put back at the end.

    With ``reduce``, the optimizer's :class:`~anynet.nn.schedules.ReducibleSchedule`, a plateau
    divides the learning rate instead of stopping, and the count starts over; a plateau stops
    the run only once the rate is ``min_rate`` or less. That is scikit-learn's
    ``learning_rate='adaptive'`` (a fifth of the rate each time, down to 1e-6), and the
    number of divisions is saved with the rule's state, so a resumed run trains at the rate
    the uninterrupted one would.
    """

    name = "early_stopping"

    def __init__(
        self,
        monitor: str = "loss",
        *,
        tol: float = 1e-4,
        patience: int = 10,
        restore_best: bool = False,
        reduce: Any = None,
        min_rate: float = 1e-6,
    ):
        self.monitor = monitor
        self.tol = float(tol)
        self.patience = int(patience)
        self.restore_best = restore_best
        self.higher_is_better = monitor != "loss" and not monitor.endswith("loss")
        self.best = -math.inf if self.higher_is_better else math.inf
        self.best_params: dict[str, Array] | None = None
        self.no_improvement = 0
        self.reduce = reduce
        self.min_rate = float(min_rate)

    def _update(self, value: float) -> bool:
        """Count one epoch's value; whether it is the best so far."""
        if self.higher_is_better:
            self.no_improvement = 0 if value >= self.best + self.tol else self.no_improvement + 1
            improved = value > self.best
        else:
            self.no_improvement = 0 if value <= self.best - self.tol else self.no_improvement + 1
            improved = value < self.best
        if improved:
            self.best = value
        return improved

    def on_epoch_end(self, state: Any) -> None:
        if self._update(state.history[self.monitor][-1]) and self.restore_best:
            # A copy: a fused step goes on updating its parameters in place.
            xp = array_namespace(*state.params.values())
            self.best_params = {k: xp.asarray(v, copy=True) for k, v in state.params.items()}
        if self.no_improvement > self.patience:
            # The rate the next step would take (scikit-learn's check, before it divides).
            if self.reduce is not None and self.reduce(state.step) > self.min_rate:
                self.reduce.reduce()
                self.no_improvement = 0
            else:
                state.stop = True

    def state_dict(self) -> dict[str, Any]:
        saved = {
            "monitor": self.monitor,
            "best": self.best,
            "no_improvement": self.no_improvement,
            "best_params": self.best_params,
        }
        if self.reduce is not None:
            saved["reductions"] = self.reduce.reductions
        return saved

    def load_state_dict(self, saved: dict[str, Any] | None, state: Any) -> None:
        """Continue from a checkpoint's state, checked first (see :func:`saved_state_problem`):
        it must be of this rule's monitor, and hold best parameters exactly when this rule
        keeps them (``restore_best``).

        Raises
        ------
        ModelFileError
            The state is malformed, out of range, or of another rule.
        """
        if saved is None and self.reduce is None:
            # an older checkpoint: the counters follow from the history
            self.replay(state.history)
            return
        if saved is None:
            raise ModelFileError(
                "the checkpoint holds no early-stopping state, so how often its run divided "
                "the learning rate is unknown; start afresh without resuming, or resume "
                "another checkpoint folder"
            )
        host = {k: to_numpy(v) for k, v in state.params.items()}
        why = saved_state_problem(saved, host, state.history)
        if why is None and saved["monitor"] != self.monitor:
            mine = self.monitor
            why = f"monitors {saved['monitor']!r}; this run's early stopping monitors {mine!r}"
        if why is None and saved["best_params"] is not None and not self.restore_best:
            why = "holds best parameters, which this run's early stopping does not keep"
        if why is None and ("reductions" in saved) != (self.reduce is not None):
            why = (
                "counts divisions of the learning rate, which this run's does not make"
                if self.reduce is None
                else "counts no divisions of the learning rate, which this run's makes"
            )
        if why is not None:
            raise ModelFileError(
                f"the checkpoint's early-stopping state {why}; start afresh without resuming, "
                "or resume from another checkpoint folder"
            )
        self.best = float(saved["best"])
        self.no_improvement = saved["no_improvement"]
        self.best_params = saved["best_params"]
        if self.reduce is not None:
            self.reduce.reductions = saved["reductions"]

    def replay(self, history: Mapping[str, list[float]]) -> bool:
        """Run the rule over the epochs of a resumed run's ``history``; whether it would have
        stopped."""
        stop = False
        for value in history.get(self.monitor, []):
            self._update(value)
            stop = stop or self.no_improvement > self.patience
        return stop


_STATE_KEYS = {"monitor", "best", "no_improvement", "best_params"}
#: ... and with a learning rate that a plateau divides, how often it did.
_REDUCING_KEYS = _STATE_KEYS | {"reductions"}


def saved_state_problem(
    saved: Any, params: Mapping[str, np.ndarray], history: Mapping[str, Any]
) -> str | None:
    """Why ``saved`` cannot be an :class:`EarlyStopping` state of a run with these host
    ``params`` and this ``history`` (a checkpoint's), or None.

    It must be ``{'monitor', 'best', 'no_improvement', 'best_params'}``: a metric name; the best
    value of that metric in the history (or in all but its last epoch: a checkpointer called
    before the rule), or the rule's starting infinity before any epoch; a count of epochs
    without improvement no larger than the epochs in the history; and None or exactly the
    parameters' names, shapes and dtypes, all finite. A rule that divides the learning rate
    adds ``'reductions'``: how often it did, at most once an epoch.
    """
    if not isinstance(saved, dict) or set(saved) not in (_STATE_KEYS, _REDUCING_KEYS):
        keys = sorted(saved) if isinstance(saved, dict) else saved
        return (
            f"holds {_short(keys)}; expected the entries {sorted(_STATE_KEYS)} (and "
            "'reductions', with a learning rate it divides)"
        )
    monitor, best, count = saved["monitor"], saved["best"], saved["no_improvement"]
    if not isinstance(monitor, str) or not isinstance(history.get(monitor, []), list):
        return f"monitors {_short(monitor)}, which is not a metric of the checkpoint's history"
    values = history.get(monitor, [])
    if not values and any(history.values()):
        return f"monitors {monitor!r}, a metric the checkpoint's history does not hold"
    higher = monitor != "loss" and not monitor.endswith("loss")
    pick = max if higher else min
    start = -math.inf if higher else math.inf
    allowed = {pick(values, default=start), pick(values[:-1], default=start)}
    if not isinstance(best, float) or best not in allowed:
        return (
            f"has the best {monitor} {_short(best)}; the checkpoint's history makes it "
            f"{' or '.join(map(repr, sorted(allowed)))}"
        )
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(values):
        return (
            f"counts {_short(count)} epochs without improvement; expected an integer from 0 to "
            f"{len(values)}, the epochs in its history"
        )
    reductions = saved.get("reductions", 0)
    if not _is_count(reductions, len(values)):
        return (
            f"divided the learning rate {_short(reductions)} times; expected an integer from 0 "
            f"to {len(values)}, the epochs in its history"
        )
    if saved["best_params"] is not None:
        return _params_problem(saved["best_params"], params)
    return None


def _is_count(value: Any, most: int) -> bool:
    """An int (not a bool) from 0 to ``most``."""
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= most


def _params_problem(arrays: Any, params: Mapping[str, np.ndarray]) -> str | None:
    """Why ``arrays`` are not parameters of these names, shapes and dtypes, all finite."""
    if not isinstance(arrays, dict) or set(arrays) != set(params):
        names = sorted(arrays) if isinstance(arrays, dict) else arrays
        return f"holds best parameters {_short(names)}; this network's are {sorted(params)}"
    for name, a in sorted(arrays.items()):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            return f"holds {_short(a)} as the best parameter {name!r}; expected an array"
        host, want = to_numpy(a), params[name]
        if host.shape != want.shape or host.dtype != want.dtype:
            return (
                f"holds the best parameter {name!r} of shape {host.shape} and dtype "
                f"{host.dtype}; this network's is {want.shape} of {want.dtype}"
            )
        if not np.isfinite(host).all():
            return f"holds the best parameter {name!r} with NaN or infinite entries"
    return None


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a crafted file must not flood a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ProgressBar(Callback):
    """Progress on stderr: a tqdm bar on a terminal (epoch, loss, metrics and samples per
    second), and one line per epoch anywhere else (a file, a pipe, a job's log), where a bar's
    redraws would pile up as hundreds of kilobytes.

    ``bar`` chooses: ``None`` (default) draws the bar when ``file`` is a terminal or the run is
    in a Jupyter kernel, and writes lines otherwise. A line reads
    ``epoch 3/25: loss 0.3012, val_accuracy 0.8712, val_loss 0.3544, 4.1 s, 14,634 samples/s``.
    The bar's running loss is read from the device ``every`` batches (default: ten times an
    epoch); each read is a synchronization. Lines read nothing the loop has not read already.
    """

    def __init__(self, every: int | None = None, file: Any = None, bar: bool | None = None):
        self.every = every
        self.file = file
        self.use_bar = bar
        self.bar = None

    def _stream(self) -> Any:
        return self.file or sys.stderr

    def _draws_bar(self) -> bool:
        if self.use_bar is not None:
            return bool(self.use_bar)
        stream = self._stream()
        try:
            terminal = bool(stream.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            terminal = False
        # tqdm.auto draws a notebook widget in Jupyter, whose output streams are no terminals
        return terminal or ("ipykernel" in sys.modules and stream in (sys.stderr, sys.stdout))

    def on_train_begin(self, state: Any) -> None:
        self._t0 = time.perf_counter()
        self._seen = 0
        if not self._draws_bar():
            return
        from tqdm.auto import tqdm

        n = state.batches_per_epoch
        self.bar = tqdm(
            total=max(0, (state.epochs - state.epoch) * n - state.batch),
            unit="batch",
            file=self._stream(),
            dynamic_ncols=True,
            leave=True,
        )
        self._every = self.every or max(1, n // 10)

    def on_step_end(self, state: Any) -> None:
        self._seen = state.seen
        if self.bar is None:
            return
        self.bar.update(1)
        if state.batch % self._every == 0 or state.batch == state.batches_per_epoch:
            total, seen = state.epoch_loss_so_far()
            rate = state.seen / max(time.perf_counter() - self._t0, 1e-9)
            self.bar.set_description(f"epoch {state.epoch + 1}/{state.epochs}")
            self.bar.set_postfix_str(f"loss {total / seen:.4f}, {rate:,.0f} samples/s")

    def on_epoch_end(self, state: Any) -> None:
        metrics = {k: v[-1] for k, v in state.history.items()}
        seconds = metrics.pop("epoch_seconds", 0.0)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        rate = f", {self._seen / seconds:,.0f} samples/s" if seconds > 0 else ""
        if self.bar is not None:
            self.bar.set_postfix_str(shown + rate)
        else:
            stream = self._stream()
            print(
                f"epoch {state.epoch}/{state.epochs}: {shown}, {seconds:.1f} s{rate}", file=stream
            )
            stream.flush()
        self._t0 = time.perf_counter()

    def on_train_end(self, state: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
