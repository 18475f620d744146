"""``anynet.save`` and ``anynet.load``: a fitted estimator as one safetensors file.

The network and its parameters go through :func:`anynet.io.save_network`; the estimator's
hyper-parameters, classes (a regressor's number of outputs), history and input scaling are the
file's metadata.

A file's digest proves it intact, not who wrote it, so :func:`load` checks every value it reads
against a closed set before using it: the class labels' dtype comes from a short allow-list
(a string length beyond :data:`MAX_LABEL_CHARS` would let a 2 KB file ask for gigabytes), the
labels must be sorted, unique and held exactly by that dtype (``predict`` relies on the order),
only :data:`MODEL_PARAMS` are taken from the file (never where or how a run happens:
:data:`RUN_SETTINGS`), and the input scaling must fit the model and be finite.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from anynet import nn
from anynet.backends import Backend
from anynet.data import Standardizer
from anynet.estimator.classifier import NNClassifier
from anynet.estimator.data_format import check_data_format
from anynet.estimator.network import OUTPUTS, SCALINGS, weight_layers
from anynet.estimator.regressor import NNRegressor

__all__ = ["MAX_LABEL_CHARS", "MODEL_PARAMS", "RUN_SETTINGS", "load", "save"]

#: The hyper-parameters a model file carries: what the model is and how it was trained.
#: Only these are written, and only these are read back.
MODEL_PARAMS = frozenset(
    {
        "activation",
        "alpha",
        "batch_size",
        "beta_1",
        "beta_2",
        "class_weight",
        "divergence_factor",
        "dropout",
        "dtype",
        "early_stopping",
        "epsilon",
        "hidden_layer_sizes",
        "image_shape",
        "init",
        "l1",
        "learning_rate",
        "learning_rate_init",
        "loss",
        "max_iter",
        "momentum",
        "n_iter_no_change",
        "nesterovs_momentum",
        "network",
        "output",
        "power_t",
        "shuffle",
        "solver",
        "standardize",
        "tol",
        "validation_fraction",
    }
)

#: The parameters that say where and how a run happens, not what the model is: never written,
#: never taken from a file (a file must not choose a folder to write to, a device, a seed, or
#: to resume). Files written before this check hold the first five: they are dropped unread.
RUN_SETTINGS = frozenset(
    {
        "checkpoint_every",
        "checkpoint_steps",
        "resume",
        "verbose",
        "warm_start",
        "backend",
        "checkpoint_dir",
        "random_state",
        "augment",
        "distributed",
    }
)
#: The hyper-parameters of one estimator only, refused in the other's files.
_OWN = {"NNClassifier": frozenset({"output", "class_weight"}), "NNRegressor": frozenset({"loss"})}
#: What a file's ``network`` hyper-parameter says for a network the user built of anynet layers.
CUSTOM = "custom"
_ONCE_SAVED = frozenset({"checkpoint_every", "checkpoint_steps", "resume", "verbose", "warm_start"})
_FLAGS = ("early_stopping", "nesterovs_momentum", "shuffle")

#: The longest class label a file may hold, in characters.
MAX_LABEL_CHARS = 1024
# What the labels' array may take, whatever the file: far beyond any real set of classes.
_MAX_CLASSES_BYTES = 64 << 20
# The label dtypes a file may name (as ``str(dtype)`` writes them): NumPy's numbers and bools,
# and unicode strings ("<U7"). Everything else (objects, bytes, dates, structured, big-endian)
# is refused by name before NumPy sees it.
_LABEL_DTYPES = frozenset(
    ["bool", "float16", "float32", "float64"]
    + [f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)]
)
_UNICODE = re.compile(r"<U([1-9][0-9]{0,6})")
# Which JSON values may stand for a label of each dtype kind.
_LABEL_TYPES = {
    "b": lambda v: isinstance(v, bool),
    "i": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "u": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "f": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "U": lambda v: isinstance(v, str),
}

_REQUIRED = (
    "params",
    "n_features_in",
    "n_iter",
    "loss_curve",
    "history",
)
_EDITED = "the file was edited or written by something else: save the model again with anynet.save"


def label_array(classes: Any, dtype_name: Any) -> np.ndarray:
    """The class labels as an array of the dtype named, or ValueError saying why not.

    The dtype must be one anynet writes; the labels a non-empty list of values of its kind,
    sorted, unique, held exactly (no overflow, rounding or truncation), within the size caps.
    """
    if not isinstance(dtype_name, str) or not (
        dtype_name in _LABEL_DTYPES
        or ((m := _UNICODE.fullmatch(dtype_name)) and int(m[1]) <= MAX_LABEL_CHARS)
    ):
        raise ValueError(
            f"its classes_dtype {dtype_name!r:.80} is not one anynet writes (bool, integers, "
            f"floats, or '<Un' strings of up to {MAX_LABEL_CHARS} characters)"
        )
    dtype = np.dtype(dtype_name)
    if not isinstance(classes, list) or not classes:
        raise ValueError("its classes are not a non-empty list")
    if len(classes) * dtype.itemsize > _MAX_CLASSES_BYTES:
        raise ValueError(
            f"its {len(classes)} classes of {dtype_name} would take more than "
            f"{_MAX_CLASSES_BYTES} bytes"
        )
    if not all(map(_LABEL_TYPES[dtype.kind], classes)):
        raise ValueError(f"its classes_dtype {dtype_name} cannot hold its classes (other kinds)")
    try:
        labels = np.asarray(classes, dtype=dtype)
    except (OverflowError, ValueError):
        labels = None
    if labels is None or labels.tolist() != classes:
        raise ValueError(
            f"its classes_dtype {dtype_name} cannot hold its classes exactly (overflow, "
            "rounding, truncation or NaN)"
        )
    if not np.all(labels[1:] > labels[:-1]):
        raise ValueError(
            "its classes are not sorted and unique: predictions would be given the wrong labels"
        )
    return labels


def _metadata(clf: NNClassifier | NNRegressor, path: Any) -> dict[str, Any]:
    if isinstance(clf, NNRegressor):
        return {**_common_metadata(clf), "n_outputs": int(clf.n_outputs_)}
    classes = clf.classes_.tolist()
    try:
        json.dumps(classes)
    except TypeError:
        raise ValueError(
            "anynet.save stores class labels as JSON: numbers, strings or booleans; "
            f"these classes are not: {classes[:5]!r}"
        ) from None
    longest = max((len(c) for c in classes if isinstance(c, str)), default=0)
    if longest > MAX_LABEL_CHARS:
        raise ValueError(
            f"cannot save {path}: a class label has {longest} characters; anynet files hold "
            f"labels of up to {MAX_LABEL_CHARS}: shorten them, or encode them as integers"
        )
    # Refuse to write a file that would not load back.
    try:
        label_array(classes, str(clf.classes_.dtype))
    except ValueError as exc:
        raise ValueError(f"cannot save {path}: {exc}") from None
    meta = _common_metadata(clf)
    if isinstance(clf.class_weight, dict):  # labels of any type: one weight per class instead
        weights = {label: float(w) for label, w in clf.class_weight.items()}
        meta["params"]["class_weight"] = [weights.get(c, 1.0) for c in clf.classes_.tolist()]
    return {**meta, "classes": classes, "classes_dtype": str(clf.classes_.dtype)}


def _common_metadata(clf: NNClassifier | NNRegressor) -> dict[str, Any]:
    """What the files of both estimators hold: hyper-parameters, history, input scaling."""
    hyper = {k: v for k, v in clf.get_params().items() if k in MODEL_PARAMS}
    hyper["hidden_layer_sizes"] = list(clf._hidden)
    # A network of the user's own is the file's architecture itself, rebuilt from it on load.
    hyper["network"] = CUSTOM if isinstance(clf.network, nn.Layer) else clf.network
    if clf.image_shape is not None:
        hyper["image_shape"] = [int(v) for v in clf.image_shape]
    shape = getattr(clf, "image_shape_", None)
    meta = {
        "estimator": type(clf).__name__,
        "params": hyper,
        "n_features_in": int(clf.n_features_in_),
        "n_iter": int(clf.n_iter_),
        "loss_curve": [float(v) for v in clf.loss_curve_],
        "history": {k: [float(x) for x in v] for k, v in getattr(clf, "history_", {}).items()},
        "image_shape": None if shape is None else [int(v) for v in shape],
    }
    data_format = getattr(clf, "data_format_", None)
    if data_format is not None:  # what the data was, for the command's checks of new data
        meta["data_format"] = check_data_format(data_format, int(clf.n_features_in_))
    std = getattr(clf, "_standardizer", None)
    if std is not None:
        meta["standardizer"] = {"mean": np.asarray(std.mean), "std": np.asarray(std.std)}
    return meta


def save(model: NNClassifier | NNRegressor, path: str | os.PathLike) -> Path:
    """Write a fitted :class:`NNClassifier` or :class:`NNRegressor` to ``path`` as a
    safetensors file.

    The weights are tensors; the architecture, hyper-parameters (:data:`MODEL_PARAMS`),
    classes and input scaling are JSON metadata with an integrity digest. The write is atomic:
    a crash leaves the previous file, never half of a new one. The temporary files of earlier
    writes that were killed in that folder are removed first
    (:func:`anynet.io.remove_orphans`). Load it with :func:`load` on any backend.

    Raises
    ------
    ValueError
        Weights that are not finite (NaN or infinite entries: the message names the
        parameter), or class labels a file cannot hold (not JSON, longer than
        :data:`MAX_LABEL_CHARS`).
    """
    from sklearn.utils.validation import check_is_fitted

    from anynet.io import remove_orphans, save_network

    if not isinstance(model, NNClassifier | NNRegressor):
        raise TypeError(
            f"anynet.save takes a fitted NNClassifier or NNRegressor; got {type(model).__name__}"
        )
    check_is_fitted(model, "params_")
    model._check_params()
    network, _, _ = model._network()
    # A write killed earlier (SIGKILL, a power cut) left its temporary file here; a live
    # write's is kept.
    remove_orphans(Path(path).parent)
    return save_network(path, network, model.params_, metadata=_metadata(model, path))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _own_layers(fail: Any, network: nn.Sequential, output: Any) -> nn.Layer:
    """The user's network inside a stored one: all of it but the output layer that ``output``
    adds (a LogSoftmax)."""
    last = OUTPUTS.get(output, (None,))[0] if isinstance(output, str) else None
    if last is None:
        return network
    if not network.layers or type(network.layers[-1]) is not last:
        raise fail(f"its network does not end with the {last.__name__} of output={output!r}")
    return nn.Sequential(*network.layers[:-1])


def _is_shape(value: Any) -> bool:
    """Is ``value`` a ``[channels, height, width]`` of integers >= 1?"""
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    )


def _hyper_parameters(fail: Any, hyper: Any, estimator: str) -> dict[str, Any]:
    """The model hyper-parameters of a file of ``estimator``, each of a kind it may have."""
    if not isinstance(hyper, dict):
        raise fail("its hyper-parameters are not a mapping")
    others = set().union(*(own for name, own in _OWN.items() if name != estimator))
    foreign = sorted(set(hyper) - (MODEL_PARAMS - others) - _ONCE_SAVED)
    if foreign:
        raise fail(
            f"its hyper-parameters include {', '.join(map(repr, foreign))[:200]}, which a model "
            f"file never carries (where or how a run happens, or not {estimator}'s)",
            _EDITED,
        )
    kept = {k: v for k, v in hyper.items() if k in MODEL_PARAMS}
    sizes = kept.get("hidden_layer_sizes")
    if not isinstance(sizes, list) or not all(
        isinstance(h, int) and not isinstance(h, bool) for h in sizes
    ):
        raise fail(f"its hyper-parameter hidden_layer_sizes {sizes!r:.80} is not a list of ints")
    kept["hidden_layer_sizes"] = tuple(sizes)
    shape = kept.get("image_shape")
    if shape is not None:
        if not _is_shape(shape):
            raise fail(f"its hyper-parameter image_shape {shape!r:.80} is not 3 integers >= 1")
        kept["image_shape"] = tuple(shape)
    for key, value in kept.items():
        scalar = value is None or isinstance(value, bool | int | float | str)
        if key in _FLAGS and not isinstance(value, bool):
            raise fail(f"its hyper-parameter {key} is {value!r:.80}, not a boolean")
        if key not in ("hidden_layer_sizes", "image_shape", "class_weight") and not scalar:
            raise fail(f"its hyper-parameter {key} is {value!r:.80}, not a plain value")
    return kept


def _standardizer(fail: Any, value: Any, n_features: int, dtype: str) -> Standardizer:
    """The input scaling of a file: per-feature float arrays of the model's input, finite, and
    what :meth:`Standardizer.fit` can make of data the model takes.

    The model refuses inputs beyond its dtype's largest value (``as_compute_dtype``), so no
    feature's mean or standard deviation can exceed it; a standard deviation is never
    negative. It can be 0, or rounding noise near 0: a feature constant on the training set,
    which the scaling then multiplies by 0.
    """
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        raise fail("its standardizer is not {'mean': array, 'std': array}")
    largest = float(np.finfo(dtype).max)
    for key in ("mean", "std"):
        array = value[key]
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
            what = f"dtype {array.dtype}" if isinstance(array, np.ndarray) else "not an array"
            raise fail(f"its standardizer's {key} has {what}, not floating")
        if array.shape != (n_features,):
            raise fail(
                f"its standardizer's {key} has shape {array.shape}; the model takes "
                f"{n_features} features"
            )
        if not np.all(np.isfinite(array)):
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise fail(f"its standardizer's {key} has {bad} NaN or infinite entries", _EDITED)
        if np.any(np.abs(array) > largest):
            worst = int(np.argmax(np.abs(array)))
            raise fail(
                f"its standardizer's {key} for feature {worst} is {array[worst]:.3g}, beyond "
                f"the largest {dtype} ({largest:.3g}) that a feature of this model can hold",
                _EDITED,
            )
    if np.any(value["std"] < 0):
        worst = int(np.argmin(value["std"]))
        raise fail(
            f"its standardizer's std for feature {worst} is {value['std'][worst]:.3g}; a "
            "standard deviation is never negative",
            _EDITED,
        )
    return Standardizer(value["mean"], value["std"])


def load(
    path: str | os.PathLike, backend: str | Backend | None = None
) -> NNClassifier | NNRegressor:
    """Read a model written by :func:`save`, ready to predict on ``backend``.

    Nothing in the file is executed or imported: the architecture can name only anynet's own
    layers, and every value is checked before use (see the module's docstring).

    Raises
    ------
    ModelFileError
        A tampered, truncated or mismatched file, a special file (a FIFO, a device), weights
        that are not finite, class labels or hyper-parameters a model file does not hold, or
        input scaling that does not fit. The message names the file.
    """
    from anynet.io import load_network
    from anynet.io.container import FileErrors

    fail = FileErrors(Path(path)).fail
    network, params, meta = load_network(path, backend="numpy")
    estimator = meta.get("estimator")
    if estimator not in _OWN:
        raise fail(
            "holds a network, not an NNClassifier or NNRegressor saved by anynet.save",
            "load it with anynet.io.load_network",
        )
    regressor = estimator == "NNRegressor"
    required = (*_REQUIRED, *(("n_outputs",) if regressor else ("classes", "classes_dtype")))
    missing = [key for key in required if key not in meta]
    if missing:
        raise fail(f"its metadata lacks {', '.join(map(repr, missing))}", _EDITED)
    hyper = _hyper_parameters(fail, meta["params"], estimator)
    if regressor:
        n_outputs = meta["n_outputs"]
        if not (isinstance(n_outputs, int) and not isinstance(n_outputs, bool) and n_outputs):
            raise fail(f"its n_outputs {n_outputs!r:.80} is not an integer >= 1", _EDITED)
        if hyper.get("network") == CUSTOM:  # the user's own layers, as they were stored
            hyper["network"] = network
        model = NNRegressor(**hyper, backend=backend)
        model.n_outputs_ = n_outputs
        return _restore(fail, model, meta, network, params)
    try:
        classes = label_array(meta["classes"], meta["classes_dtype"])
    except ValueError as exc:
        raise fail(str(exc), _EDITED) from None
    weights = hyper.get("class_weight")
    if isinstance(weights, list):  # a dict of label to weight, saved one weight per class
        if len(weights) != len(classes) or not all(
            _is_number(w) and math.isfinite(w) and w >= 0 for w in weights
        ):
            raise fail(f"its class_weight is not {len(classes)} finite weights >= 0", _EDITED)
        hyper["class_weight"] = dict(zip(classes.tolist(), map(float, weights), strict=True))
    elif weights not in (None, "balanced"):
        raise fail(f"its class_weight {weights!r:.80} is not None, 'balanced' or weights", _EDITED)
    if hyper.get("network") == CUSTOM:  # the user's own layers, less the output layer added
        hyper["network"] = _own_layers(fail, network, hyper.get("output", "softmax"))
    clf = NNClassifier(**hyper, backend=backend)
    clf.classes_ = classes
    clf.n_outputs_ = len(classes)
    return _restore(fail, clf, meta, network, params)


def _restore(fail: Any, clf: Any, meta: dict, network: nn.Sequential, params: dict) -> Any:
    """The fitted state both estimators' files hold, checked, set on ``clf`` (its classes or
    its ``n_outputs_`` set already)."""
    try:
        clf._check_params()
    except (TypeError, ValueError) as exc:
        raise fail(f"its hyper-parameters are invalid: {exc}", _EDITED) from None
    counts = {"n_features_in": 1, "n_iter": 0}
    for key, low in counts.items():
        value = meta[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
            raise fail(f"its {key} {value!r:.80} is not an integer >= {low}")
    curve = meta["loss_curve"]
    if not isinstance(curve, list) or not all(map(_is_number, curve)):
        raise fail("its loss_curve is not a list of numbers")
    history = meta["history"]
    if not isinstance(history, dict) or not all(
        isinstance(v, list) and all(map(_is_number, v)) for v in history.values()
    ):
        raise fail("its history is not a mapping of names to lists of numbers")
    clf.n_features_in_ = meta["n_features_in"]
    clf.n_iter_ = meta["n_iter"]
    clf.loss_curve_ = [float(v) for v in curve]
    clf.history_ = {k: [float(x) for x in v] for k, v in history.items()}
    shape = meta.get("image_shape")
    if shape is not None and not (_is_shape(shape) and math.prod(shape) == clf.n_features_in_):
        raise fail(
            f"its image_shape {shape!r:.80} is not 3 integers >= 1 of {clf.n_features_in_} "
            "values in all (its n_features_in)",
            _EDITED,
        )
    custom = isinstance(clf.network, nn.Layer)
    if (shape is None) != (clf.network is None) and not (custom and shape is None):
        raise fail(
            f"its image_shape {shape!r:.80} does not go with its network {clf.network!r:.80}",
            _EDITED,
        )
    clf.image_shape_ = None if shape is None else tuple(shape)
    if "data_format" in meta:
        try:
            clf.data_format_ = check_data_format(meta["data_format"], clf.n_features_in_)
        except ValueError as exc:
            raise fail(str(exc), _EDITED) from None
    # The architecture is built from the checked hyper-parameters and compared with the file's
    # (which its parameters fit): a count, a class list or a setting that disagrees is refused.
    try:
        expected, _, _ = clf._network()
    except ValueError as exc:
        raise fail(
            f"its network cannot be built from its hyper-parameters: {exc}", _EDITED
        ) from None
    if expected != network:
        raise fail("the stored network does not match its hyper-parameters", _EDITED)
    # Input scaling by statistics exactly when the hyper-parameter asks for it: a file with one
    # and not the other would predict from inputs scaled otherwise than in training.
    scaling = SCALINGS[clf.standardize]
    if (scaling == "standardize") != ("standardizer" in meta):
        held = "holds" if "standardizer" in meta else "lacks"
        raise fail(
            f"its standardize hyper-parameter is {clf.standardize!r}, but it {held} the "
            "standardizer (per-feature mean and std) that goes with standardize=True",
            _EDITED,
        )
    clf._standardizer = (
        _standardizer(fail, meta["standardizer"], clf.n_features_in_, clf.dtype)
        if "standardizer" in meta
        else None
    )
    clf.params_ = params
    clf.n_layers_ = weight_layers(network) + 1
    clf._record_outputs()
    clf.best_loss_ = min(clf.loss_curve_) if clf.loss_curve_ else None
    clf.t_ = 0
    clf.step_name_ = None
    return clf
