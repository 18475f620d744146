"""A fit as a training run: what defines it, where it starts, and whose checkpoint it may
write over.

A checkpoint records its run (:meth:`CheckpointedRun._run_record`) and the estimator that
wrote it; a fit resumes a checkpoint only when asked (``resume``), and never writes over one
that another estimator wrote: that would lose a run which may not be finished. Kept apart from
the classifier so that every anynet estimator takes its checkpoints the same way.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from anynet.checks import fail
from anynet.errors import ArgumentError
from anynet.estimator.inputs import fingerprint, int_seed
from anynet.training import CHECKPOINT_NAME

__all__ = ["CheckpointedRun"]


def _plain(value: Any) -> Any:
    """A NumPy scalar (``np.float32(0.01)``) as the Python number a JSON record holds, and an
    object (an augmentation) as its repr."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str | list | tuple | dict):
        return value
    return repr(value)


class CheckpointedRun:
    """Mixin of an estimator with ``checkpoint_dir``, ``resume`` and ``random_state``: the
    checkpoint rules of its fits. The estimator gives ``_network()``, ``_batch_size(n)`` and
    the keys of its run record (``_RUN_KEYS``)."""

    _RUN_KEYS: tuple[str, ...] = ()

    def _checkpoint_path(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        return Path(self.checkpoint_dir) / CHECKPOINT_NAME

    def _resuming(self, checkpoint: Path | None, warm: bool, incremental: bool) -> bool:
        """Whether this fit continues the checkpoint in ``checkpoint_dir``; refuse a fit that
        would resume nothing when asked to, or overwrite another run's checkpoint."""
        required = not isinstance(self.resume, str) and bool(self.resume)  # not 'auto'
        if checkpoint is None:
            if required:
                raise ArgumentError(
                    "resume=True needs a checkpoint_dir to resume from; set checkpoint_dir to "
                    "the folder of the run to continue"
                )
            return False
        folder = checkpoint.parent
        existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
        if not existing.is_dir():  # the folder, or what would have to hold it, is a file
            raise fail(
                "checkpoint_dir",
                "a folder (or a path to create one at)",
                str(folder),
                f"{existing} is not a folder" if existing != folder else "",
            )
        exists = checkpoint.exists() or checkpoint.is_symlink()
        if required and not incremental and not exists:
            raise ArgumentError(
                f"resume=True, but checkpoint_dir={str(folder)!r} holds no checkpoint "
                f"({CHECKPOINT_NAME}): there is no run to continue. Check the folder's name; "
                "resume='auto' starts afresh when there is none."
            )
        resume = bool(self.resume) and not incremental and exists
        if resume and warm:
            raise ArgumentError(
                "warm_start=True and resume both say where to start from: the current "
                "parameters, or the checkpoint in checkpoint_dir. Set warm_start=False to "
                "continue the checkpoint's run, or resume=False to continue from params_ (in "
                "another checkpoint_dir)."
            )
        if exists and not resume and self._checkpoint_writer(checkpoint) != self._writer_id():
            how = (
                "partial_fit continues this estimator's own parameters and never resumes a "
                "checkpoint: call fit with resume=True to continue that run"
                if incremental
                else "Pass resume=True to continue that run"
            )
            raise ArgumentError(
                f"checkpoint_dir={str(folder)!r} holds a checkpoint of another run, which this "
                f"fit would overwrite. {how}, or give this one another checkpoint_dir (or "
                "delete the checkpoint if it is no longer wanted)."
            )
        return resume

    def _writer_id(self) -> str:
        """Names this estimator in the checkpoints it writes: its own may be overwritten."""
        if "_checkpoint_writer_id" not in vars(self):
            self._checkpoint_writer_id = uuid.uuid4().hex
        return self._checkpoint_writer_id

    @staticmethod
    def _checkpoint_writer(checkpoint: Path) -> str | None:
        from anynet.io import load_checkpoint

        writer = (load_checkpoint(checkpoint, backend="numpy").extra or {}).get("writer")
        return writer if isinstance(writer, str) else None

    def _run_seed(self, checkpoint: Path | None) -> int:
        """The run's seed: ``random_state``'s; resuming without one, the checkpoint's own (a
        fresh draw would make another run, which the checkpoint would refuse)."""
        if self.random_state is None and checkpoint is not None:
            from anynet.io import load_checkpoint

            run = (load_checkpoint(checkpoint, backend="numpy").extra or {}).get("run")
            if isinstance(run, dict) and isinstance(run.get("seed"), int):
                return run["seed"]
        return int_seed(self.random_state)

    def _run_record(
        self, X: np.ndarray, y: np.ndarray, seed: int, sample_weight: np.ndarray | None = None
    ) -> dict[str, Any]:
        """What defines this training run, for its checkpoints: resuming one is refused unless
        every entry is the same (``max_iter`` is not one: a run may be extended). The samples'
        weights (``sample_weight`` and ``class_weight`` together) are part of the data."""
        record = {
            "estimator": type(self).__name__,
            "network": self._network()[0].get_config(),
            **{k: _plain(getattr(self, k)) for k in self._RUN_KEYS},
            "batch_size": self._batch_size(len(X)),
            "seed": seed,
        }
        if hasattr(self, "classes_"):
            record["classes"] = [repr(c) for c in self.classes_.tolist()]
        record["data"] = fingerprint(X, y)
        if sample_weight is not None:  # an unweighted run's record is as it always was
            record["sample_weight"] = fingerprint(sample_weight)
        return record
