"""The fused step's operations on the CPU with numba kernels where one compiled pass beats
several NumPy ones: Adam, softmax cross-entropy, bias + ReLU and its backward (ReLU is the
default activation), and the loader's gather. Everything else is NumPy's
(:class:`~anynet.fast.numpy_ops.NumpyOps`).

Measured on 2 cores: a training epoch of the benchmark's MLP in about half the time of NumPy's
passes at batch 64 and three quarters at 256 (``bench/results/``). The kernels run serially: a
parallel kernel's thread pool and OpenBLAS's fight over the cores between matrix products.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from anynet.fast.activations import IDENTITY, activation_of
from anynet.fast.numpy_ops import NumpyOps
from anynet.nn import layers as L

__all__ = ["NumbaOps"]

# The activations the batch-norm kernels fuse (the default one, and none).
_NORM_ACTS = (IDENTITY, activation_of(L.ReLU()))


@functools.cache
def _tiny(dtype: Any) -> Any:
    """The smallest normal number of ``dtype``, below which optimizer state is flushed."""
    return np.finfo(dtype).tiny


class NumbaOps(NumpyOps):
    """:class:`~anynet.fast.numpy_ops.NumpyOps` with numba kernels for the hottest operations.

    Parameters
    ----------
    kernels : namespace
        The compiled kernels (:func:`anynet.fast.numba_kernels.load`), or anything with the same
        functions (the benchmark passes a wrapper that counts the calls).
    xp : module, optional
        As for :class:`NumpyOps`.
    """

    name = "cpu + numba"

    def __init__(self, kernels: Any, xp: Any = np):
        super().__init__(xp)
        self.kernels = kernels

    def bias_act(self, Z, b, act, slope, A):
        if act.layer is L.ReLU and b is not None and A is Z:
            self.kernels.bias_relu(Z, b)  # one pass for both
        else:
            super().bias_act(Z, b, act, slope, A)

    def act_backward(self, dA, saved, act, slope, keep=None, p=0.0):
        if act.layer is not L.ReLU:
            super().act_backward(dA, saved, act, slope, keep, p)
            return
        if keep is not None:
            super().act_backward(dA, saved, IDENTITY, 0.0, keep, p)  # the mask alone
        self.kernels.relu_backward(dA, saved)

    # --- images: one pass where NumPy takes one per kernel offset -----------------------------

    def im2col(self, X, pads, kernel, stride, cols):
        self.kernels.im2col(X, pads[0], pads[2], *kernel, *stride, cols)

    def col2im(self, dcols, pads, kernel, stride, dX):
        self.kernels.col2im(dcols, pads[0], pads[2], *stride, dX)

    def max_pool(self, X, kernel, stride, Y, arg):
        if kernel == stride == (2, 2):
            self.kernels.max_pool_2x2(X, Y, arg)
        else:
            self.kernels.max_pool(X, *kernel, *stride, Y, arg)

    def max_pool_backward(self, dY, arg, kernel, stride, dX):
        zero = dY.dtype.type(0)  # a 0 of the buffers' dtype keeps the loop in it
        self.kernels.max_pool_backward(dY, arg, *kernel, *stride, zero, dX)

    def batch_norm(self, Z, gamma, beta, eps, act, slope, Xhat, Y, A, stats):
        if A is not Y or act not in _NORM_ACTS:
            super().batch_norm(Z, gamma, beta, eps, act, slope, Xhat, Y, A, stats)
            return
        eps = Z.dtype.type(eps)
        self.kernels.batch_norm(Z, gamma, beta, eps, act.layer is L.ReLU, Xhat, A, stats)

    def batch_norm_backward(self, dA, saved, act, slope, Xhat, gamma, stats, dgamma, dbeta, dX):
        if act not in _NORM_ACTS:
            super().batch_norm_backward(
                dA, saved, act, slope, Xhat, gamma, stats, dgamma, dbeta, dX
            )
            return
        relu, want = act.layer is L.ReLU, dX is not None
        self.kernels.batch_norm_backward(
            dA, saved, relu, Xhat, gamma, stats, dgamma, dbeta, dA.dtype.type(0),
            dX if want else dA, want,
        )  # fmt: skip

    def softmax_cross_entropy(self, Z, y, scale):
        return self.kernels.softmax_cross_entropy(Z, y, Z.dtype.type(scale))

    def adam(self, theta, g, m, v, count, h):
        if h.weight_decay and not h.decoupled:
            self._axpy(theta, g, h.weight_decay)
        elif h.weight_decay:
            self.xp.multiply(theta, 1.0 - h.learning_rate * h.weight_decay, out=theta)
        # Scalars in the buffers' dtype: a float64 scalar would promote every element and
        # halve the vector width (measured: 343 against 132 us for the benchmark's MLP).
        t = theta.dtype.type
        b1, b2, step, eps = h.scalars(count)
        self.kernels.adam(theta, g, m, v, t(b1), t(b2), t(step), t(eps), _tiny(theta.dtype))

    def gather(self, X, rows, conversion, out):
        kind, extra = conversion
        U = self.scratch((len(rows), X.shape[1]), X.dtype, slot=2)
        self.xp.take(X, rows, axis=0, out=U)
        kernel = self.kernels.lookup if kind == "lookup" else self.kernels.standardize
        kernel(U, *extra, out)
