"""The stages of a convolutional network: convolution, pooling and the flatten into dense stages.

Inside the fused step images are channels last, ``(N, H, W, C)``: a convolution's im2col rows
are then contiguous runs of the input, its one matrix product ``cols @ W`` gives the output
already channels last, and its bias and activation are the dense stage's epilogue on the
``(N * H * W, C)`` matrix, unchanged. The step's input comes channels first, as the engine's
:class:`~anynet.nn.Conv2D` takes it: the first convolution reads it through a transposed view.
:class:`Flatten` goes back to the engine's ``(C, H, W)`` feature order, so the dense stage after
it reads the same weight rows as the generic engine does.

The parameters stay in the engine's (PyTorch's) layout in the flat buffer; a convolution
permutes its small weight into the ``(kH * kW * C_in, C_out)`` the product wants on every step,
and its gradient back (measured: under 1% of a step).
"""

from __future__ import annotations

from typing import Any

from anynet.fast.activations import IDENTITY
from anynet.fast.ops import Ops
from anynet.fast.stages import Epilogue

__all__ = ["Conv", "Flatten", "Pool"]

Array = Any


def _out_size(what: str, size: tuple, kernel: tuple, stride: tuple) -> tuple[int, int]:
    if size[0] < kernel[0] or size[1] < kernel[1]:
        raise ValueError(
            f"{what}: the input's {size[0]}x{size[1]} (padding included) is smaller than the "
            f"{kernel[0]}x{kernel[1]} window"
        )
    return ((size[0] - kernel[0]) // stride[0] + 1, (size[1] - kernel[1]) // stride[1] + 1)


class Conv:
    """A :class:`~anynet.nn.Conv2D` layer and its epilogue, channels last.

    Parameters
    ----------
    weight : str
        The name of ``W`` ``(C_out, C_in, kH, kW)`` in the parameters.
    c_in, c_out : int
    kernel, stride : (int, int)
    pads : (int, int, int, int)
        Zeros around the input: top, bottom, left, right.
    epilogue : Epilogue
        Bias and activation (no dropout: the plan keeps dropout to flat features).
    channels_first : bool
        Whether the input comes as the step's ``(N, C, H, W)`` (the first stage), rather than
        from another image stage.
    """

    statistics: tuple[str, ...] = ()
    needs_rng = False
    uses = ("copy", "im2col", "col2im")

    def __init__(self, weight, c_in, c_out, kernel, stride, pads, epilogue, *, channels_first):
        self.weight = weight
        self.c_in, self.c_out = c_in, c_out
        self.kernel, self.stride, self.pads = kernel, stride, pads
        self.epilogue = epilogue
        self.channels_first = channels_first
        self.what = f"Conv2D({c_in}, {c_out}, kernel_size={kernel})"

    def allocate(self, xp: Any, batch: int, shape: tuple, dtype: Any, *, input_grad: bool):
        """Buffers for batches of up to ``batch`` images of ``shape`` (one sample's); returns
        the output's sample shape ``(Ho, Wo, C_out)``."""
        if len(shape) != 3:
            raise ValueError(
                f"{self.what} expects images of shape (batch, {self.c_in}, height, width); got "
                f"samples of shape {shape}"
            )
        C, H, W = shape if self.channels_first else (shape[2], shape[0], shape[1])
        if C != self.c_in:
            raise ValueError(f"{self.what} expects {self.c_in} input channels; got {C}")
        top, bottom, left, right = self.pads
        size = (H + top + bottom, W + left + right)
        self.H, self.W = H, W
        self.Ho, self.Wo = _out_size(self.what, size, self.kernel, self.stride)
        kh, kw = self.kernel
        K, rows = kh * kw * C, batch * self.Ho * self.Wo
        self.cols = xp.empty((rows, K), dtype)
        self.Wm = xp.empty((K, self.c_out), dtype)
        self.dWm = xp.empty((K, self.c_out), dtype)
        self.Z = xp.empty((rows, self.c_out), dtype)
        self.A = self.Z if self.epilogue.activation.saved == "a" else xp.empty_like(self.Z)
        self.dcols = xp.empty((rows, K), dtype) if input_grad else None
        self.dX = xp.empty((batch, H, W, C), dtype) if input_grad else None
        return (self.Ho, self.Wo, self.c_out)

    def _windows(self, cols: Array, B: int) -> Array:
        return cols.reshape(B, self.Ho, self.Wo, *self.kernel, self.c_in)

    def forward(self, ops: Ops, X: Array, params: dict, rng: Any) -> Array:
        e, B = self.epilogue, X.shape[0]
        rows = B * self.Ho * self.Wo
        if self.channels_first:
            X = X.transpose(0, 2, 3, 1)  # a view; im2col reads any strides
        cols = self.cols[:rows]
        ops.im2col(X, self.pads, self.kernel, self.stride, self._windows(cols, B))
        kh, kw = self.kernel
        # Wm[(i, j, c), o] = W[o, c, i, j]: the order of the im2col row.
        ops.copy(params[self.weight].transpose(2, 3, 1, 0), self.Wm.reshape(kh, kw, -1, self.c_out))
        Z = self.Z[:rows]
        A = Z if self.A is self.Z else self.A[:rows]
        ops.matmul(cols, self.Wm, Z)
        ops.bias_act(Z, params[e.bias] if e.bias else None, e.activation, e.slope, A)
        return A.reshape(B, self.Ho, self.Wo, self.c_out)

    def infer(self, ops: Ops, X: Array, params: dict) -> Array:
        return self.forward(ops, X, params, None)  # no dropout, no statistics: the same

    def backward(self, ops: Ops, dY: Array, params: dict, grads: dict) -> Array | None:
        e, B = self.epilogue, dY.shape[0]
        rows = B * self.Ho * self.Wo
        dZ = dY.reshape(rows, self.c_out)  # dY is a stage's own contiguous buffer: a view
        saved = self.A[:rows] if e.activation.saved == "a" else self.Z[:rows]
        ops.act_backward(dZ, saved, e.activation, e.slope)
        cols = self.cols[:rows]
        ops.matmul(cols.T, dZ, self.dWm)
        kh, kw = self.kernel
        ops.copy(self.dWm.reshape(kh, kw, -1, self.c_out).transpose(3, 2, 0, 1), grads[self.weight])
        if e.bias:
            ops.bias_grad(dZ, grads[e.bias])
        if self.dX is None:
            return None
        dcols = self.dcols[:rows]
        ops.matmul(dZ, self.Wm.T, dcols)
        dX = self.dX[:B]
        ops.col2im(self._windows(dcols, B), self.pads, self.kernel, self.stride, dX)
        return dX


class Pool:
    """A :class:`~anynet.nn.MaxPool2D` (``kind='max'``) or :class:`~anynet.nn.AvgPool2D`
    (``'avg'``), channels last; :class:`~anynet.nn.GlobalAvgPool2D` is the average pool whose
    window is the whole image (``kernel=None``), and gives flat features ``(N, C)``."""

    statistics: tuple[str, ...] = ()
    needs_rng = False

    def __init__(self, kind: str, kernel: tuple | None, stride: tuple | None):
        self.kind, self.kernel, self.stride = kind, kernel, stride
        self.uses = (
            ("max_pool", "max_pool_backward")
            if kind == "max"
            else ("avg_pool", "avg_pool_backward")
        )

    def allocate(self, xp: Any, batch: int, shape: tuple, dtype: Any, *, input_grad: bool):
        H, W, C = shape
        self.global_ = self.kernel is None
        kernel = (H, W) if self.global_ else self.kernel
        self.window, self.step = kernel, (kernel if self.global_ else self.stride)
        what = "GlobalAvgPool2D" if self.global_ else f"{self.kind.title()}Pool2D({kernel})"
        self.Ho, self.Wo = _out_size(what, (H, W), self.window, self.step)
        out = (batch, self.Ho, self.Wo, C)
        self.Y = xp.empty(out, dtype)
        self.arg = xp.empty(out, xp.uint8) if self.kind == "max" else None
        self.dX = xp.empty((batch, H, W, C), dtype) if input_grad else None
        return (C,) if self.global_ else (self.Ho, self.Wo, C)

    def forward(self, ops: Ops, X: Array, params: dict, rng: Any) -> Array:
        B = X.shape[0]
        Y = self.Y[:B]
        if self.kind == "max":
            ops.max_pool(X, self.window, self.step, Y, self.arg[:B])
        else:
            ops.avg_pool(X, self.window, self.step, Y)
        return Y.reshape(B, -1) if self.global_ else Y

    def infer(self, ops: Ops, X: Array, params: dict) -> Array:
        return self.forward(ops, X, params, None)

    def backward(self, ops: Ops, dY: Array, params: dict, grads: dict) -> Array | None:
        B = dY.shape[0]
        if self.dX is None:
            return None
        dY = dY.reshape(self.Y[:B].shape)
        dX = self.dX[:B]
        if self.kind == "max":
            ops.max_pool_backward(dY, self.arg[:B], self.window, self.step, dX)
        else:
            ops.avg_pool_backward(dY, self.window, self.step, dX)
        return dX


class Flatten:
    """A :class:`~anynet.nn.Flatten` of channels-last images into the engine's ``(C, H, W)``
    feature order, and the dropout that may follow it (its draw of the flat shape, as the
    generic Dropout layer draws it)."""

    statistics: tuple[str, ...] = ()
    uses = ("copy",)

    def __init__(self, dropout: float = 0.0):
        self.epilogue = Epilogue(None, IDENTITY, 0.0, dropout)

    @property
    def needs_rng(self) -> bool:
        return bool(self.epilogue.dropout)

    def allocate(self, xp: Any, batch: int, shape: tuple, dtype: Any, *, input_grad: bool):
        self.shape = shape
        H, W, C = shape
        n = H * W * C
        self.Y = xp.empty((batch, n), dtype)
        self.D = xp.empty((batch, n), dtype) if self.epilogue.dropout else None
        self.keep = xp.empty((batch, n), bool) if self.epilogue.dropout else None
        self.dX = xp.empty((batch, H, W, C), dtype) if input_grad else None
        return (n,)

    def forward(self, ops: Ops, X: Array, params: dict, rng: Any) -> Array:
        B, (H, W, C) = X.shape[0], self.shape
        Y = self.Y[:B]
        ops.copy(X.transpose(0, 3, 1, 2), Y.reshape(B, C, H, W))
        p = self.epilogue.dropout
        if not p:
            return Y
        u = rng.uniform(Y.shape, str(Y.dtype))
        ops.dropout(Y, u, p, self.D[:B], self.keep[:B])
        return self.D[:B]

    def infer(self, ops: Ops, X: Array, params: dict) -> Array:
        B, (H, W, C) = X.shape[0], self.shape
        Y = self.Y[:B]
        ops.copy(X.transpose(0, 3, 1, 2), Y.reshape(B, C, H, W))
        return Y  # no dropout

    def backward(self, ops: Ops, dY: Array, params: dict, grads: dict) -> Array | None:
        B, (H, W, C) = dY.shape[0], self.shape
        if self.dX is None:
            return None
        p = self.epilogue.dropout
        if p:
            # The identity never reads `saved`, but a kernel is passed it: a valid array.
            ops.act_backward(dY, dY, IDENTITY, 0.0, self.keep[:B], p)
        dX = self.dX[:B]
        ops.copy(dY.reshape(B, C, H, W).transpose(0, 2, 3, 1), dX)
        return dX
