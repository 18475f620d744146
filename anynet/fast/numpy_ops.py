"""The fused step's operations as NumPy passes over preallocated buffers.

Each method writes with ``out=`` into buffers the step owns, or into scratch this object keeps,
so a step allocates nothing of the batch's size except what an activation's expression
evaluates to. The activations run the expressions of :mod:`anynet.fast.activations`, evaluated
with NumPy's functions: the same text the CUDA kernels are generated from.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from anynet.fast.activations import IDENTITY, Activation, parse
from anynet.fast.ops import Ops
from anynet.nn import functional as F

__all__ = ["NumpyOps"]


class NumpyOps(Ops):
    """:class:`~anynet.fast.ops.Ops` with NumPy.

    Parameters
    ----------
    xp : module, optional
        NumPy, or anything that passes NumPy's functions through (the benchmark passes a
        wrapper that counts the calls). Every call of a step goes through it.
    """

    name = "cpu"

    def __init__(self, xp: Any = np):
        self.xp = xp
        self._work: dict[tuple[Any, int], np.ndarray] = {}
        self._ones: dict[Any, np.ndarray] = {}
        self._compiled: dict[tuple[int, str], Any] = {}

    def context(self) -> Any:
        return np.errstate(all="ignore")

    def scratch(self, shape: tuple[int, ...], dtype: Any, slot: int = 0) -> np.ndarray:
        """A C-contiguous buffer of ``shape``, reused across calls (``slot`` tells apart the
        buffers of one dtype that an operation needs at the same time)."""
        size = math.prod(shape)  # not np.prod: 20 us on a tuple, on the hot path
        key = (dtype, slot)
        buffer = self._work.get(key)
        if buffer is None or buffer.size < size:
            buffer = self._work[key] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)

    # --- linear algebra -------------------------------------------------------------------

    def matmul(self, A, B, out):
        self.xp.matmul(A, B, out=out)

    def bias_grad(self, dZ, out):
        # A matrix product with ones: BLAS adds the columns faster than a reduction does.
        n, ones = dZ.shape[0], self._ones.get(dZ.dtype)
        if ones is None or ones.size < n:
            ones = self._ones[dZ.dtype] = np.ones(n, dZ.dtype)
        self.xp.matmul(ones[:n], dZ, out=out)

    # --- element-wise -----------------------------------------------------------------------

    def _evaluate(self, act: Activation, which: str, **arrays: Any) -> Any:
        """``act``'s ``forward`` or ``backward`` expression, evaluated on arrays."""
        key = (act.code, which)
        code = self._compiled.get(key)
        if code is None:
            text = getattr(act, which)
            variables = ("z", "slope") if which == "forward" else ("d", act.saved, "slope")
            parse(text, variables)  # checked against the language before it is ever run
            code = self._compiled[key] = compile(text, f"<{act.name} {which}>", "eval")
        xp = self.xp
        functions = {
            "abs": xp.abs,
            "exp": xp.exp,
            "log1p": xp.log1p,
            "sqrt": xp.sqrt,
            "tanh": xp.tanh,
            "where": xp.where,
            "sigmoid": lambda x: F.sigmoid(x, xp=xp),
        }
        return eval(code, {"__builtins__": {}, **functions}, arrays)

    def bias_act(self, Z, b, act, slope, A):
        if b is not None:
            self.xp.add(Z, b, out=Z)
        if act is not IDENTITY:
            slope = Z.dtype.type(slope)
            self.xp.copyto(A, self._evaluate(act, "forward", z=Z, slope=slope))
        elif A is not Z:
            self.xp.copyto(A, Z)

    def dropout(self, A, u, p, out, keep):
        xp = self.xp
        xp.greater_equal(u, p, out=keep)
        xp.multiply(A, keep, out=out)
        xp.multiply(out, 1.0 / (1.0 - p), out=out)

    def act_backward(self, dA, saved, act, slope, keep=None, p=0.0):
        xp = self.xp
        if keep is not None:
            xp.multiply(dA, keep, out=dA)
            xp.multiply(dA, 1.0 / (1.0 - p), out=dA)
        if act is not IDENTITY:
            arrays = {"d": dA, act.saved: saved, "slope": dA.dtype.type(slope)}
            xp.copyto(dA, self._evaluate(act, "backward", **arrays))

    # --- images, channels last ---------------------------------------------------------------

    def copy(self, src, out):
        self.xp.copyto(out, src)

    def _padded(self, shape, pads, dtype, slot):
        """A zero-bordered buffer for ``shape`` (N, H, W, C) padded by ``pads``, kept per shape:
        only its interior is ever written, so the border stays zero without a pass."""
        top, bottom, left, right = pads
        N, H, W, C = shape
        key = ("padded", slot, (N, H + top + bottom, W + left + right, C), dtype)
        buffer = self._work.get(key)
        if buffer is None:
            buffer = self._work[key] = np.zeros(key[2], dtype)
        return buffer, buffer[:, top : top + H, left : left + W, :]

    def im2col(self, X, pads, kernel, stride, cols):
        if any(pads):
            Xp, interior = self._padded(X.shape, pads, X.dtype, slot=0)
            self.xp.copyto(interior, X)
        else:
            Xp = X
        N, Ho, Wo, kh, kw, C = cols.shape
        sN, sH, sW, sC = Xp.strides
        windows = np.lib.stride_tricks.as_strided(
            Xp,
            (N, Ho, Wo, kh, kw, C),
            (sN, sH * stride[0], sW * stride[1], sH, sW, sC),
            writeable=False,
        )
        self.xp.copyto(cols, windows)

    def col2im(self, dcols, pads, kernel, stride, dX):
        xp = self.xp
        if any(pads):
            dXp, interior = self._padded(dX.shape, pads, dX.dtype, slot=1)
        else:
            dXp, interior = dX, dX
        dXp[...] = 0
        for i, j, window in _offsets(dcols.shape[1:3], kernel, stride):
            target = dXp[window]
            xp.add(target, dcols[:, :, :, i, j, :], out=target)
        if dXp is not dX:
            xp.copyto(dX, interior)

    def max_pool(self, X, kernel, stride, Y, arg):
        xp = self.xp
        mask = self.scratch(Y.shape, bool)
        for k, (_, _, window) in enumerate(_offsets(Y.shape[1:3], kernel, stride)):
            if k == 0:
                xp.copyto(Y, X[window])
                arg[...] = 0
                continue
            # Strictly greater: an equal maximum later in the window does not take over.
            xp.greater(X[window], Y, out=mask)
            xp.copyto(Y, X[window], where=mask)
            xp.copyto(arg, k, where=mask)

    def max_pool_backward(self, dY, arg, kernel, stride, dX):
        xp = self.xp
        mask, routed = self.scratch(dY.shape, bool), self.scratch(dY.shape, dY.dtype)
        dX[...] = 0
        for k, (_, _, window) in enumerate(_offsets(dY.shape[1:3], kernel, stride)):
            xp.equal(arg, k, out=mask)
            xp.multiply(dY, mask, out=routed)
            target = dX[window]
            xp.add(target, routed, out=target)

    def avg_pool(self, X, kernel, stride, Y):
        xp = self.xp
        for k, (_, _, window) in enumerate(_offsets(Y.shape[1:3], kernel, stride)):
            if k == 0:
                xp.copyto(Y, X[window])
            else:
                xp.add(Y, X[window], out=Y)
        xp.multiply(Y, 1.0 / (kernel[0] * kernel[1]), out=Y)

    def avg_pool_backward(self, dY, kernel, stride, dX):
        xp = self.xp
        share = self.scratch(dY.shape, dY.dtype)
        xp.multiply(dY, 1.0 / (kernel[0] * kernel[1]), out=share)
        dX[...] = 0
        for _, _, window in _offsets(dY.shape[1:3], kernel, stride):
            target = dX[window]
            xp.add(target, share, out=target)

    # --- batch normalization -------------------------------------------------------------------

    def batch_norm(self, Z, gamma, beta, eps, act, slope, Xhat, Y, A, stats):
        xp = self.xp
        mean, var, inv_std = stats
        square = self.scratch(Z.shape, Z.dtype)
        xp.mean(Z, axis=0, out=mean)
        xp.subtract(Z, mean, out=Xhat)
        xp.multiply(Xhat, Xhat, out=square)
        xp.mean(square, axis=0, out=var)
        xp.add(var, eps, out=inv_std)
        xp.sqrt(inv_std, out=inv_std)
        xp.divide(1.0, inv_std, out=inv_std)
        xp.multiply(Xhat, inv_std, out=Xhat)
        xp.multiply(Xhat, gamma, out=Y)
        self.bias_act(Y, beta, act, slope, A)

    def batch_norm_backward(self, dA, saved, act, slope, Xhat, gamma, stats, dgamma, dbeta, dX):
        xp = self.xp
        self.act_backward(dA, saved, act, slope)
        self.bias_grad(dA, dbeta)
        product = self.scratch(dA.shape, dA.dtype)
        xp.multiply(dA, Xhat, out=product)
        self.bias_grad(product, dgamma)
        if dX is None:
            return
        inv_std, m = stats[2], dA.shape[0]
        # gamma inv_std (dY - (Xhat dgamma + dbeta) / m), as the generic layer groups it.
        xp.multiply(Xhat, dgamma, out=product)
        xp.add(product, dbeta, out=product)
        xp.divide(product, m, out=product)
        xp.subtract(dA, product, out=dX)
        factor = self.scratch(gamma.shape, gamma.dtype, slot=1)
        xp.multiply(gamma, inv_std, out=factor)
        xp.multiply(dX, factor, out=dX)

    def running_average(self, old, batch, momentum, scale, out):
        xp = self.xp
        tmp = self.scratch(old.shape, old.dtype, slot=1)
        xp.multiply(batch, momentum * scale, out=tmp)
        xp.multiply(old, 1.0 - momentum, out=out)
        xp.add(out, tmp, out=out)

    # --- losses -----------------------------------------------------------------------------

    def softmax_cross_entropy(self, Z, y, scale):
        xp = self.xp
        col = self.scratch((Z.shape[0], 1), Z.dtype)
        # Flat positions of the labelled logits: cheaper than take_along_axis or fancy indexing.
        at = xp.arange(0, Z.size, Z.shape[1]) + y
        flat = Z.reshape(-1)
        xp.max(Z, axis=1, keepdims=True, out=col)
        xp.subtract(Z, col, out=Z)  # shifted logits: the largest is 0, exp cannot overflow
        picked = xp.take(flat, at)
        xp.exp(Z, out=Z)
        xp.sum(Z, axis=1, keepdims=True, out=col)
        loss = float(xp.sum(xp.log(col)) - xp.sum(picked)) * scale
        xp.divide(Z, col, out=Z)
        flat[at] -= 1.0
        xp.multiply(Z, scale, out=Z)
        return loss

    def sigmoid_cross_entropy(self, Z, y, scale):
        xp = self.xp
        tmp = self.scratch(Z.shape, Z.dtype)
        at = xp.arange(0, Z.size, Z.shape[1]) + y
        flat = Z.reshape(-1)
        picked = float(xp.sum(xp.take(flat, at)))
        # The sum of max(z, 0) + log1p(exp(-|z|)), less the labelled logits (z * t).
        xp.abs(Z, out=tmp)
        xp.negative(tmp, out=tmp)
        xp.exp(tmp, out=tmp)
        xp.log1p(tmp, out=tmp)
        loss = float(xp.sum(tmp)) + float(xp.sum(xp.maximum(Z, 0))) - picked
        xp.copyto(Z, F.sigmoid(Z, xp=xp))
        flat[at] -= 1.0
        xp.multiply(Z, scale, out=Z)
        return loss * scale

    # --- penalties --------------------------------------------------------------------------

    def _axpy(self, x, y, a):
        """``y += a * x`` in two passes. Not SciPy's BLAS ``axpy``, although it takes one: SciPy
        bundles its own OpenBLAS, whose thread pool then fights NumPy's for the cores between
        matrix products (measured: a step 13 times slower on 2 cores)."""
        tmp = self.scratch(x.shape, x.dtype)
        self.xp.multiply(x, a, out=tmp)
        self.xp.add(y, tmp, out=y)

    def l2_penalty(self, W, gW, strength):
        value = 0.5 * strength * float(self.xp.dot(W, W))
        self._axpy(W, gW, strength)
        return value

    def l1_penalty(self, W, gW, strength):
        xp = self.xp
        value = strength * float(xp.sum(xp.abs(W)))
        tmp = self.scratch(W.shape, W.dtype)
        xp.sign(W, out=tmp)
        xp.multiply(tmp, strength, out=tmp)
        xp.add(gW, tmp, out=gW)
        return value

    # --- optimizers -------------------------------------------------------------------------

    def flush_subnormal(self, a: np.ndarray) -> None:
        """Set the subnormal entries of ``a`` to zero, in place (see :class:`Ops`)."""
        xp = self.xp
        tmp, mask = self.scratch(a.shape, a.dtype), self.scratch(a.shape, bool)
        xp.abs(a, out=tmp)
        xp.less(tmp, np.finfo(a.dtype).tiny, out=mask)
        xp.copyto(a, 0, where=mask)

    def adam(self, theta, g, m, v, count, h):
        xp = self.xp
        if h.weight_decay and not h.decoupled:  # Adam's L2: into the gradient
            self._axpy(theta, g, h.weight_decay)
        one_minus_b1, one_minus_b2, step, eps = h.scalars(count)
        tmp = self.scratch(theta.shape, theta.dtype)
        xp.subtract(g, m, out=tmp)
        xp.multiply(tmp, one_minus_b1, out=tmp)
        xp.add(m, tmp, out=m)
        xp.multiply(g, g, out=g)
        xp.subtract(g, v, out=g)
        xp.multiply(g, one_minus_b2, out=g)
        xp.add(v, g, out=v)
        self.flush_subnormal(m)
        self.flush_subnormal(v)
        xp.sqrt(v, out=tmp)
        xp.add(tmp, eps, out=tmp)
        xp.divide(m, tmp, out=tmp)  # the Adam direction, times c2 / c1
        if h.weight_decay and h.decoupled:  # AdamW: theta - lr (wd theta + direction)
            xp.multiply(theta, 1.0 - h.learning_rate * h.weight_decay, out=theta)
        xp.multiply(tmp, -step, out=tmp)
        xp.add(theta, tmp, out=theta)

    def sgd(self, theta, g, trace, h):
        xp = self.xp
        if h.weight_decay:
            self._axpy(theta, g, h.weight_decay)
        if trace is not None:
            xp.multiply(trace, h.momentum, out=trace)
            xp.add(trace, g, out=trace)  # t = momentum t + g
            self.flush_subnormal(trace)
            if h.nesterov:
                self._axpy(trace, g, h.momentum)  # g + momentum t
            else:
                xp.copyto(g, trace)
        self._axpy(g, theta, -h.learning_rate)

    # --- the loader's batch -----------------------------------------------------------------

    def gather(self, X, rows, conversion, out):
        xp = self.xp
        kind, extra = conversion
        U = self.scratch((len(rows), X.shape[1]), X.dtype, slot=2)
        # NumPy's row copy is the fastest gather of random rows measured here.
        xp.take(X, rows, axis=0, out=U)
        if kind == "lookup":
            (table,) = extra
            xp.take(table, U, out=out, mode="clip")  # uint8 indices: always in range
        else:
            mean, inv_std = extra
            xp.subtract(U, mean, out=out)
            xp.multiply(out, inv_std, out=out)


def _offsets(out: tuple[int, int], kernel: tuple, stride: tuple):
    """``(i, j, index)`` for each kernel offset in row-major order: ``index`` selects, from an
    ``(N, H, W, C)`` array, what offset ``(i, j)`` sees at every one of the ``out`` positions."""
    (Ho, Wo), (sh, sw) = out, stride
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            rows = slice(i, i + sh * (Ho - 1) + 1, sh)
            yield i, j, (slice(None), rows, slice(j, j + sw * (Wo - 1) + 1, sw), slice(None))
