"""What the estimator does with its inputs on the host, before anything reaches a device:
arrays of any library to NumPy, values checked against the compute dtype, labels encoded and
checked, the data's fingerprint, a seed from scikit-learn's ``random_state``."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj
from sklearn.utils.validation import check_random_state

from anynet.backends import to_numpy

__all__ = ["as_compute_dtype", "encode_labels", "fingerprint", "int_seed", "to_host"]


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
