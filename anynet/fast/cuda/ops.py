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
