"""Checkpoint files: a training run's state, written so that a killed run can resume exactly,
and read back trusting nothing (:func:`save_checkpoint`, :func:`load_checkpoint`).

A checkpoint is an :mod:`anynet.io.container` file of ``kind`` ``"checkpoint"``: parameters,
the optimizer's state, the run's counters, RNG state and history, and the names of the
parameters that are statistics (a batch norm's running mean and variance): they have no
optimizer state, and every other parameter has exactly one per field.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from anynet.backends import Backend, get_backend, to_numpy
from anynet.io.codec import MAX_COUNT, MAX_DEPTH, STATE_CLASSES, Decoder, Encoder, is_array
from anynet.io.container import (
    FileErrors,
    host_tensor,
    is_int,
    read_arrays,
    short_repr,
    write_arrays,
)
from anynet.io.files import (
    _check_param,
    _count_problem,
    _non_finite,
    _params_problem,
    _require,
    tree_map,
)
from anynet.nn.optim import AdamState, TraceState

__all__ = ["RESUME_ADVICE", "Checkpoint", "load_checkpoint", "save_checkpoint"]

#: What to do about a checkpoint that cannot be resumed: anynet never writes one.
RESUME_ADVICE = (
    "the checkpoint was damaged or edited: start afresh without resuming, or resume from "
    "another checkpoint folder"
)


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns: everything a killed run needs to continue."""

    #: Parameters, on the backend asked for.
    params: dict[str, Any]
    #: Optimizer state in its exact structure (NamedTuples, tuples), arrays on the backend.
    opt_state: Any
    #: Epochs completed.
    epoch: int
    #: Optimizer steps taken.
    step: int
    #: :meth:`anynet.backends.Generator.get_state` output, ready for ``set_state`` (PyTorch's
    #: state comes back as a NumPy uint8 array, NumPy's as its dict); None if none was saved.
    rng_state: Any
    #: Loss and metric history: name -> list of floats.
    history: dict[str, list[float]]
    #: Anything else given to :func:`save_checkpoint` (arrays as NumPy arrays).
    extra: Any
    #: Names of the parameters that are statistics (no optimizer state), sorted.
    statistics: tuple[str, ...] = ()


def save_checkpoint(
    path: str | os.PathLike,
    *,
    params: Mapping[str, Any],
    opt_state: Any,
    epoch: int,
    step: int,
    rng_state: Any = None,
    history: Mapping[str, Iterable[float]] | None = None,
    extra: Any = None,
    statistics: Collection[str] = (),
) -> Path:
    """Save a training run's state atomically, so that a killed run can resume exactly.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; written atomically (see :func:`write_arrays`), so a crash during the
        write leaves the previous checkpoint intact.
    params : mapping of str to array
        The parameters, on any backend.
    opt_state : optimizer state
        As :mod:`anynet.nn.optim` makes it: tuples of :data:`~anynet.io.STATE_CLASSES`
        NamedTuples holding Python numbers and dicts of arrays, one per parameter, of its
        shape.
    epoch, step : int
        Epochs completed and optimizer steps taken.
    rng_state : optional
        :meth:`anynet.backends.Generator.get_state` output (a dict of ints for NumPy and
        array-api-strict, a uint8 tensor for PyTorch).
    history : mapping of str to sequence of float, optional
        The loss history (NaN and infinities are kept).
    extra : optional
        Anything else: JSON-like values, tuples and arrays.
    statistics : collection of str
        The parameters that are statistics, not trained (the model's
        :meth:`~anynet.nn.Layer.statistics`): the optimizer state holds the others.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        A value a file cannot hold, such as a state class that is not anynet's; parameters
        that are not finite; an optimizer state that does not fit the parameters (another
        set of names, another shape, not floating, not finite).
    """
    for name, value in (("epoch", epoch), ("step", step)):
        if not (is_int(value) or isinstance(value, np.integer)) or not 0 <= value <= MAX_COUNT:
            raise ValueError(f"{name} must be an integer from 0 to 2**53; got {value!r}")
    history = {k: [float(v) for v in vs] for k, vs in (history or {}).items()}
    # On the host, to be checked as load_checkpoint will check them (below).
    params = {name: host_tensor(name, x) for name, x in params.items()}
    opt_state = tree_map(to_numpy, opt_state)
    arrays: dict[str, np.ndarray] = {}
    enc = Encoder(arrays)
    meta = {
        "kind": "checkpoint",
        "epoch": int(epoch),
        "step": int(step),
        "params": enc.encode(params, "params"),
        "opt_state": enc.encode(opt_state, "opt"),
        "rng_state": enc.encode(rng_state, "rng"),
        "history": enc.encode(history, "history"),
        "extra": enc.encode(extra, "extra"),
    }
    if statistics:  # absent otherwise: the file is the same as before batch norm
        meta["statistics"] = sorted(statistics)
    # A checkpoint that would not load must not replace the last good one.
    why = (
        _params_problem(params)
        or _statistics_problem(sorted(statistics), params)
        or _state_problem(opt_state, _trained(params, statistics))
    )
    if why:
        raise ValueError(f"cannot save the checkpoint {path}: {why}")
    return write_arrays(path, arrays, meta)


