"""Where a training run stands (:class:`TrainState`), and the checks of what it is about to
keep: the batch losses of the epoch in progress and the parameters they led to, against NaN,
infinity and divergence (a loss far above the run's first, weights far beyond their scale when
the run began).

The loop (:mod:`anynet.training.loop`) fills the state; callbacks read it; checkpoints save it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anynet.backends import Backend
from anynet.errors import DivergenceError, NonFiniteLossError
from anynet.nn.step import Step

__all__ = ["TrainState", "weight_scales"]

Array = Any


@dataclass
class TrainState:
    """Where a run stands: what callbacks see and checkpoints save.

    ``epoch`` counts completed epochs; ``step`` counts optimizer steps over the whole run;
    ``batch`` is the number of batches done in the epoch in progress (0 between epochs).
    ``history`` holds one value per completed epoch for each metric. The parameters and the
    optimizer state are the training step's (:attr:`train_step`), read through
    :attr:`params` and :attr:`opt_state`.
    """

    epoch: int = 0
    step: int = 0
    batch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    stop: bool = False
    #: The step object training runs, bound by :func:`train`.
    train_step: Step | None = field(default=None, repr=False)
    #: The epoch count :func:`train` runs to, and the batches in one epoch.
    epochs: int = 0
    batches_per_epoch: int = 0
    # The epoch in progress: its batch losses (device scalars, as the step returns them: means
    # or sums, see ``losses_are_means``) and their sizes, the samples they cover, and the loss
    # sum and sample count carried over from before a mid-epoch resume.
    batch_losses: list[Array] = field(default_factory=list, repr=False)
    losses_are_means: bool = field(default=True, repr=False)
    batch_sizes: list[int] = field(default_factory=list, repr=False)
    seen: int = 0
    carried_loss: float = 0.0
    carried_seen: int = 0
    #: The run's first batch loss (per sample): divergence is measured against it.
    first_loss: float | None = None
    #: A batch loss (per sample) above ``divergence_factor`` times the first one (or 1, if that
    #: is smaller) stops the run as diverged; ``None``: never. Set by :func:`train`.
    divergence_factor: float | None = None
    #: The batch of the last step, ``(X, y)``: the parameters it produced are measured on it
    #: before anything keeps them (:meth:`check_params`).
    last_batch: tuple[Array, Array] | None = field(default=None, repr=False)
    #: Each weight array's scale when the run began (the larger of its largest magnitude and
    #: Glorot's scale for its shape): a weight beyond ``divergence_factor`` times it has
    #: exploded. Measured by :func:`train` at a run's start, kept in checkpoints.
    weight_scales: dict[str, float] | None = None
    #: Whether an L1 or L2 strength is 1 or more (set by :func:`train`): penalties that weigh
    #: the weights as much as the data, which a message about overflow should mention.
    strong_penalty: bool = False
    #: Set by :func:`train` when the run ends as asked (its epochs done, or stopped), not by
    #: an exception.
    completed: bool = False
    #: The callbacks of the run, bound by :func:`train` (a checkpoint saves their states).
    callbacks: tuple[Any, ...] = field(default=(), repr=False)
    #: Callback states read from a checkpoint, by callback name, restored by :func:`train`.
    callback_states: dict[str, Any] = field(default_factory=dict, repr=False)
    _backend: Backend | None = field(default=None, repr=False)
    _checked_step: int = field(default=-1, repr=False)

    @property
    def params(self) -> dict[str, Array]:
        """The training step's parameters (views into its buffers for a fused step)."""
        return self.train_step.params

    @property
    def opt_state(self) -> Any:
        """The training step's optimizer state, in the optimizer's structure."""
        return self.train_step.opt_state

    @property
    def path(self) -> str:
        """Which step ran: ``'generic'``, or a fast path's name."""
        return self.train_step.name if self.train_step is not None else "generic"

    def epoch_loss_so_far(self) -> tuple[float, int]:
        """Summed loss and samples of the epoch in progress (reads the device once).

        Raises
        ------
        NonFiniteLossError
            A batch loss of the epoch is NaN or infinite; the message names the step.
        """
        total = self.carried_loss
        if self.batch_losses:
            total += float(self._host_losses().sum())
        return total, self.carried_seen + self.seen

    def _host_losses(self) -> np.ndarray:
        """The loss sums of this epoch's batches on the host (float64), after raising if one is
        not finite or has diverged."""
        be = self._backend
        host = be.to_numpy(be.xp.stack(self.batch_losses)).astype("float64")
        sizes = np.asarray(self.batch_sizes, dtype="float64")
        per_sample, sums = (host, host * sizes) if self.losses_are_means else (host / sizes, host)
        if self.first_loss is None and np.isfinite(per_sample[0]):
            self.first_loss = float(per_sample[0])
        bad = np.flatnonzero(~np.isfinite(host))
        where = bad
        limit = self._loss_limit()
        if limit is not None:
            where = np.flatnonzero(~np.isfinite(host) | (per_sample > limit))
        if where.size:
            i = int(where[0])
            in_epoch = self.batch - len(self.batch_losses) + i + 1
            at = (
                f"at epoch {self.epoch + 1}, step {in_epoch} of the epoch "
                f"(global step {self.step - len(self.batch_losses) + i + 1})"
            )
            advice = self._advice()
            kept = "The last checkpoint, if any, holds the last good parameters."
            if not np.isfinite(host[i]):
                raise NonFiniteLossError(
                    f"the training loss became {host[i]} {at}; training stopped. {advice} for "
                    f"NaN. {kept}"
                )
            raise DivergenceError(
                f"the training loss reached {per_sample[i]:.3g} per sample {at}, more than "
                f"{self.divergence_factor:g} times its first value ({self.first_loss:.3g}): "
                f"training diverged and stopped. {advice}. {kept} To train on regardless, turn "
                "the check off (divergence_factor=None)."
            )
        return sums

    def check_params(self) -> None:
        """Raise unless the current parameters are fit to keep (in a checkpoint, a model file,
        a fitted estimator): finite, not exploded, and with a loss that has not diverged.

        A step returns the loss of the parameters *before* its update, so the batch losses
        never vouch for the parameters after the last step: those are measured here on the
        last batch (one forward pass, no dropout), against the same limit as every batch loss.
        A weight array whose largest magnitude exceeds ``divergence_factor`` times its scale
        when the run began (:attr:`weight_scales`) has exploded too: SGD on unscaled inputs can
        blow the weights up while the loss stays modest, and end at chance level. Reads the
        device once; checked once per step.

        Raises
        ------
        NonFiniteLossError
            A parameter holds NaN or infinite values, or so does their loss.
        DivergenceError
            Their loss or a weight array is beyond the divergence limits.
        """
        if self._checked_step == self.step or self.train_step is None:
            return
        be, params = self._backend, self.params
        xp = be.xp
        names = list(params)
        checks = [xp.max(xp.abs(xp.reshape(params[n], (-1,)))) for n in names]
        loss = None if self.last_batch is None else self.train_step.evaluate(*self.last_batch)
        if loss is not None:
            checks.append(xp.astype(loss, checks[0].dtype))
        host = be.to_numpy(xp.stack(checks)).astype("float64")
        at = f"after epoch {self.epoch + 1}, step {self.batch} of the epoch "
        at += f"(global step {self.step})"
        kept = "training stopped before keeping them; the last checkpoint, if any, holds the "
        kept += "last good parameters."
        advice = self._advice()
        for name, largest in zip(names, host, strict=False):
            if not np.isfinite(largest):
                values = be.to_numpy(params[name])
                bad = values.size - int(np.count_nonzero(np.isfinite(values)))
                raise NonFiniteLossError(
                    f"parameter {name!r} holds {bad} NaN or infinite values {at}; {kept} "
                    f"{advice} for NaN."
                )
        off = "To train on regardless, turn the check off (divergence_factor=None)."
        if self.divergence_factor is not None and self.weight_scales is not None:
            for name, largest in zip(names, host, strict=False):
                scale = self.weight_scales.get(name)
                if scale is not None and largest > self.divergence_factor * scale:
                    raise DivergenceError(
                        f"weight {name!r} reached magnitude {largest:.3g} {at}, more than "
                        f"{self.divergence_factor:g} times its scale when the run began "
                        f"({scale:.3g}): training diverged; {kept} {advice}. {off}"
                    )
        if loss is not None:
            value = host[-1]
            if not np.isfinite(value):
                raise NonFiniteLossError(
                    f"the parameters {at} have a loss of {value} on the last batch; {kept} "
                    f"{advice} for NaN."
                )
            limit = self._loss_limit()
            if limit is not None and value > limit:
                raise DivergenceError(
                    f"the parameters {at} have a loss of {value:.3g} per sample on the last "
                    f"batch, more than {self.divergence_factor:g} times the run's first "
                    f"({self.first_loss:.3g}): training diverged; {kept} {advice}. {off}"
                )
        self._checked_step = self.step

    def _advice(self) -> str:
        """What to try, for a run that went non-finite or diverged."""
        lower = "the learning rate"
        if self.strong_penalty:  # a huge L1/L2 strength overflows as surely as a huge step
            lower += " or the penalty strengths (alpha, l1)"
        return f"Lower {lower}, scale the inputs (standardize), or check the data"

    def _loss_limit(self) -> float | None:
        """The batch loss (per sample) beyond which the run has diverged, if it is known."""
        if self.divergence_factor is None or self.first_loss is None:
            return None
        return self.divergence_factor * max(self.first_loss, 1.0)

    def log(self, **metrics: float) -> None:
        """Append one value per metric to :attr:`history`."""
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(float(value))


def _glorot_scale(shape: tuple[int, ...]) -> float:
    """The scale Glorot's initializer draws a weight array of ``shape`` at: ``sqrt(6 / (fan_in
    + fan_out))``, with a dense ``(n_in, n_out)`` or a convolution's ``(out, in, *kernel)``."""
    receptive = math.prod(shape[2:])
    return math.sqrt(6.0 / ((shape[0] + shape[1]) * receptive))


def weight_scales(params: dict[str, Array], backend: Backend) -> dict[str, float]:
    """Each weight array's scale (arrays of two or more dimensions: biases start at zero):
    the larger of its largest magnitude and Glorot's scale for its shape, so that weights
    drawn by any initializer, or already trained, are measured from where they are. One read
    of the device."""
    xp = backend.xp
    names = [n for n, p in params.items() if len(p.shape) >= 2 and math.prod(p.shape) > 0]
    if not names:
        return {}
    largest = backend.to_numpy(
        xp.stack([xp.astype(xp.max(xp.abs(params[n])), xp.float64) for n in names])
    )
    return {
        n: max(float(m), _glorot_scale(tuple(params[n].shape)))
        for n, m in zip(names, largest.tolist(), strict=True)
    }
