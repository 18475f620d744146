"""What the estimator does with its inputs on the host, before anything reaches a device:
arrays of any library to NumPy, values checked against the compute dtype, labels encoded and
checked, the data's fingerprint, a seed from scikit-learn's ``random_state``."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj
from sklearn.utils.validation import check_random_state

from anynet.backends import to_numpy

__all__ = [
    "as_compute_dtype",
    "class_weights",
    "encode_labels",
    "fingerprint",
    "int_seed",
    "to_host",
]


def to_host(x: Any) -> Any:
    """Arrays of another library (CuPy, PyTorch, array-api-strict) to NumPy; anything else
    as it is. (array-api-compat recognises PyTorch tensors, which lack
    ``__array_namespace__``.)"""
    if is_array_api_obj(x) and not isinstance(x, np.ndarray | np.generic):
        return to_numpy(x)
    return x


def as_compute_dtype(X: np.ndarray, dtype: str) -> np.ndarray:
    """uint8 pixels stay uint8 (the loader scales them on the device); other numbers must fit
    the compute dtype, or they would turn into inf there."""
    if X.dtype == np.uint8:
        return X
    limit = np.finfo(dtype).max
    if X.size and np.abs(X).max() > limit:
        raise ValueError(
            f"X has values up to {np.abs(X).max():.3g}, beyond {dtype}'s largest "
            f"({limit:.3g}); scale the data, or use dtype='float64'"
        )
    return X if np.issubdtype(X.dtype, np.floating) else X.astype(dtype)


def encode_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels as int64 positions in ``classes``, checked on the host: an out-of-range index on
    a GPU would be wrapped around silently, not refused."""
    codes = np.searchsorted(classes, y)
    codes = np.clip(codes, 0, len(classes) - 1)
    unknown = classes[codes] != y
    if np.any(unknown):
        raise ValueError(
            f"y has labels {sorted(set(np.asarray(y)[unknown].tolist()))[:10]} that are not "
            f"among the classes {list(classes)[:20]}"
        )
    return codes.astype(np.int64)


def class_weights(
    class_weight: Any, classes: np.ndarray, codes: np.ndarray, sample_weight: np.ndarray | None
) -> np.ndarray | None:
    """Each sample's weight: its class's (``class_weight``: None, ``'balanced'`` or a dict of
    label to weight) times its own (``sample_weight``, checked), or None if neither is given."""
    if class_weight is None:
        return sample_weight
    if isinstance(class_weight, str) and class_weight == "balanced":
        # scikit-learn's n_samples / (n_classes * np.bincount(y)), over the classes in y
        counts = np.bincount(codes, minlength=len(classes)).astype(np.float64)
        present = counts > 0
        per_class = np.ones(len(classes))
        per_class[present] = len(codes) / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        per_class = np.ones(len(classes))
        known = {label: i for i, label in enumerate(classes.tolist())}
        for label, weight in class_weight.items():
            if label not in known:
                raise ValueError(
                    f"class_weight names the label {label!r}, which is not among the classes "
                    f"{list(classes)[:20]}; name the classes as y holds them"
                )
            value = float(weight) if isinstance(weight, int | float | np.number) else math.nan
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"class_weight[{label!r}] must be a finite number >= 0; got {weight!r}"
                )
            per_class[known[label]] = value
    else:
        raise ValueError(
            f"class_weight must be None, 'balanced' or a dict of class label to weight; got "
            f"{class_weight!r}"
        )
    w = per_class[codes]
    w = w if sample_weight is None else sample_weight * w
    if not w.any():
        raise ValueError(
            f"class_weight={class_weight!r} with these samples' weights gives every sample "
            "weight 0, so no sample would count; give some class a positive weight"
        )
    return w


def fingerprint(*arrays: np.ndarray) -> str:
    """A digest of the arrays' dtypes, shapes and bytes: the same data, or not."""
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


def int_seed(random_state: Any) -> int:
    """An int seed from scikit-learn's ``random_state`` conventions."""
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))
