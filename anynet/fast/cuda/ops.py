"""The fused step's operations as the CUDA kernels of :mod:`anynet.fast.cuda.source`.

Element-wise work is one kernel launch per chain; matrix products and column sums are the
array library's own (cuBLAS on CuPy). Nothing here reads a device value on the host: the losses
come back as 0-d device arrays, so an epoch runs without synchronizing.

:class:`CudaOps` takes its array library and a launcher as arguments, which is how the test
suite runs it on the CPU: NumPy arrays, and the kernels built as host C++ with one thread
(:class:`~anynet.fast.cuda.host.HostLauncher`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from anynet.fast.activations import IDENTITY
from anynet.fast.cuda.source import CTYPES
from anynet.fast.ops import Ops

__all__ = ["CudaOps"]


class CudaOps(Ops):
    """:class:`~anynet.fast.ops.Ops` as CUDA kernels.

    Parameters
    ----------
    xp : module
        The buffers' array library: CuPy (NumPy in the tests).
    launcher : object
        ``launcher.launch(name, dtype, n, args)`` runs kernel ``name`` for float type ``dtype``
        over ``n`` work items with ``args`` in :data:`~anynet.fast.cuda.source.SIGNATURES`'
        order, ``None`` for a pointer the kernel does not read:
        :class:`~anynet.fast.cuda.launch.CupyLauncher` on a GPU.
    device : context manager, optional
        Makes the buffers' device current during a step (a CuPy ``Device``).
    """

    name = "cuda"

    def __init__(self, xp: Any, launcher: Any, device: Any = None):
        self.xp = xp
        self.launcher = launcher
        self.device = device
        self._rowloss: dict[str, Any] = {}
        self._dims: dict[tuple, Any] = {}

    def context(self) -> Any:
        return self.device if self.device is not None else contextlib.nullcontext()

    def _run(self, name: str, like: Any, n: int, *args: Any) -> None:
        dtype = str(like.dtype)
        if dtype not in CTYPES:
            raise TypeError(f"kernel {name} takes float32 or float64 arrays, got {dtype}")
        if n > 0:
            self.launcher.launch(name, dtype, n, args)

    # --- linear algebra -------------------------------------------------------------------

    def matmul(self, A, B, out):
        self.xp.matmul(A, B, out=out)

    def bias_grad(self, dZ, out):
        self.xp.sum(dZ, axis=0, out=out)

    # --- element-wise -----------------------------------------------------------------------

    def bias_act(self, Z, b, act, slope, A):
        if b is None and act is IDENTITY and A is Z:
            return  # nothing to do: no launch
        rows, cols = Z.shape
        has_bias = b is not None
        self._run("bias_act", Z, Z.size, Z, b, A, rows, cols, int(has_bias), act.code, slope)

    def dropout(self, A, u, p, out, keep):
        self._run("dropout", A, A.size, A, u, out, keep, A.size, p, 1.0 / (1.0 - p))

    def act_backward(self, dA, saved, act, slope, keep=None, p=0.0):
        use_keep = keep is not None
        if act is IDENTITY and not use_keep:
            return
        args = (dA, saved, keep, dA.size, int(use_keep), 1.0 / (1.0 - p), act.code, slope)
        self._run("act_backward", dA, dA.size, *args)

    # --- images, channels last ---------------------------------------------------------------

    def copy(self, src, out):
        self.xp.copyto(out, src)

    def _shape(self, X, Y, kernel, stride, pads=(0, 0, 0, 0)):
        """The kernels' ``dims`` for input ``X`` and output ``Y`` (both ``(N, H, W, C)``),
        kept on the device per shape: a copy to the device per launch would cost more."""
        N, H, W, C = X.shape
        key = (N, H, W, C, Y.shape[1], Y.shape[2], *kernel, *stride, pads[0], pads[2])
        dims = self._dims.get(key)
        if dims is None:
            dims = self._dims[key] = self.xp.asarray(np.array(key, dtype=np.int64))
        return dims

    def im2col(self, X, pads, kernel, stride, cols):
        X = self.xp.ascontiguousarray(X)  # the first stage reads channels first: one copy
        dims = self._shape(X, cols, kernel, stride, pads)
        self._run("im2col", cols, cols.size, X, cols, dims)

    def col2im(self, dcols, pads, kernel, stride, dX):
        dims = self._shape(dX, dcols, kernel, stride, pads)
        self._run("col2im", dX, dX.size, dcols, dX, dims)

    def max_pool(self, X, kernel, stride, Y, arg):
        self._run("max_pool", Y, Y.size, X, Y, arg, self._shape(X, Y, kernel, stride))

    def max_pool_backward(self, dY, arg, kernel, stride, dX):
        dims = self._shape(dX, dY, kernel, stride)
        self._run("max_pool_backward", dX, dX.size, dY, arg, dX, dims)

    def avg_pool(self, X, kernel, stride, Y):
        self._run("avg_pool", Y, Y.size, X, Y, self._shape(X, Y, kernel, stride))

    def avg_pool_backward(self, dY, kernel, stride, dX):
        self._run("avg_pool_backward", dX, dX.size, dY, dX, self._shape(dX, dY, kernel, stride))

    # --- batch normalization: the library's reductions, then one kernel --------------------

    def batch_norm(self, Z, gamma, beta, eps, act, slope, Xhat, Y, A, stats):
        xp = self.xp
        rows, cols = Z.shape
        xp.mean(Z, axis=0, out=stats[0])
        centred = Z - stats[0]
        xp.mean(centred * centred, axis=0, out=stats[1])
        xp.add(stats[1], eps, out=stats[2])
        xp.sqrt(stats[2], out=stats[2])
        xp.divide(1.0, stats[2], out=stats[2])
        args = (Z, stats, gamma, beta, Xhat, Y, A, rows, cols, act.code, slope)
        self._run("batch_norm_apply", Z, Z.size, *args)

    def batch_norm_backward(self, dA, saved, act, slope, Xhat, gamma, stats, dgamma, dbeta, dX):
        xp = self.xp
        self.act_backward(dA, saved, act, slope)
        xp.sum(dA, axis=0, out=dbeta)
        xp.sum(dA * Xhat, axis=0, out=dgamma)
        if dX is not None:
            rows, cols = dA.shape
            args = (dA, Xhat, gamma, stats, dgamma, dbeta, dX, rows, cols)
            self._run("batch_norm_dx", dX, dX.size, *args)

    def running_average(self, old, batch, momentum, scale, out):
        xp = self.xp
        xp.add(old * (1.0 - momentum), batch * (momentum * scale), out=out)

    # --- losses -----------------------------------------------------------------------------

    def _loss(self, name: str, Z: Any, y: Any, scale: float) -> Any:
        rows, cols = Z.shape
        key = str(Z.dtype)
        rowloss = self._rowloss.get(key)
        if rowloss is None or rowloss.shape[0] < rows:
            rowloss = self._rowloss[key] = self.xp.empty(rows, Z.dtype)
        rowloss = rowloss[:rows]
        self._run(name, Z, rows, Z, y, rowloss, rows, cols, scale)
        return self.xp.sum(rowloss)

    def softmax_cross_entropy(self, Z, y, scale):
        return self._loss("softmax_cross_entropy", Z, y, scale)

    def sigmoid_cross_entropy(self, Z, y, scale):
        return self._loss("sigmoid_cross_entropy", Z, y, scale)

    # --- penalties: rare, so plain array operations ------------------------------------------

    def l2_penalty(self, W, gW, strength):
        xp = self.xp
        gW += W * strength
        return 0.5 * strength * xp.dot(W, W)

    def l1_penalty(self, W, gW, strength):
        xp = self.xp
        gW += xp.sign(W) * strength
        return strength * xp.sum(xp.abs(W))

    # --- optimizers: one kernel over all parameters -------------------------------------------

    def adam(self, theta, g, m, v, count, h):
        tiny = float(np.finfo(str(theta.dtype)).tiny)
        l2 = 0.0 if h.decoupled else h.weight_decay  # Adam's L2 goes into the gradient
        decay = 1.0 - h.learning_rate * h.weight_decay if h.decoupled else 1.0  # AdamW's
        n = theta.size
        self._run("adam", theta, n, theta, g, m, v, n, *h.scalars(count), tiny, l2, decay)

    def sgd(self, theta, g, trace, h):
        n = theta.size
        tiny = float(np.finfo(str(theta.dtype)).tiny)
        use = trace is not None
        args = (h.learning_rate, h.momentum, int(use), int(h.nesterov), h.weight_decay, tiny)
        self._run("sgd", theta, n, theta, g, trace, n, *args)

    # --- the loader's batch -----------------------------------------------------------------

    def gather(self, X, rows, conversion, out):
        kind, extra = conversion
        n_rows, n_features = out.shape
        args = (X, rows, *extra, out, n_rows, n_features)
        self._run(f"gather_{kind}", out, out.size, *args)
