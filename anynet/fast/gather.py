"""The data loader's batch as one fused operation: gather, cast and normalize in one pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anynet.fast.ops import Ops

__all__ = ["batch_gather"]


def batch_gather(
    ops: Ops, X: Any, dtype: Any, convert: Callable, mean: Any = None, inv_std: Any = None
) -> Callable[[Any], Any] | None:
    """A faster ``gather(rows) -> batch`` for a loader's resident uint8 data, or ``None``.

    ``X`` is the loader's data on the device (samples along axis 0, C-contiguous), ``convert``
    its own cast-and-normalize, ``mean`` and ``inv_std`` its standardization statistics if it
    standardizes. The batch equals, bit for bit, what ``convert(take(X, rows))`` gives: without
    standardization the pixels go through a table of the 256 values that ``convert`` itself
    computed, so the arithmetic is the loader's by construction. Measured over an epoch of
    Fashion-MNIST in random order on NumPy with numba: 73 against 155 us per batch of 256.
    Each call returns a new array, as the generic path does.
    """
    xp = ops.xp
    if str(X.dtype) != "uint8" or not X.flags.c_contiguous:
        return None
    dt = xp.dtype(dtype)
    if mean is not None:
        extra = tuple(xp.ascontiguousarray(a, dtype=dt).reshape(-1) for a in (mean, inv_std))
        conversion = ("standardize", extra)
    else:
        table = xp.ascontiguousarray(convert(xp.arange(256, dtype=xp.uint8)), dtype=dt)
        conversion = ("lookup", (table,))
    rows2d = X.reshape(X.shape[0], -1)  # a view: the data is contiguous
    sample_shape, n_features = X.shape[1:], rows2d.shape[1]

    def gather(rows: Any) -> Any:
        with ops.context():
            rows = xp.ascontiguousarray(rows, dtype=xp.int64)
            out = xp.empty((rows.shape[0], n_features), dt)
            ops.gather(rows2d, rows, conversion, out)
            return out.reshape((rows.shape[0], *sample_shape))

    return gather
