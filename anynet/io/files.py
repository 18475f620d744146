"""Network and checkpoint files: what anynet keeps in the container, and how it reads it back.

A network file holds an architecture, its parameters and the user's metadata
(:func:`save_network`, :func:`load_network`); a checkpoint holds a training run's state
(:func:`save_checkpoint`, :func:`load_checkpoint`). Both are :mod:`anynet.io.container` files
whose metadata says which ``kind`` they are; their nested values go through
:mod:`anynet.io.codec`.

An architecture is rebuilt only from :data:`anynet.nn.layers.LAYERS`, anynet's own public layer
classes: the digest proves a file is intact, not who wrote it, so a file must never be able to
make anynet build a layer a user defined, a private base class, or anything else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from anynet.backends import Backend, get_backend
from anynet.io.codec import MAX_DEPTH, Decoder, Encoder, is_array
from anynet.io.container import (
    FileErrors,
    host_tensor,
    is_int,
    read_arrays,
    short_repr,
    write_arrays,
)
from anynet.nn.layers import LAYERS, Layer, layer_from_config

__all__ = ["Checkpoint", "load_checkpoint", "load_network", "save_checkpoint", "save_network"]


def _require(errors: FileErrors, meta: Mapping[str, Any], kind: str, keys: Iterable[str]) -> None:
    """Refuse a file of another kind, or one whose metadata lacks any of ``keys``."""
    found = meta.get("kind")
    if found != kind:
        hint = {
            "network": "load it with anynet.io.load_network (or anynet.load)",
            "checkpoint": "load it with anynet.io.load_checkpoint",
        }
        raise errors.fail(
            f"is not a {kind} file (its kind is {short_repr(found)})",
            hint.get(found, "give a file of the right kind") if isinstance(found, str) else "",
        )
    for key in keys:
        if key not in meta:
            raise errors.fail(f"its metadata lacks the {key!r} entry")


# --------------------------------------------------------------------------------------------
# Networks


def _check_architecture(name: Any, config: Any, depth: int = 0) -> str | None:
    """Why ``(name, config)`` is not an anynet architecture, or None if it is one."""
    if depth > MAX_DEPTH:
        return f"layers nested more than {MAX_DEPTH} deep"
    if not isinstance(name, str) or name not in LAYERS:
        return f"the layer type {short_repr(name)}, which is not one of anynet's layers"
    if not isinstance(config, dict):
        return f"a {name} with a config that is not a JSON object"
    if name == "Sequential":
        layers = config.get("layers")
        if set(config) != {"layers"} or not isinstance(layers, list):
            return "a Sequential whose config is not {'layers': [...]}"
        for item in layers:
            if not isinstance(item, list) or len(item) != 2:
                return f"a Sequential item {short_repr(item)} that is not [name, config]"
            why = _check_architecture(item[0], item[1], depth + 1)
            if why:
                return why
    return None


def _architecture(model: Layer) -> dict[str, Any]:
    """``model`` as ``{"class": ..., "config": ...}``; ValueError if a file could not hold it."""
    name = type(model).__name__
    try:
        config = json.loads(json.dumps(model.get_config(), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}.get_config() is not JSON-serialisable: {exc}") from None
    why = _check_architecture(name, config)
    if why:
        raise ValueError(
            f"cannot save this model: it has {why}; anynet files hold only {sorted(LAYERS)}"
        )
    # Refuse to write a file that would not load back as the same model.
    if layer_from_config(name, config) != model:
        raise ValueError(f"{name}.get_config() does not rebuild the same model; cannot save it")
    return {"class": name, "config": config}


def save_network(
    path: str | os.PathLike,
    model: Layer,
    params: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save a network: its architecture, its parameters and optional metadata.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; written atomically (see :func:`write_arrays`).
    model : Layer
        An anynet layer, usually a :class:`~anynet.nn.Sequential`, built only from anynet's own
        layer classes.
    params : mapping of str to array
        Exactly the parameters of ``model.param_shapes()``, on any backend.
    metadata : mapping of str to value, optional
        Anything else to keep (hyper-parameters, class labels): strings, numbers, booleans,
        None, lists, tuples, dicts with string keys, and arrays (given back as NumPy arrays).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        A layer that is not anynet's, parameters that do not fit the model, or a metadata value
        a file cannot hold.

    Examples
    --------
    >>> import anynet, os, tempfile
    >>> from anynet.nn import Dense, ReLU, Sequential
    >>> from anynet.io import save_network, load_network
    >>> be = anynet.get_backend("numpy")
    >>> model = Sequential(Dense(4, 3), ReLU(), Dense(3, 2))
    >>> params = model.init_params(rng=be.host_generator(0), backend=be)
    >>> path = save_network(os.path.join(tempfile.mkdtemp(), "m.safetensors"), model, params)
    >>> model2, params2, meta = load_network(path, backend="numpy")
    >>> model2 == model, sorted(params2), meta
    (True, ['0.W', '0.b', '2.W', '2.b'], {})
    """
    architecture = _architecture(model)
    shapes = model.param_shapes()
    arrays: dict[str, np.ndarray] = {}
    for name, x in params.items():
        if name not in shapes:
            raise ValueError(f"parameter {name!r} is not one of the model's {sorted(shapes)}")
        arrays[name] = host_tensor(name, x)
        if arrays[name].shape != tuple(shapes[name]):
            raise ValueError(
                f"parameter {name!r} has shape {arrays[name].shape}; the model needs "
                f"{tuple(shapes[name])}"
            )
    missing = sorted(set(shapes) - set(arrays))
    if missing:
        raise ValueError(f"parameters {missing} are missing")
    user = Encoder(arrays).encode(dict(metadata or {}), "metadata")
    meta = {
        "kind": "network",
        "architecture": architecture,
        "params": sorted(shapes),
        "metadata": user,
    }
    return write_arrays(path, arrays, meta)


