"""Reading a checkpoint back to resume its run: exact or refused.

A checkpoint records what defines its run, and :func:`read_checkpoint` refuses one whose run
differs from the one asked for, listing each difference. A digest proves a file intact, not
who wrote it, so every value the loop will use is checked before it is used: counters that
agree, a history of finite values, losses in range, early stopping's state, the run's dtype,
weights within the run's divergence limit.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anynet.backends import Backend, to_numpy
from anynet.errors import CheckpointMismatchError, ModelFileError
from anynet.io.container import is_int
from anynet.training.callbacks import EarlyStopping, saved_state_problem
from anynet.training.state import TrainState

__all__ = ["read_checkpoint"]


def read_checkpoint(
    path: str | os.PathLike,
    *,
    backend: Backend,
    param_shapes: Mapping[str, tuple[int, ...]],
    run: Mapping[str, Any] | None = None,
    dtype: Any = None,
    divergence_factor: float | None = None,
    statistics: Collection[str] = (),
) -> tuple[TrainState, Any]:
    """The :class:`TrainState` a checkpoint continues from, and the
    :class:`~anynet.io.Checkpoint` itself (its ``params`` and ``opt_state`` on ``backend``,
    to build the training step from).

    Every value the loop will use is checked first (a digest proves a file intact, not who
    wrote it): the epoch, step and batch counters agree (each epoch took a step at least, the
    batch in progress is one of the steps), the history holds one finite value per completed
    epoch for each metric (a ``'loss'`` among them), the interrupted epoch's loss so far and
    samples seen fit its batch count, the first loss (the divergence baseline) is a finite
    number >= 0 or null, ``stop`` is a boolean, the callbacks' states are mappings (early
    stopping's checked as :meth:`~anynet.training.EarlyStopping.load_state_dict` will check
    it), and every array has the run's dtype.

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
    dtype : str or dtype, optional
        The floating dtype the resumed run computes in: the parameters' and every optimizer
        state array's. By default ``run['dtype']``, if ``run`` has one; without either, the
        parameters must share one dtype.
    divergence_factor : float, optional
        The resumed run's divergence limit: a weight array (of the parameters, or of early
        stopping's best ones) beyond it times the run's scale for it
        (:attr:`~anynet.training.TrainState.weight_scales`) was never written by a run under
        that limit, and is refused.
    statistics : collection of str
        The network's statistics (``model.statistics()``): the checkpoint's must be the same,
        as the optimizer state it holds is for the other parameters.

    Raises
    ------
    ModelFileError
        The file is not a checkpoint anynet can read, its parameters do not fit
        ``param_shapes`` or ``dtype``, or a value in it is of the wrong type or out of range:
        the message names the file, the entry, what was expected and what it holds.
    CheckpointMismatchError
        The checkpoint records another run than ``run``: the message lists every difference.
    """
    from anynet.io import load_checkpoint
    from anynet.io.checkpoints import RESUME_ADVICE
    from anynet.io.container import FileErrors

    fail = FileErrors(Path(path), RESUME_ADVICE).fail
    ckpt = load_checkpoint(path, backend=backend)
    expected = {k: tuple(v) for k, v in param_shapes.items()}
    got = {k: tuple(v.shape) for k, v in ckpt.params.items()}
    if got != expected:
        raise ModelFileError(
            f"{path}: the checkpoint's parameters {got} do not fit this network {expected}; "
            "use another checkpoint folder, or start afresh without resuming"
        )
    if set(ckpt.statistics) != set(statistics):
        raise ModelFileError(
            f"{path}: the checkpoint's statistics (parameters that are not trained) are "
            f"{list(ckpt.statistics)}; this network's are {sorted(statistics)}: use another "
            "checkpoint folder, or start afresh without resuming"
        )
    extra = ckpt.extra
    if not isinstance(extra, dict):
        raise fail(f"its extra state is {_short(extra)}; expected a mapping of {_EXTRA_KEYS}")
    if run is not None:
        _compare_runs(path, extra.get("run"), json_value(dict(run)))
    missing = [key for key in _EXTRA_KEYS if key not in extra]
    if missing:
        raise fail(f"its extra state lacks {missing} (another version of anynet wrote it?)")
    if dtype is None and run is not None and isinstance(run.get("dtype"), str):
        dtype = run["dtype"]
    kind = _check_dtype(fail, ckpt.params, dtype)
    largest = float(np.finfo(kind).max)
    epoch, step = ckpt.epoch, ckpt.step
    if epoch > step:
        raise fail(
            f"its epoch {epoch} is more than its step {step}; every epoch takes one step at least"
        )
    batch, seen, loss_sum = extra["batch"], extra["seen"], extra["loss_sum"]
    if not is_int(batch) or not 0 <= batch <= step - epoch:
        raise fail(
            f"its batch is {_short(batch)}; expected an integer from 0 to {step - epoch} (its "
            f"step {step} less one step for each of its {epoch} epochs)"
        )
    if not is_int(seen) or not (seen == 0 if batch == 0 else seen >= batch):
        wanted = "0, between epochs" if batch == 0 else f"an integer >= {batch}, its batch count"
        raise fail(
            f"its seen (samples of the epoch in progress) is {_short(seen)}; expected {wanted}"
        )
    if not _is_number(loss_sum) or not 0 <= loss_sum <= seen * largest:
        raise fail(
            f"its loss_sum (of the epoch in progress) is {_short(loss_sum)}; expected a finite "
            f"number from 0 to {seen} samples times the largest {kind} ({largest:.3g})"
        )
    first_loss = extra["first_loss"]
    if first_loss is not None and (not _is_number(first_loss) or not 0 <= first_loss <= largest):
        raise fail(
            f"its first_loss (the divergence baseline) is {_short(first_loss)}; expected null or "
            f"a finite number from 0 to the largest {kind} ({largest:.3g})"
        )
    if not isinstance(extra["stop"], bool):
        raise fail(f"its stop is {_short(extra['stop'])}; expected true or false")
    if extra["stop"] and batch:
        raise fail(f"it stopped at batch {batch} of an epoch; a run stops only between epochs")
    scales = _check_weight_scales(fail, extra.get("weight_scales"), ckpt.params, largest)
    history = _check_history(fail, ckpt.history, epoch)
    callbacks = extra["callbacks"]
    if not isinstance(callbacks, dict) or not all(isinstance(v, dict) for v in callbacks.values()):
        raise fail(
            f"its callbacks' states are {_short(callbacks)}; expected a mapping of callback "
            "names to mappings"
        )
    if EarlyStopping.name in callbacks:
        host = {k: to_numpy(v) for k, v in ckpt.params.items()}
        why = saved_state_problem(callbacks[EarlyStopping.name], host, history)
        if why:
            raise fail(f"its early-stopping state {why}")
    if divergence_factor is not None and scales is not None:
        best = callbacks.get(EarlyStopping.name, {}).get("best_params") or {}
        for what, params in (("parameter", ckpt.params), ("early stopping's best", best)):
            for name, scale in scales.items():
                top = float(np.max(np.abs(to_numpy(params[name])))) if name in params else 0.0
                if top > divergence_factor * scale:
                    raise fail(
                        f"its {what} {name!r} reaches magnitude {top:.3g}, beyond "
                        f"{divergence_factor:g} times its scale when the run began ({scale:.3g}):"
                        " a run under this divergence limit never wrote it"
                    )
    state = TrainState(
        epoch=epoch,
        step=step,
        batch=batch,
        history=history,
        stop=extra["stop"],
        carried_loss=float(loss_sum),
        carried_seen=seen,
        first_loss=None if first_loss is None else float(first_loss),
        weight_scales=scales,
        callback_states=callbacks,
    )
    return state, ckpt


# What the Checkpointer keeps in a checkpoint's ``extra``, besides the caller's ``meta``.
_EXTRA_KEYS = ("run", "batch", "loss_sum", "seen", "first_loss", "stop", "callbacks")


def _check_weight_scales(
    fail: Any, scales: Any, params: Mapping[str, Any], largest: float
) -> dict[str, float] | None:
    """The run's weight scales: null (a checkpoint from before they were kept), or one finite
    number > 0 for each parameter of two or more dimensions."""
    if scales is None:
        return None
    names = sorted(n for n, p in params.items() if len(p.shape) >= 2 and math.prod(p.shape) > 0)
    if (
        not isinstance(scales, dict)
        or sorted(scales) != names
        or not all(_is_number(v) and 0 < v <= largest for v in scales.values())
    ):
        raise fail(
            f"its weight_scales are {_short(scales)}; expected a number from 0 to {largest:.3g} "
            f"for each of {names}"
        )
    return {name: float(value) for name, value in scales.items()}


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_dtype(fail: Any, params: Mapping[str, Any], dtype: Any) -> np.dtype:
    """The parameters' one floating dtype, which must be ``dtype`` if given."""
    kinds = {name: to_numpy(value).dtype for name, value in params.items()}
    wanted = {np.dtype(dtype)} if dtype is not None else set(kinds.values())
    if len(wanted) > 1 or any(kind not in wanted for kind in kinds.values()):
        found = ", ".join(f"{name!r} {kind}" for name, kind in sorted(kinds.items()))
        expect = f"all {np.dtype(dtype)}, the run's dtype" if dtype is not None else "one dtype"
        raise fail(f"its parameters have dtypes {found}; expected {expect}")
    return next(iter(wanted)) if wanted else np.dtype("float32")