def load_checkpoint(path: str | os.PathLike, *, backend: str | Backend | None = None) -> Checkpoint:
    """Load a checkpoint saved by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    backend : str or Backend, optional
        Where to put the parameters and the optimizer state's arrays, with the dtypes they were
        saved with.

    Returns
    -------
    Checkpoint
        ``params``, ``opt_state`` (the same NamedTuple structure), ``epoch``, ``step``,
        ``rng_state``, ``history`` and ``extra``.

    Raises
    ------
    ModelFileError
        Anything wrong with the file (see :func:`read_arrays`), a state class that is not one of
        anynet's, a structure that does not decode, parameters that are not floating or not
        finite, or an optimizer state that does not fit them (other names, shapes or dtypes).
    """
    be = get_backend(backend)
    errors = FileErrors(Path(path), RESUME_ADVICE)
    arrays, meta = read_arrays(path, advice=RESUME_ADVICE)
    keys = ("epoch", "step", "params", "opt_state", "rng_state", "history", "extra")
    _require(errors, meta, "checkpoint", keys)
    for key in ("epoch", "step"):
        why = _count_problem(f"its {key}", meta[key])
        if why:
            raise errors.fail(why)
    dec = Decoder(errors, arrays)
    # Decoded on the host, checked there, and only then moved to the device.
    params = dec.decode(meta["params"], lambda host: host)
    if not isinstance(params, dict) or not all(is_array(p) for p in params.values()):
        raise errors.fail("its parameters are not a mapping of names to arrays")
    for name, host in params.items():
        _check_param(errors, name, host)
    opt_state = dec.decode(meta["opt_state"], lambda host: host)
    statistics = meta.get("statistics", [])  # files before batch norm have none
    why = _statistics_problem(statistics, params) or _state_problem(
        opt_state, _trained(params, statistics)
    )
    if why:
        raise errors.fail(why)
    # Host arrays: Generator.set_state takes them on every backend.
    rng_state = dec.decode(meta["rng_state"], lambda host: host)
    history = dec.decode(meta["history"], lambda host: host)
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise errors.fail("its history is not a mapping of names to lists")
    for name, values in history.items():
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise errors.fail(f"its history {name!r} holds {short_repr(value)}, not a number")
    extra = dec.decode(meta["extra"], lambda host: host)
    dec.check_all_claimed()
    params = tree_map(be.asarray, params)
    opt_state = tree_map(be.asarray, opt_state)
    return Checkpoint(
        params, opt_state, meta["epoch"], meta["step"], rng_state, history, extra,
        tuple(statistics),
    )  # fmt: skip


def _statistics_problem(statistics: Any, params: Mapping[str, Any]) -> str | None:
    """Why ``statistics`` is not a sorted list of distinct names of ``params``, or None."""
    if not isinstance(statistics, list) or not all(isinstance(n, str) for n in statistics):
        return f"its statistics are {short_repr(statistics)}; expected a list of parameter names"
    if statistics != sorted(set(statistics)) or not set(statistics) <= set(params):
        return (
            f"its statistics {short_repr(statistics, 200)} are not distinct names of its "
            f"parameters {short_repr(sorted(params), 200)}, sorted"
        )
    return None


def _trained(params: Mapping[str, Any], statistics: Collection[str]) -> dict[str, Any]:
    """The parameters an optimizer state is kept for: all but the statistics."""
    return {name: p for name, p in params.items() if name not in statistics}


def _state_problem(state: Any, params: Mapping[str, np.ndarray], depth: int = 0) -> str | None:
    """Why ``state`` (host arrays) is not an optimizer state for ``params``, or None.

    A state is one of :data:`STATE_CLASSES` or a tuple of states (``chain``); each of its
    dicts holds one array per parameter, of the parameter's shape and dtype, all finite (and
    Adam's second moments, running means of squares, never negative); each of its other
    fields is a step count, an integer from 0 to :data:`MAX_COUNT`. SGD without momentum keeps
    an empty trace. Anything else would be broadcast into the parameters' shapes, promote them
    to another dtype, take the square root of a negative number, or fail at the first step
    with a bare TypeError or KeyError.
    """
    cls = type(state)
    if depth > MAX_DEPTH:
        return f"its optimizer state is nested more than {MAX_DEPTH} levels deep"
    if cls is tuple:
        return next(filter(None, (_state_problem(s, params, depth + 1) for s in state)), None)
    if STATE_CLASSES.get(cls.__name__) is not cls:
        return (
            f"its optimizer state holds {short_repr(state)}, which is not one of anynet's "
            f"optimizer states {sorted(STATE_CLASSES)}"
        )
    for field in cls._fields:
        value = getattr(state, field)
        where = f"its optimizer state's {cls.__name__}.{field}"
        if not isinstance(value, dict):
            why = _count_problem(where, value)
            if why:
                return why
            continue
        if cls is TraceState and not value:
            continue
        if set(value) != set(params):
            return (
                f"{where} holds {short_repr(sorted(value), 200)}; its parameters are "
                f"{short_repr(sorted(params), 200)}"
            )
        for name, host in value.items():
            param = params[name]
            if host.shape != param.shape:
                return f"{where}[{name!r}] has shape {host.shape}; its parameter's is {param.shape}"
            if host.dtype != param.dtype:
                return f"{where}[{name!r}] has dtype {host.dtype}; its parameter's is {param.dtype}"
            why = _non_finite(f"{where}[{name!r}]", host)
            if why:
                return why
            if cls is AdamState and field == "nu" and (host < 0).any():
                return (
                    f"{where}[{name!r}] has {int(np.count_nonzero(host < 0))} negative entries; "
                    "Adam's second moments are never negative"
                )
    return None
