"""Per-feature standardization statistics, fitted once on the host."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Standardizer"]


class Standardizer:
    """Per-feature mean and standard deviation, computed once on the host in float64.

    Standardizing with statistics of the training set is what lifted the from-scratch
    Fashion-MNIST MLP from 50% to 87% (scikit-learn's ``scale``). Fit it on the training set
    and hand the same object to the test set's loader.

    Parameters
    ----------
    mean, std : numpy.ndarray
        Per-feature statistics, of the shape of one sample.

    Attributes
    ----------
    mean, std : numpy.ndarray
        float64, of the shape of one sample.
    inv_std : numpy.ndarray
        ``1 / std``, and 0 for features of zero variance: such a feature is constant on the
        training set, where scikit-learn's ``scale`` leaves it at 0; with a factor of 0 it
        stays 0 on every other set too, instead of becoming a raw outlier.
    """

    def __init__(self, mean: Any, std: Any):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must have the same shape; got {self.mean.shape} and {self.std.shape}"
            )
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std))):
            raise ValueError("mean and std must be finite")
        if np.any(self.std < 0):
            raise ValueError("std must be non-negative")
        # Below this a standard deviation is rounding noise around a constant feature.
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(self.mean))
        constant = self.std <= tiny
        self.inv_std = np.divide(1.0, self.std, out=np.zeros_like(self.std), where=~constant)

    @classmethod
    def fit(cls, X: Any, *, chunk_rows: int = 8192) -> Standardizer:
        """Compute the statistics of ``X`` (samples along axis 0) in float64, in chunks.

        Two passes (mean, then squared deviations) keep the variance accurate; chunks keep
        the float64 copy small (the whole training set in float64 would be 376 MB).
        """
        X = np.asarray(X)
        if X.ndim < 1 or X.shape[0] == 0:
            raise ValueError(f"cannot fit a Standardizer on an empty array of shape {X.shape}")
        n = X.shape[0]
        total = np.zeros(X.shape[1:], dtype=np.float64)
        for start in range(0, n, chunk_rows):
            total += np.sum(X[start : start + chunk_rows], axis=0, dtype=np.float64)
        mean = total / n
        squares = np.zeros(X.shape[1:], dtype=np.float64)
        for start in range(0, n, chunk_rows):
            deviation = X[start : start + chunk_rows].astype(np.float64) - mean
            squares += np.sum(deviation * deviation, axis=0)
        return cls(mean, np.sqrt(squares / n))

    def transform(self, X: Any) -> np.ndarray:
        """Standardize host data in float64: the reference the device path is tested against.

        ``X`` holds samples along axis 0, of the fitted sample shape or flattened.
        """
        X = np.asarray(X, dtype=np.float64)
        shape = X.shape[1:]
        return (X - self.mean.reshape(shape)) * self.inv_std.reshape(shape)

    def __repr__(self) -> str:
        return f"Standardizer(shape={self.mean.shape})"
