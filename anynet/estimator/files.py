"""``anynet.save`` and ``anynet.load``: a fitted estimator as one safetensors file.

The network and its parameters go through :func:`anynet.io.save_network`; the estimator's
hyper-parameters, classes, history and input scaling are the file's metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from anynet.backends import Backend
from anynet.data import Standardizer
from anynet.errors import ModelFileError
from anynet.estimator.classifier import NNClassifier

__all__ = ["load", "save"]

# Hyper-parameters that describe where a run happens, not the model: never stored in a file.
_NOT_STORED = ("backend", "random_state", "checkpoint_dir")


def _metadata(clf: NNClassifier) -> dict[str, Any]:
    classes = clf.classes_.tolist()
    try:
        json.dumps(classes)
    except TypeError:
        raise ValueError(
            "anynet.save stores class labels as JSON: numbers, strings or booleans; "
            f"these classes are not: {classes[:5]!r}"
        ) from None
    hyper = {k: v for k, v in clf.get_params().items() if k not in _NOT_STORED}
    hyper["hidden_layer_sizes"] = list(clf._hidden)
    meta = {
        "estimator": "NNClassifier",
        "params": hyper,
        "classes": classes,
        "classes_dtype": str(clf.classes_.dtype),
        "n_features_in": int(clf.n_features_in_),
        "n_iter": int(clf.n_iter_),
        "loss_curve": [float(v) for v in clf.loss_curve_],
        "history": {k: [float(x) for x in v] for k, v in getattr(clf, "history_", {}).items()},
    }
    std = getattr(clf, "_standardizer", None)
    if std is not None:
        meta["standardizer"] = {"mean": np.asarray(std.mean), "std": np.asarray(std.std)}
    return meta


def save(model: NNClassifier, path: str | os.PathLike) -> Path:
    """Write a fitted :class:`NNClassifier` to ``path`` as a safetensors file.

    The weights are tensors; the architecture, hyper-parameters, classes and input scaling are
    JSON metadata with an integrity digest. The write is atomic: a crash leaves the previous
    file, never half of a new one. Load it with :func:`load` on any backend.
    """
    from sklearn.utils.validation import check_is_fitted

    from anynet.io import save_network

    if not isinstance(model, NNClassifier):
        raise TypeError(f"anynet.save takes a fitted NNClassifier; got {type(model).__name__}")
    check_is_fitted(model, "params_")
    model._check_params()
    network, _, _ = model._network()
    return save_network(path, network, model.params_, metadata=_metadata(model))


def load(path: str | os.PathLike, backend: str | Backend | None = None) -> NNClassifier:
    """Read a model written by :func:`save`, ready to predict on ``backend``.

    Nothing in the file is executed or imported: the architecture can name only anynet's own
    layers, and a tampered, truncated or mismatched file raises
    :class:`~anynet.errors.ModelFileError`.
    """
    from anynet.io import load_network

    network, params, meta = load_network(path, backend="numpy")
    if meta.get("estimator") != "NNClassifier":
        raise ModelFileError(f"{path}: holds a network, not an NNClassifier saved by anynet.save")
    try:
        hyper = dict(meta["params"])
        hyper["hidden_layer_sizes"] = tuple(hyper["hidden_layer_sizes"])
        clf = NNClassifier(**hyper, backend=backend)
        clf._check_params()
        clf.classes_ = np.asarray(meta["classes"], dtype=meta["classes_dtype"])
        clf.n_features_in_ = int(meta["n_features_in"])
        clf.n_iter_ = int(meta["n_iter"])
        clf.loss_curve_ = [float(v) for v in meta["loss_curve"]]
        clf.history_ = {k: [float(x) for x in v] for k, v in meta["history"].items()}
        clf._standardizer = (
            Standardizer(meta["standardizer"]["mean"], meta["standardizer"]["std"])
            if "standardizer" in meta
            else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: the classifier's metadata is incomplete or invalid "
            f"({type(exc).__name__}: {exc})"
        ) from None
    expected, _, _ = clf._network()
    if expected != network:
        raise ModelFileError(f"{path}: the stored network does not match its hyper-parameters")
    clf.params_ = params
    clf.n_layers_, clf.n_outputs_ = len(clf._hidden) + 2, len(clf.classes_)
    clf.out_activation_ = "logistic" if clf.output == "sigmoid" else "softmax"
    clf.best_loss_ = min(clf.loss_curve_) if clf.loss_curve_ else None
    clf.t_ = 0
    clf.step_name_ = None
    return clf