def _check_history(fail: Any, history: Any, epoch: int) -> dict[str, list[float]]:
    """The history, checked: one finite number per completed epoch for each metric."""
    if not isinstance(history, dict) or (epoch > 0 and "loss" not in history):
        raise fail(
            f"its history holds {_short(sorted(history) if isinstance(history, dict) else history)}"
            f"; expected one value per epoch for each metric, 'loss' among them"
        )
    for name, values in history.items():
        if not isinstance(values, list) or len(values) != epoch:
            count = len(values) if isinstance(values, list) else _short(values)
            raise fail(
                f"its history {name!r} holds {count} values; expected {epoch}, one per epoch"
            )
        bad = next((v for v in values if not _is_number(v)), None)
        if bad is not None or any(isinstance(v, bool) for v in values):
            raise fail(f"its history {name!r} holds {_short(bad)}; expected finite numbers")
    return {name: [float(v) for v in values] for name, values in history.items()}


def json_value(value: Any) -> Any:
    """``value`` as it comes back from a file (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _compare_runs(path: Any, saved: Any, wanted: dict[str, Any]) -> None:
    if not isinstance(saved, dict):
        raise CheckpointMismatchError(
            f"{path}: the checkpoint does not record which run wrote it (an older anynet?), so "
            "resuming it cannot be checked to continue the same run; start afresh without "
            "resuming, or use another checkpoint folder"
        )
    differences = _differences(saved, wanted, "")
    if differences:
        raise CheckpointMismatchError(
            f"{path}: the checkpoint is of another run, so resuming would not continue it:\n  "
            + "\n  ".join(differences)
            + "\nResume with the settings and data of the run that wrote it, or start afresh "
            "in another checkpoint folder."
        )


_MISSING = object()


def _differences(saved: Any, wanted: Any, where: str) -> list[str]:
    """One line per difference between two JSON values, named by its path in them
    (``network.layers[1][0]``): within nested mappings, and lists of one length, only the
    entries that differ."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        lines = []
        for key in sorted(set(saved) | set(wanted)):
            inner = f"{where}.{key}" if where else key
            lines += _differences(saved.get(key, _MISSING), wanted.get(key, _MISSING), inner)
        return lines
    if isinstance(saved, list) and isinstance(wanted, list) and len(saved) == len(wanted):
        return [
            line
            for i, (a, b) in enumerate(zip(saved, wanted, strict=True))
            for line in _differences(a, b, f"{where}[{i}]")
        ]
    if saved is not _MISSING and wanted is not _MISSING and saved == wanted:
        return []
    return [f"{where}: the checkpoint's run has {_short(saved)}, this one {_short(wanted)}"]


def _short(value: Any, limit: int = 2000) -> str:
    """``value`` as JSON, in full unless it is very long (then cut, saying how long)."""
    if value is _MISSING:
        return "(none)"
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text)} characters in all)"


# What a lock path is, when it is not a regular file: anynet refuses to use it.
