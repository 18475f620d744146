"""Checkpoints: a run's state written atomically as it trains (read back to resume it by
:mod:`anynet.training.resume`).

A checkpoint holds what :class:`~anynet.training.TrainState` and the training step hold: the
parameters and optimizer state, the epoch, step and batch, the history, the loss summed so far
in an interrupted epoch, the run's first loss, whether it had stopped, and the state of the
callbacks that decide things (early stopping's best epoch and parameters). Because a run's
randomness is a function of where it is (see :mod:`anynet.training.loop`), that is all a
resumed run needs to end as an uninterrupted one.

Resume is exact or refuses: a checkpoint also records what defines its run (the network,
optimizer, dtype, batch size, seed, a fingerprint of the data: whatever the caller passes as
``run``), and :func:`~anynet.training.read_checkpoint` refuses one whose run differs from the
one asked for, listing each difference. One run writes to a folder at a time: the
:class:`Checkpointer` holds a lock on it while training.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anynet.backends import to_numpy
from anynet.errors import (
    CheckpointLockedError,
    ModelFileError,
)
from anynet.training.callbacks import Callback
from anynet.training.resume import json_value
from anynet.training.state import TrainState

__all__ = ["CHECKPOINT_NAME", "LOCK_NAME", "Checkpointer"]

#: The checkpoint's file name in its folder.
CHECKPOINT_NAME = "checkpoint.safetensors"
#: The lock file a training run holds in its checkpoint folder.
LOCK_NAME = "checkpoint.lock"


class Checkpointer(Callback):
    """Write the run's state to ``directory / CHECKPOINT_NAME`` every ``every`` epochs, every
    ``every_steps`` optimizer steps if set, on Ctrl-C or SIGTERM, and when the run stops early.

    Writes are atomic (:func:`anynet.io.save_checkpoint`): a kill leaves the last one whole.
    Nothing unchecked replaces a checkpoint. A step's loss is that of the parameters *before*
    its update, so the state due at a step or epoch is held (on the host) and written only
    once the next step's loss, the loss of those parameters on a batch they were not trained
    on, is finite and within the divergence limit; a run whose loss turned NaN, infinite or
    diverged never overwrites its last good checkpoint. The state at the end of the run and
    at Ctrl-C has no next step: it is written after
    :meth:`~anynet.training.TrainState.check_params` (finite, not exploded, its loss on the
    last batch within the limit). While the run trains, the folder is locked: a second run
    writing to it is refused at its start.

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
        self.run = json_value(dict(run or {}))
        self.meta = dict(meta or {})
        self._lock: Any = None
        self._pending: dict[str, Any] | None = None  # a due state, until a loss vouches for it

    # --- one writer per folder --------------------------------------------------------------

    def on_train_begin(self, state: TrainState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.directory / LOCK_NAME)
        _remove_orphans(self.path)
        self._pending = None

    def on_train_end(self, state: TrainState) -> None:
        try:
            if self._pending is not None and state.completed:
                # The run's last state: no later step will vouch for it, and the loop
                # checked it (check_params) at the end of its last epoch.
                self._write(self._pending)
        finally:
            self._pending = None
            if self._lock is not None:
                self._lock.close()  # closing the file releases the lock
                self._lock = None

    # --- writing ----------------------------------------------------------------------------

    def save(self, state: TrainState) -> None:
        """Write the current state now, after checking the parameters as they are."""
        state.check_params()
        self._pending = None
        self._write(self._snapshot(state))

    def _snapshot(self, state: TrainState) -> dict[str, Any]:
        """The arguments of a write of the current state, copied to the host (a fused step
        updates its buffers in place)."""
        # Read first: it raises if a loss of the epoch in progress is not finite or diverged.
        loss_sum, seen = state.epoch_loss_so_far()
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
            "weight_scales": state.weight_scales,
            "stop": state.stop,
            "callbacks": {name: s for name, s in states.items() if s is not None},
        }
        return {
            "params": _host_copy(state.params),
            "opt_state": _host_copy(state.opt_state),
            "epoch": state.epoch,
            "step": state.step,
            "history": {k: list(v) for k, v in state.history.items()},
            "extra": _host_copy(extra),
            "statistics": state.train_step.model.statistics(),
        }

    def _write(self, snapshot: dict[str, Any]) -> None:
        from anynet.io import save_checkpoint

        save_checkpoint(self.path, **snapshot)

    def _vouch(self, state: TrainState) -> None:
        """Write the held state once the newest loss, that of its parameters on the batch
        after it, checks out (reading the losses raises if not)."""
        if self._pending is not None:
            state.epoch_loss_so_far()
            pending, self._pending = self._pending, None
            self._write(pending)

    def on_step_end(self, state: TrainState) -> None:
        self._vouch(state)
        if self.every_steps and state.step % self.every_steps == 0:
            self._pending = self._snapshot(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch % self.every == 0 or state.stop:
            # Supersedes a state held from the epoch's last step: the same parameters, and the
            # epoch now counted in the history.
            self._pending = self._snapshot(state)

    def on_interrupt(self, state: TrainState) -> None:
        self.save(state)


_NOT_A_LOCK = (
    (stat.S_ISLNK, "a symbolic link (anynet does not follow it: truncating the lock would empty "
     "its target)"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)  # fmt: skip


def _not_a_lock(path: Path, mode: int, links: int) -> ModelFileError | None:
    """The error for a lock path of this mode and link count, or None for a plain file."""
    if stat.S_ISREG(mode) and links == 1:
        return None
    kind = next((what for test, what in _NOT_A_LOCK if test(mode)), None)
    if kind is None:
        kind = (
            f"a file with {links} hard links (truncating the lock would empty the others)"
            if stat.S_ISREG(mode)
            else "not a regular file"
        )
    return ModelFileError(
        f"{path}: the checkpoint folder's lock file is {kind}; anynet keeps a plain file there. "
        "Remove it, or give this run another checkpoint folder."
    )


def _lock(path: Path) -> Any:
    """An open file holding an exclusive lock on ``path``, or CheckpointLockedError.

    ``flock`` is released by the system when its holder dies, so a killed run leaves no stale
    lock behind. Platforms without it (Windows) train unlocked. The lock file is created if
    missing and must be a plain file: a symbolic link is never followed (O_NOFOLLOW), a FIFO
    never blocks the open (O_NONBLOCK), and nothing is truncated before the lock is held and
    the open file is known to be a regular file with no other name.

    Raises
    ------
    CheckpointLockedError
        Another process holds the lock.
    ModelFileError
        ``path`` is a symbolic link, a folder, a FIFO, a device, a socket, or a file with
        other hard links.
    """
    try:
        import fcntl
    except ImportError:
        return None
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        refusal = _not_a_lock(path, info.st_mode, info.st_nlink)
        if refusal is not None:
            raise refusal
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    # The lstat above and the open are two steps: what is swapped in between is refused too.
    flags |= (
        getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    )
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        try:
            info = os.lstat(path)
        except OSError:
            raise exc from None
        raise _not_a_lock(path, info.st_mode, info.st_nlink) or exc from None
    info = os.fstat(fd)
    refusal = _not_a_lock(path, info.st_mode, info.st_nlink)
    if refusal is not None:
        os.close(fd)
        raise refusal
    handle = os.fdopen(fd, "r+")  # held open for the run: it is the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = handle.read(200).strip() or "another process"
        handle.close()
        raise CheckpointLockedError(
            f"{path.parent}: another run ({holder}) is writing checkpoints to this folder; two "
            "runs would overwrite each other's. Wait for it to end, or give this run another "
            "checkpoint folder."
        ) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    return handle


def _remove_orphans(path: Path) -> None:
    """Temporary files of anynet writes that a kill interrupted (the lock is held: no write of
    another run is in flight in this folder)."""
    from anynet.io import TEMPORARY_FILES

    for orphan in path.parent.glob(TEMPORARY_FILES):
        orphan.unlink(missing_ok=True)


def _host_copy(tree: Any) -> Any:
    """``tree`` with every array copied to a NumPy array of its own (a fused step updates its
    buffers in place)."""
    from anynet.io.files import tree_map

    return tree_map(lambda a: np.array(to_numpy(a), copy=True), tree)
