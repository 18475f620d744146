"""Checkpoints: a run's state written atomically as it trains, and read back to resume it.

A checkpoint holds what :class:`~anynet.training.TrainState` and the training step hold: the
parameters and optimizer state, the epoch, step and batch, the history, and the loss summed so
far in an interrupted epoch. Because a run's randomness is a function of where it is (see
:mod:`anynet.training.loop`), that is all a resumed run needs to end as an uninterrupted one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anynet.backends import Backend
from anynet.errors import ModelFileError
from anynet.training.callbacks import Callback
from anynet.training.loop import TrainState

__all__ = ["CHECKPOINT_NAME", "Checkpointer", "read_checkpoint"]

#: The checkpoint's file name in its folder.
CHECKPOINT_NAME = "checkpoint.safetensors"


class Checkpointer(Callback):
    """Write the run's state to ``directory / CHECKPOINT_NAME`` every ``every`` epochs, every
    ``every_steps`` optimizer steps if set, on Ctrl-C, and when the run stops early.

    Writes are atomic (:func:`anynet.io.save_checkpoint`): a kill leaves the last one whole.
    The losses of the epoch in progress are checked before each write, so a run whose loss
    turned NaN or infinite never overwrites its last good checkpoint.

    Parameters
    ----------
    directory : path
        Created if missing.
    every : int
        Epochs between checkpoints.
    every_steps : int, optional
        Optimizer steps between checkpoints, as well.
    meta : dict, optional
        Stored with each checkpoint (``extra``): what the run was, for whoever resumes it.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        every: int = 1,
        every_steps: int | None = None,
        meta: dict[str, Any] | None = None,
    ):
        self.path = Path(directory) / CHECKPOINT_NAME
        self.every = int(every)
        self.every_steps = every_steps
        self.meta = dict(meta or {})

    def save(self, state: TrainState) -> None:
        from anynet.io import save_checkpoint

        # Read first: it raises if a loss of the epoch in progress is not finite.
        loss_sum, seen = state.epoch_loss_so_far()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # ``batch`` > 0 only mid-epoch: resuming skips the batches already done, and the loss
        # they added up to so far is carried over.
        save_checkpoint(
            self.path,
            params=state.params,
            opt_state=state.opt_state,
            epoch=state.epoch,
            step=state.step,
            history=state.history,
            extra={**self.meta, "batch": state.batch, "loss_sum": loss_sum, "seen": seen},
        )

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch % self.every == 0 or state.stop:
            self.save(state)

    def on_step_end(self, state: TrainState) -> None:
        if self.every_steps and state.step % self.every_steps == 0:
            self.save(state)

    def on_interrupt(self, state: TrainState) -> None:
        self.save(state)


def read_checkpoint(
    path: str | os.PathLike, *, backend: Backend, param_shapes: dict[str, tuple[int, ...]]
) -> tuple[TrainState, Any]:
    """The :class:`TrainState` a checkpoint continues from, and the
    :class:`~anynet.io.Checkpoint` itself (its ``params`` and ``opt_state`` on ``backend``,
    to build the training step from).

    Raises
    ------
    ModelFileError
        The file is not a checkpoint anynet can read, or its parameters do not fit
        ``param_shapes`` (the network being resumed).
    """
    from anynet.io import load_checkpoint

    ckpt = load_checkpoint(path, backend=backend)
    expected = {k: tuple(v) for k, v in param_shapes.items()}
    got = {k: tuple(v.shape) for k, v in ckpt.params.items()}
    if got != expected:
        raise ModelFileError(
            f"{path}: the checkpoint's parameters {got} do not fit this network {expected}; "
            "use another checkpoint folder, or start afresh without resuming"
        )
    extra = ckpt.extra or {}
    state = TrainState(
        epoch=ckpt.epoch,
        step=ckpt.step,
        batch=int(extra.get("batch", 0)),
        history={k: list(v) for k, v in (ckpt.history or {}).items()},
        carried_loss=float(extra.get("loss_sum", 0.0)),
        carried_seen=int(extra.get("seen", 0)),
    )
    return state, ckpt
