"""Checkpoints: a run's state written atomically as it trains, and read back to resume it.

A checkpoint holds what :class:`~anynet.training.TrainState` and the training step hold: the
parameters and optimizer state, the epoch, step and batch, the history, the loss summed so far
in an interrupted epoch, the run's first loss, whether it had stopped, and the state of the
callbacks that decide things (early stopping's best epoch and parameters). Because a run's
randomness is a function of where it is (see :mod:`anynet.training.loop`), that is all a
resumed run needs to end as an uninterrupted one.

Resume is exact or refuses: a checkpoint also records what defines its run (the network,
optimizer, dtype, batch size, seed, a fingerprint of the data: whatever the caller passes as
``run``), and :func:`read_checkpoint` refuses one whose run differs from the one asked for,
listing each difference. One run writes to a folder at a time: the
:class:`Checkpointer` holds a lock on it while training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anynet.backends import Backend, to_numpy
from anynet.errors import (
    CheckpointLockedError,
    CheckpointMismatchError,
    ModelFileError,
    NonFiniteLossError,
)
from anynet.training.callbacks import Callback
from anynet.training.loop import TrainState

__all__ = ["CHECKPOINT_NAME", "LOCK_NAME", "Checkpointer", "read_checkpoint"]

#: The checkpoint's file name in its folder.
CHECKPOINT_NAME = "checkpoint.safetensors"
#: The lock file a training run holds in its checkpoint folder.
LOCK_NAME = "checkpoint.lock"


class Checkpointer(Callback):
    """Write the run's state to ``directory / CHECKPOINT_NAME`` every ``every`` epochs, every
    ``every_steps`` optimizer steps if set, on Ctrl-C or SIGTERM, and when the run stops early.

    Writes are atomic (:func:`anynet.io.save_checkpoint`): a kill leaves the last one whole.
    The losses of the epoch in progress are checked before each write, so a run whose loss
    turned NaN, infinite or diverged never overwrites its last good checkpoint. While the run
    trains, the folder is locked: a second run writing to it is refused at its start.

    Parameters
    ----------
    directory : path
        Created if missing.
    every : int
        Epochs between checkpoints.
    every_steps : int, optional
        Optimizer steps between checkpoints, as well.
    run : dict, optional
        What defines the run (JSON values): stored with each checkpoint, and compared by
        :func:`read_checkpoint` when the run resumes.
    meta : dict, optional
        Anything else to store (``extra``), for whoever reads the checkpoint.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        every: int = 1,
        every_steps: int | None = None,
        run: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ):
        self.directory = Path(directory)
        self.path = self.directory / CHECKPOINT_NAME
        self.every = int(every)
        self.every_steps = every_steps
        self.run = _json(dict(run or {}))
        self.meta = dict(meta or {})
        self._lock: Any = None

    # --- one writer per folder --------------------------------------------------------------

    def on_train_begin(self, state: TrainState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.directory / LOCK_NAME)
        _remove_orphans(self.path)

    def on_train_end(self, state: TrainState) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    # --- writing ----------------------------------------------------------------------------

    def save(self, state: TrainState) -> None:
        from anynet.io import save_checkpoint

        # Read first: it raises if a loss of the epoch in progress is not finite or diverged.
        loss_sum, seen = state.epoch_loss_so_far()
        _check_finite_params(state)
        states = {cb.name: cb.state_dict() for cb in state.callbacks}
        # ``batch`` > 0 only mid-epoch: resuming skips the batches already done, and the loss
        # they added up to so far is carried over.
        extra = {
            **self.meta,
            "run": self.run,
            "batch": state.batch,
            "loss_sum": loss_sum,
            "seen": seen,
            "first_loss": state.first_loss,
            "stop": state.stop,
            "callbacks": {name: s for name, s in states.items() if s is not None},
        }
        save_checkpoint(
            self.path,
            params=state.params,
            opt_state=state.opt_state,
            epoch=state.epoch,
            step=state.step,
            history=state.history,
            extra=extra,
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
    path: str | os.PathLike,
    *,
    backend: Backend,
    param_shapes: Mapping[str, tuple[int, ...]],
    run: Mapping[str, Any] | None = None,
) -> tuple[TrainState, Any]:
    """The :class:`TrainState` a checkpoint continues from, and the
    :class:`~anynet.io.Checkpoint` itself (its ``params`` and ``opt_state`` on ``backend``,
    to build the training step from).

    Parameters
    ----------
    path : path
        The checkpoint file.
    backend : Backend
        Where its arrays go.
    param_shapes : mapping
        The network being resumed (``model.param_shapes()``).
    run : mapping, optional
        What defines the run being resumed, as given to the :class:`Checkpointer`: the
        checkpoint's must be the same.

    Raises
    ------
    ModelFileError
        The file is not a checkpoint anynet can read, or its parameters do not fit
        ``param_shapes``.
    CheckpointMismatchError
        The checkpoint records another run than ``run``: the message lists every difference.
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
    extra = ckpt.extra if isinstance(ckpt.extra, dict) else {}
    if run is not None:
        _compare_runs(path, extra.get("run"), _json(dict(run)))
    callbacks = extra.get("callbacks", {})
    state = TrainState(
        epoch=ckpt.epoch,
        step=ckpt.step,
        batch=int(extra.get("batch", 0)),
        history={k: list(v) for k, v in (ckpt.history or {}).items()},
        stop=bool(extra.get("stop", False)),
        carried_loss=float(extra.get("loss_sum", 0.0)),
        carried_seen=int(extra.get("seen", 0)),
        first_loss=extra.get("first_loss"),
        callback_states=callbacks if isinstance(callbacks, dict) else {},
    )
    return state, ckpt


def _check_finite_params(state: TrainState) -> None:
    """Refuse to checkpoint non-finite parameters, naming where the run is: a finite loss does
    not prove them finite (ReLU maps a NaN input to 0)."""
    for name, value in state.params.items():
        host = to_numpy(value)
        bad = host.size - int(np.count_nonzero(np.isfinite(host)))
        if bad:
            raise NonFiniteLossError(
                f"parameter {name!r} holds {bad} NaN or infinite values at epoch "
                f"{state.epoch + 1}, global step {state.step}; training stopped before saving "
                "them. The last checkpoint holds the last good parameters. Lower the learning "
                "rate, scale the inputs (standardize), or check the data for NaN."
            )


def _json(value: Any) -> Any:
    """``value`` as it comes back from a file (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _compare_runs(path: Any, saved: Any, wanted: dict[str, Any]) -> None:
    if not isinstance(saved, dict):
        raise CheckpointMismatchError(
            f"{path}: the checkpoint does not record which run wrote it (an older anynet?), so "
            "resuming it cannot be checked to continue the same run; start afresh without "
            "resuming, or use another checkpoint folder"
        )
    differences = [
        f"{key}: the checkpoint's run has {_short(saved.get(key, '(none)'))}, this one "
        f"{_short(wanted.get(key, '(none)'))}"
        for key in sorted(set(saved) | set(wanted))
        if saved.get(key) != wanted.get(key)
    ]
    if differences:
        raise CheckpointMismatchError(
            f"{path}: the checkpoint is of another run, so resuming would not continue it:\n  "
            + "\n  ".join(differences)
            + "\nResume with the settings and data of the run that wrote it, or start afresh "
            "in another checkpoint folder."
        )


def _short(value: Any, limit: int = 70) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lock(path: Path) -> Any:
    """An open file holding an exclusive lock on ``path``, or CheckpointLockedError.

    ``flock`` is released by the system when its holder dies, so a killed run leaves no stale
    lock behind. Platforms without it (Windows) train unlocked."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(path, "a+")  # held open for the run: it is the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise CheckpointLockedError(
            f"{path.parent}: another run ({holder}) is writing checkpoints to this folder; two "
            "runs would overwrite each other's. Wait for it to end, or give this run another "
            "checkpoint folder."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    return handle


def _remove_orphans(path: Path) -> None:
    """Temporary files of anynet writes that a kill interrupted (the lock is held: no write of
    another run is in flight in this folder)."""
    from anynet.io import TEMPORARY_FILES

    for orphan in path.parent.glob(TEMPORARY_FILES):
        orphan.unlink(missing_ok=True)
