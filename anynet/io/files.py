"""Network files: what anynet keeps in the container for a network, and how it reads it back;
and the checks of parameters that checkpoint files (:mod:`anynet.io.checkpoints`) share.

A network file holds an architecture, its parameters and the user's metadata
(:func:`save_network`, :func:`load_network`). Network files and checkpoints are
:mod:`anynet.io.container` files whose metadata says which ``kind`` they are; their nested
values go through :mod:`anynet.io.codec`.

An architecture is rebuilt only from :data:`anynet.nn.layers.LAYERS`, anynet's own public layer
classes: the digest proves a file is intact, not who wrote it, so a file must never be able to
make anynet build a layer a user defined, a private base class, or anything else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anynet.backends import Backend, get_backend
from anynet.io.codec import (
    MAX_DEPTH,
    MAX_READ_COUNT,
    Decoder,
    Encoder,
    is_array,
)
from anynet.io.container import (
    FileErrors,
    host_tensor,
    is_int,
    read_arrays,
    short_repr,
    write_arrays,
)
from anynet.nn.layers import LAYERS, Layer, layer_from_config

__all__ = ["load_network", "save_network"]


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


def _non_finite(what: str, host: np.ndarray) -> str | None:
    """Why ``host`` cannot be a parameter (or a state kept for one): NaN or infinite entries."""
    if host.dtype.kind != "f":
        return None
    bad = host.size - int(np.count_nonzero(np.isfinite(host)))
    return f"{what} has {bad} NaN or infinite entries (of {host.size})" if bad else None


def _params_problem(params: Mapping[str, np.ndarray]) -> str | None:
    """Why these host parameters cannot be saved or used, or None."""
    for name, host in params.items():
        if host.dtype.kind != "f":
            return f"parameter {name!r} has dtype {host.dtype}, not a floating dtype"
        why = _non_finite(f"parameter {name!r}", host)
        if why:
            return why
    return None


# A model whose parameters are not finite predicts nonsense (ReLU can hide NaN in plausible
# probabilities): anynet never writes one, so a file holding one was edited or damaged.
_DIVERGED = "train the model again (a lower learning rate, standardized inputs)"
_EDITED = (
    "anynet never saves non-finite parameters, so the file was edited or written elsewhere: "
    "restore it from a backup or train again"
)


def _check_param(errors: FileErrors, name: str, host: np.ndarray) -> None:
    """Refuse a parameter read from a file that is not floating, or not finite."""
    if host.dtype.kind != "f":
        raise errors.fail(f"parameter {name!r} has dtype {host.dtype}, not a floating dtype")
    why = _non_finite(f"parameter {name!r}", host)
    if why:
        raise errors.fail(why, _EDITED)


def _count_problem(what: str, value: Any) -> str | None:
    """Why ``value`` cannot be a count of epochs or steps read from a file, or None (see
    :data:`~anynet.io.codec.MAX_READ_COUNT`)."""
    if not is_int(value) or not 0 <= value <= MAX_READ_COUNT:
        return f"{what} is {short_repr(value)}; expected an integer from 0 to 2**52"
    return None


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """``tree`` with ``fn`` applied to each array in it (in tuples, NamedTuples, lists, dicts)."""
    if is_array(tree):
        return fn(tree)
    if isinstance(tree, tuple) and hasattr(type(tree), "_fields"):
        return type(tree)(*(tree_map(fn, v) for v in tree))
    if isinstance(tree, tuple | list):
        return type(tree)(tree_map(fn, v) for v in tree)
    if isinstance(tree, Mapping):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    return tree


# --------------------------------------------------------------------------------------------
# Networks


# The layers whose config holds other layers, as {"layers": [[name, config], ...]}: checked
# all the way down, so a file's nesting depth and every layer in it are known before building.
_CONTAINERS = ("Sequential", "Residual")


def _check_architecture(name: Any, config: Any, depth: int = 0) -> str | None:
    """Why ``(name, config)`` is not an anynet architecture, or None if it is one."""
    if depth > MAX_DEPTH:
        return f"layers nested more than {MAX_DEPTH} deep"
    if not isinstance(name, str) or name not in LAYERS:
        return f"the layer type {short_repr(name)}, which is not one of anynet's layers"
    if not isinstance(config, dict):
        return f"a {name} with a config that is not a JSON object"
    if name in _CONTAINERS:
        layers = config.get("layers")
        if set(config) != {"layers"} or not isinstance(layers, list):
            return f"a {name} whose config is not {{'layers': [...]}}"
        for item in layers:
            if not isinstance(item, list) or len(item) != 2:
                return f"a {name} item {short_repr(item)} that is not [name, config]"
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
        A layer that is not anynet's, parameters that do not fit the model or are not finite
        (NaN or infinite entries), or a metadata value a file cannot hold.

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
    why = _params_problem(arrays)
    if why:
        raise ValueError(f"cannot save {path}: {why}; {_DIVERGED}")
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
        but anynet's layers, or parameters missing, unexpected, of the wrong shape or dtype, or
        not finite.
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
        _check_param(errors, name, host)
        params[name] = be.asarray(host, dtype=dtype)
    return model, params, user
