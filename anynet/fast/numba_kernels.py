"""Numba kernels for the CPU: several element-wise NumPy passes fused into one compiled loop.

:class:`~anynet.fast.numba_ops.NumbaOps` calls them; each is the twin of a
:class:`~anynet.fast.numpy_ops.NumpyOps` method (``tests/test_fast.py`` checks them equal).
:func:`load` compiles them once (numba caches the machine code on disk) or says why not.

Why: at these sizes the optimizer update and the activations are bound by memory bandwidth, so
their cost is the number of passes over memory. NumPy makes one pass per operation (Adam: 12
over four buffers); a compiled loop makes one in all.
"""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace
from typing import Any

__all__ = ["load"]


def _compile() -> Any:
    import numba
    import numpy as np

    # Serial on purpose: a parallel kernel's thread pool and OpenBLAS's fight over the cores
    # between matrix products (measured on 2 cores: a step 50 times slower). error_model="numpy"
    # drops Python's zero-division checks, which would keep the loops from vectorizing (4x).
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @jit
    def adam(theta, g, m, v, one_minus_beta1, one_minus_beta2, step, eps, tiny):
        """theta -= step * m / (sqrt(v) + eps), after the moment updates (see AdamHyper.scalars);
        moments below ``tiny`` (the smallest normal number) become zero, as in NumpyOps.

        The scalars come in the buffers' dtype and stay there: ``1 - beta1`` computed here, or
        ``math.sqrt``, would promote each element to float64 and halve the vector width
        (measured: 343 us against 132 us for the 235,146 float32 parameters of the benchmark's
        MLP). float32 throughout is also what NumPy does in the twin.
        """
        zero = tiny - tiny  # in the buffers' dtype, as every scalar here
        for i in range(theta.shape[0]):
            gi = g[i]
            mi = m[i] + one_minus_beta1 * (gi - m[i])
            vi = v[i] + one_minus_beta2 * (gi * gi - v[i])
            mi = mi if not abs(mi) < tiny else zero  # NaN stays NaN
            vi = vi if not vi < tiny else zero
            m[i] = mi
            v[i] = vi
            theta[i] -= step * (mi / (np.sqrt(vi) + eps))

    @jit
    def bias_relu(Z, b):
        """Z = max(Z + b, 0), row by row."""
        for r in range(Z.shape[0]):
            for c in range(Z.shape[1]):
                z = Z[r, c] + b[c]
                Z[r, c] = z if z > 0 else 0

    @jit
    def relu_backward(dA, A):
        """dA = dA where A > 0, else 0."""
        for r in range(dA.shape[0]):
            for c in range(dA.shape[1]):
                if not A[r, c] > 0:
                    dA[r, c] = 0

    @jit
    def lookup(U, table, out):
        """out = table[U], element-wise (U: uint8 rows)."""
        for r in range(U.shape[0]):
            for c in range(U.shape[1]):
                out[r, c] = table[U[r, c]]

    @jit
    def standardize(U, mean, inv_std, out):
        """out = (U - mean) * inv_std, in ``out``'s dtype, row by row."""
        zero = mean[0] - mean[0]
        for r in range(U.shape[0]):
            for c in range(U.shape[1]):
                out[r, c] = ((U[r, c] + zero) - mean[c]) * inv_std[c]

    @jit
    def softmax_cross_entropy(Z, y, scale):
        """Z (logits) becomes (softmax(Z) - one_hot(y)) * scale; returns the loss, summed over
        rows, times ``scale`` (see NumpyOps). One pass over each row, in Z's
        dtype; the loss adds up in float64. A NaN logit makes the loss NaN."""
        total = 0.0
        for r in range(Z.shape[0]):
            top = Z[r, 0]
            for c in range(1, Z.shape[1]):
                top = max(top, Z[r, c])
            label = y[r]
            shifted_label = Z[r, label] - top
            norm = top - top
            for c in range(Z.shape[1]):
                e = np.exp(Z[r, c] - top)
                Z[r, c] = e
                norm += e
            total += np.log(norm) - shifted_label
            for c in range(Z.shape[1]):
                Z[r, c] = Z[r, c] / norm * scale
            Z[r, label] -= scale
        return total * scale

    from anynet.fast.numba_image_kernels import compile_kernels

    return SimpleNamespace(
        **compile_kernels(jit),
        adam=adam,
        bias_relu=bias_relu,
        relu_backward=relu_backward,
        lookup=lookup,
        softmax_cross_entropy=softmax_cross_entropy,
        standardize=standardize,
    )


def load() -> tuple[Any, str]:
    """The compiled kernels and a note on them, or ``None`` and why there are none (numba not
    installed, or ``ANYNET_NUMBA=0``)."""
    if os.environ.get("ANYNET_NUMBA", "1") == "0":
        return None, "ANYNET_NUMBA=0"
    return _load_numba()


@functools.cache
def _load_numba() -> tuple[Any, str]:
    try:
        import numba
    except ImportError as exc:
        return None, f"numba is not installed ({exc})"
    return _compile(), f"numba {numba.__version__}"