def load_network(
    path: str | os.PathLike, *, backend: str | Backend | None = None, dtype: Any = None
) -> tuple[Layer, dict[str, Any], dict[str, Any]]:
    """Load a network saved by :func:`save_network`, on any backend.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    backend : str or Backend, optional
        Where to put the parameters (see :func:`anynet.get_backend`); it need not be the backend
        the network was trained on.
    dtype : str or dtype, optional
        Cast the parameters to this floating dtype (on the host, before the copy); by default
        they keep the dtype they were saved with.

    Returns
    -------
    model : Layer
        Rebuilt with :func:`anynet.nn.layers.layer_from_config`, from anynet's own layers only.
    params : dict of str to array
        On ``backend``.
    metadata : dict
        The ``metadata`` given to :func:`save_network` (arrays as NumPy arrays).

    Raises
    ------
    ModelFileError
        Anything wrong with the file (see :func:`read_arrays`), an architecture naming anything
        but anynet's layers, or parameters missing, unexpected or of the wrong shape.
    """
    be = get_backend(backend)
    errors = FileErrors(Path(path))
    arrays, meta = read_arrays(path)
    _require(errors, meta, "network", ("architecture", "params", "metadata"))
    arch = meta["architecture"]
    if not isinstance(arch, dict) or set(arch) != {"class", "config"}:
        raise errors.fail("its architecture entry is not {'class': ..., 'config': ...}")
    why = _check_architecture(arch["class"], arch["config"])
    if why:
        raise errors.fail(
            f"its architecture names {why}",
            "anynet builds only its own layers from a file; this file is not one anynet wrote "
            "or was edited",
        )
    try:
        model = layer_from_config(arch["class"], arch["config"])
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise errors.fail(f"its architecture is invalid ({exc})") from None

    names = meta["params"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise errors.fail("its list of parameters is not a list of names")
    decoder = Decoder(errors, arrays)
    user = decoder.decode(meta["metadata"], lambda host: host)
    if not isinstance(user, dict):
        raise errors.fail("its user metadata is not a mapping")
    decoder.check_all_claimed(also=names)
    if set(names) & decoder.claimed:
        raise errors.fail("a tensor is listed both as a parameter and as metadata")
    shapes = {k: tuple(v) for k, v in model.param_shapes().items()}
    missing = sorted(set(shapes) - set(names))
    if missing:
        raise errors.fail(f"parameters {missing}, which the architecture needs, are missing")
    extra = sorted(set(names) - set(shapes))
    if extra:
        raise errors.fail(f"holds parameters {extra}, which the architecture {arch['class']} lacks")
    params = {}
    for name in sorted(shapes):
        if name not in arrays:
            raise errors.fail(
                f"its metadata lists parameter {name!r}, but the file has no such tensor"
            )
        host = arrays[name]
        if host.shape != shapes[name]:
            raise errors.fail(
                f"parameter {name!r} has shape {host.shape} in the file, but the architecture "
                f"needs {shapes[name]}"
            )
        if host.dtype.kind != "f":
            raise errors.fail(f"parameter {name!r} has dtype {host.dtype}, not a floating dtype")
        params[name] = be.asarray(host, dtype=dtype)
    return model, params, user


# --------------------------------------------------------------------------------------------
# Checkpoints


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
        NamedTuples holding Python numbers and dicts of arrays.
    epoch, step : int
        Epochs completed and optimizer steps taken.
    rng_state : optional
        :meth:`anynet.backends.Generator.get_state` output (a dict of ints for NumPy and
        array-api-strict, a uint8 tensor for PyTorch).
    history : mapping of str to sequence of float, optional
        The loss history (NaN and infinities are kept).
    extra : optional
        Anything else: JSON-like values, tuples and arrays.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        A value a file cannot hold, such as a state class that is not anynet's.
    """
    for name, value in (("epoch", epoch), ("step", step)):
        if not (is_int(value) or isinstance(value, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    history = {k: [float(v) for v in vs] for k, vs in (history or {}).items()}
    arrays: dict[str, np.ndarray] = {}
    enc = Encoder(arrays)
    meta = {
        "kind": "checkpoint",
        "epoch": int(epoch),
        "step": int(step),
        "params": enc.encode(dict(params), "params"),
        "opt_state": enc.encode(opt_state, "opt"),
        "rng_state": enc.encode(rng_state, "rng"),
        "history": enc.encode(history, "history"),
        "extra": enc.encode(extra, "extra"),
    }
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
        anynet's, or a structure that does not decode.
    """
    be = get_backend(backend)
    errors = FileErrors(Path(path))
    arrays, meta = read_arrays(path)
    keys = ("epoch", "step", "params", "opt_state", "rng_state", "history", "extra")
    _require(errors, meta, "checkpoint", keys)
    for key in ("epoch", "step"):
        if not is_int(meta[key]) or meta[key] < 0:
            raise errors.fail(f"its {key} {short_repr(meta[key])} is not an integer >= 0")
    dec = Decoder(errors, arrays)
    on_device = be.asarray
    params = dec.decode(meta["params"], on_device)
    if not isinstance(params, dict) or not all(is_array(p) for p in params.values()):
        raise errors.fail("its parameters are not a mapping of names to arrays")
    opt_state = dec.decode(meta["opt_state"], on_device)
    # Host arrays: Generator.set_state takes them on every backend.
    rng_state = dec.decode(meta["rng_state"], lambda host: host)
    history = dec.decode(meta["history"], lambda host: host)
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise errors.fail("its history is not a mapping of names to lists")
    extra = dec.decode(meta["extra"], lambda host: host)
    dec.check_all_claimed()
    return Checkpoint(params, opt_state, meta["epoch"], meta["step"], rng_state, history, extra)
