"""Convolution and pooling layers for images ``(N, C, H, W)``, in Array API functions only.

The standard has no convolution, no strided-window view and no scatter-add, so everything here
is built from strided slices (basic indexing with a step, which the standard has):

* padding is zeros joined on with ``concat`` (no array-api-extra dependency);
* :class:`Conv2D` stacks one slice per kernel offset into im2col "columns" and does one
  matrix product; backprop gets ``dW`` from a product with those columns and ``dX`` from a
  col2im that adds each kernel offset's slice into a zero array;
* the pools take the same per-offset slices.

The only mutation is ``dX[window] = dX[window] + V`` on a zero array this module has just
allocated (``__setitem__`` with slices is in the standard; array-api-strict, NumPy, CuPy and
PyTorch allow it). Libraries whose arrays are immutable (JAX) would need a functional col2im.

Layouts are PyTorch's: ``W`` is ``(C_out, C_in, kH, kW)`` and ``b`` is ``(C_out,)``, so weights
copy between the two libraries unchanged. There is no dilation, no groups and no ceil mode.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from anynet.checks import check_int, fail
from anynet.nn.init import get_initializer
from anynet.nn.layers import Layer

__all__ = ["AvgPool2D", "Conv2D", "GlobalAvgPool2D", "MaxPool2D"]

Array = Any
Pair = tuple[int, int]


def _pair(name: str, value: Any, minimum: int) -> Pair:
    """``value``, an integer or two (height, width), as ``(height, width)``."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise fail(name, f"an integer >= {minimum} or a pair of them", value)
        return (
            check_int(name, value[0], minimum=minimum),
            check_int(name, value[1], minimum=minimum),
        )
    number = check_int(name, value, minimum=minimum)
    return (number, number)


def _json(pair: Pair) -> int | list[int]:
    """A pair as a config stores it: one integer when both agree (so JSON round trips)."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def _check_images(layer: Layer, X: Array, channels: int | None = None) -> None:
    """Refuse anything but a rank-4 ``(N, C, H, W)`` batch (with ``channels`` channels)."""
    if X.ndim != 4 or (channels is not None and X.shape[1] != channels):
        want = f"(batch, {channels if channels is not None else 'channels'}, height, width)"
        raise ValueError(f"{layer!r} expects images of shape {want}; got {tuple(X.shape)}")


def _out_size(layer: Layer, size: Pair, kernel: Pair, stride: Pair) -> Pair:
    """Output height and width: how many ``kernel`` windows fit in ``size``, ``stride`` apart
    (a window that would run past the edge is dropped, as PyTorch does)."""
    if size[0] < kernel[0] or size[1] < kernel[1]:
        raise ValueError(
            f"{layer!r}: the input's {size[0]}x{size[1]} (padding included) is smaller than "
            f"the {kernel[0]}x{kernel[1]} window"
        )
    return ((size[0] - kernel[0]) // stride[0] + 1, (size[1] - kernel[1]) // stride[1] + 1)


def _window(i: int, j: int, out: Pair, stride: Pair) -> tuple[slice, ...]:
    """The index of what kernel offset ``(i, j)`` sees at every output position: the input
    rows ``i, i + sh, ..., i + sh * (Ho - 1)`` and likewise the columns."""
    (Ho, Wo), (sh, sw) = out, stride
    return (
        slice(None),
        slice(None),
        slice(i, i + sh * (Ho - 1) + 1, sh),
        slice(j, j + sw * (Wo - 1) + 1, sw),
    )


def _windows(X: Array, kernel: Pair, out: Pair, stride: Pair, xp: Any, *, axis: int = 2) -> Array:
    """Every window of ``X`` ``(N, C, H, W)`` as ``(N, C, kH * kW, Ho, Wo)``, the kernel
    offsets in row-major order (on ``axis``: 1 gives ``(N, kH * kW, C, Ho, Wo)``)."""
    offsets = [(i, j) for i in range(kernel[0]) for j in range(kernel[1])]
    return xp.stack([X[_window(i, j, out, stride)] for i, j in offsets], axis=axis)


def _scatter_windows(
    parts: list[Array], shape: tuple[int, ...], kernel: Pair, stride: Pair, xp: Any
):
    """The adjoint of :func:`_windows` (col2im): ``parts[k]`` ``(N, C, Ho, Wo)`` for each
    kernel offset ``k`` added back into a zero array of ``shape``, overlaps summing."""
    out = (parts[0].shape[2], parts[0].shape[3])
    dX = xp.zeros(shape, dtype=parts[0].dtype, device=device(parts[0]))
    for k, part in enumerate(parts):
        where = _window(k // kernel[1], k % kernel[1], out, stride)
        # No scatter-add in the standard: a read, an add and a slice assignment instead.
        dX[where] = dX[where] + part
    return dX


def _pad(X: Array, pads: tuple[int, int, int, int], xp: Any) -> Array:
    """``X`` with ``(top, bottom, left, right)`` rows and columns of zeros around it."""
    top, bottom, left, right = pads
    N, C, H, W = X.shape

    def zeros(h: int, w: int) -> Array:
        return xp.zeros((N, C, h, w), dtype=X.dtype, device=device(X))

    if top or bottom:
        X = xp.concat(
            [part for part in (zeros(top, W), X, zeros(bottom, W)) if part.shape[2]], axis=2
        )
    if left or right:
        H = X.shape[2]
        X = xp.concat(
            [part for part in (zeros(H, left), X, zeros(H, right)) if part.shape[3]], axis=3
        )
    return X


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library) of images.

    ``X`` ``(N, C_in, H, W)`` gives ``Y`` ``(N, C_out, Ho, Wo)`` with
    ``Y[n, o, y, x] = b[o] + sum over c, i, j of W[o, c, i, j] * Xpad[n, c, y*sh + i, x*sw + j]``
    and ``Ho = (H + pad_top + pad_bottom - kH) // sh + 1`` (likewise ``Wo``), as
    ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels.
    kernel_size : int or (int, int)
        Kernel height and width.
    stride : int or (int, int)
        Step between windows.
    padding : int, (int, int), 'valid' or 'same'
        Zeros added on each side (``(pad_h, pad_w)``: that many top and bottom, left and right).
        ``'valid'`` is 0. ``'same'`` keeps ``Ho, Wo = H, W``: it needs stride 1 (strided
        convolutions are refused, as PyTorch refuses them) and pads ``k - 1`` in all, half on
        each side; for an even kernel the extra row and column go at the bottom and right, as
        PyTorch's ``padding='same'`` does.
    bias : bool
        Whether to add ``b``.
    init, bias_init : str or callable
        Initializers from :mod:`anynet.nn.init`, drawn with ``fan_in = C_in * kH * kW`` and
        ``fan_out = C_out * kH * kW``.
    """

    has_params = True

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int | Pair,
        *,
        stride: int | Pair = 1,
        padding: int | Pair | str = 0,
        bias: bool = True,
        init: str = "glorot_uniform",
        bias_init: str = "zeros",
    ):
        self.c_in = check_int("c_in", c_in, minimum=1)
        self.c_out = check_int("c_out", c_out, minimum=1)
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise fail("padding", "an integer >= 0, a pair of them, 'same' or 'valid'", padding)
            if padding == "same" and self.stride != (1, 1):
                raise fail(
                    "padding", "an integer or 'valid' for a strided convolution", padding,
                    "padding='same' needs stride=1 (as in PyTorch); give the padding as numbers",
                )  # fmt: skip
            self.padding: Pair | str = padding
        else:
            self.padding = _pair("padding", padding, 0)
        self.bias = bool(bias)
        get_initializer(init), get_initializer(bias_init)  # fail now, not at init time
        self.init = init
        self.bias_init = bias_init

    def _pads(self) -> tuple[int, int, int, int]:
        """Zeros to add: (top, bottom, left, right)."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            (kh, kw) = self.kernel_size
            return ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)
        (ph, pw) = self.padding
        return (ph, ph, pw, pw)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"W": (self.c_out, self.c_in, *self.kernel_size)}
        if self.bias:
            shapes["b"] = (self.c_out,)
        return shapes

    def init_params(self, *, rng, backend, dtype="float32"):
        area = self.kernel_size[0] * self.kernel_size[1]
        fans = {"fan_in": self.c_in * area, "fan_out": self.c_out * area}
        return {
            name: get_initializer(self.init if name == "W" else self.bias_init)(
                shape, rng=rng, backend=backend, dtype=dtype, **fans
            )
            for name, shape in self.param_shapes().items()
        }

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        _check_images(self, X, self.c_in)
        xp = array_namespace(X) if xp is None else xp
        N, _, H, W = X.shape
        pads = self._pads()
        Xp = _pad(X, pads, xp)
        Ho, Wo = out = _out_size(self, tuple(Xp.shape[2:]), self.kernel_size, self.stride)
        patch = self.c_in * self.kernel_size[0] * self.kernel_size[1]
        M = N * Ho * Wo
        # Columns (C_in * kH * kW, N * Ho * Wo), rows ordered channel, kernel row, kernel
        # column (the order of W's reshape to (C_out, patch)) and the batch inside the columns:
        # the whole convolution is one matrix product. With the batch outside (N, patch, Ho*Wo),
        # NumPy ran N small products, up to 20x slower on a busy machine.
        Xc = xp.permute_dims(Xp, (1, 0, 2, 3))  # (C_in, N, H, W): a view where it can be
        windows = _windows(Xc, self.kernel_size, out, self.stride, xp, axis=1)
        cols = xp.reshape(windows, (patch, M))
        Wm = xp.reshape(params["W"], (self.c_out, patch))
        Ym = Wm @ cols
        if self.bias:
            Ym = Ym + xp.reshape(params["b"], (self.c_out, 1))
        # (N, C_out, Ho, Wo) as a view of the product in NumPy; a following convolution's own
        # permute_dims makes it contiguous again.
        Y = xp.permute_dims(xp.reshape(Ym, (self.c_out, N, Ho, Wo)), (1, 0, 2, 3))

        def backprop(dY):
            dYm = xp.reshape(xp.permute_dims(dY, (1, 0, 2, 3)), (self.c_out, M))
            grads = {"W": xp.reshape(dYm @ xp.matrix_transpose(cols), self.param_shapes()["W"])}
            if self.bias:
                grads["b"] = xp.sum(dYm, axis=1)
            if not input_grad:  # the first layer: nobody wants dX, skip the col2im
                return None, grads
            dcols = xp.reshape(Wm.T @ dYm, (self.c_in, patch // self.c_in, N, Ho, Wo))
            parts = [dcols[:, k, :, :, :] for k in range(dcols.shape[1])]
            shape = (self.c_in, N, Xp.shape[2], Xp.shape[3])
            dXc = _scatter_windows(parts, shape, self.kernel_size, self.stride, xp)
            top, _, left, _ = pads
            return xp.permute_dims(dXc[:, :, top : top + H, left : left + W], (1, 0, 2, 3)), grads

        return Y, backprop

    def get_config(self):
        return {
            "c_in": self.c_in,
            "c_out": self.c_out,
            "kernel_size": _json(self.kernel_size),
            "stride": _json(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else _json(self.padding),
            "bias": self.bias,
            "init": self.init,
            "bias_init": self.bias_init,
        }


class _Pool2D(Layer):
    """Shared by the window pools: a kernel size and a stride (the kernel size by default);
    no padding, and a window that would run past the edge is dropped, as in PyTorch."""

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None):
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair("stride", stride, 1)

    def _windows(self, X: Array, xp: Any) -> tuple[Array, Pair]:
        _check_images(self, X)
        out = _out_size(self, tuple(X.shape[2:]), self.kernel_size, self.stride)
        return _windows(X, self.kernel_size, out, self.stride, xp), out

    def get_config(self):
        return {"kernel_size": _json(self.kernel_size), "stride": _json(self.stride)}


class MaxPool2D(_Pool2D):
    """The maximum of each ``kernel_size`` window: ``(N, C, H, W)`` to ``(N, C, Ho, Wo)``
    with ``Ho = (H - kH) // sh + 1``, as ``torch.nn.functional.max_pool2d``.

    Ties: the gradient goes to the *first* maximum of a window in row-major order (top row
    first, left to right), every time and on every backend, as ``argmax`` is specified to
    break them; PyTorch's CPU kernel picks the same one.
    """

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        xp = array_namespace(X) if xp is None else xp
        windows, _ = self._windows(X, xp)
        Y = xp.max(windows, axis=2)
        # Training keeps only which offset won (the standard's argmax returns the first of
        # equal maxima), not the kH * kW windows: backprop needs nothing else. Evaluation
        # finds it only if asked for a gradient: predicting skipped a third of its time.
        first = xp.argmax(windows, axis=2) if train else None
        shape, area = tuple(X.shape), windows.shape[2]

        def backprop(dY):
            winners = first if first is not None else xp.argmax(windows, axis=2)
            zero = xp.zeros_like(dY)
            routed = [xp.where(winners == k, dY, zero) for k in range(area)]
            return _scatter_windows(routed, shape, self.kernel_size, self.stride, xp), {}

        return Y, backprop


class AvgPool2D(_Pool2D):
    """The mean of each ``kernel_size`` window: ``(N, C, H, W)`` to ``(N, C, Ho, Wo)``, as
    ``torch.nn.functional.avg_pool2d`` (no padding, so every window counts ``kH * kW``)."""

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        xp = array_namespace(X) if xp is None else xp
        windows, _ = self._windows(X, xp)
        Y = xp.mean(windows, axis=2)
        shape, area = tuple(X.shape), windows.shape[2]

        def backprop(dY):
            return _scatter_windows(
                [dY / area] * area, shape, self.kernel_size, self.stride, xp
            ), {}

        return Y, backprop


class GlobalAvgPool2D(Layer):
    """The mean over height and width: ``(N, C, H, W)`` to ``(N, C)``, as
    ``torch.nn.functional.adaptive_avg_pool2d(X, 1)`` flattened; the usual bridge from the
    last convolution to a :class:`~anynet.nn.Dense` classifier."""

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        _check_images(self, X)
        xp = array_namespace(X) if xp is None else xp
        N, C, H, W = X.shape

        def backprop(dY):
            # Each input pixel gets 1 / (H * W) of its channel's gradient; a real array, not
            # a broadcast view, so later code may write to it.
            return xp.zeros_like(X) + xp.reshape(dY / (H * W), (N, C, 1, 1)), {}

        return xp.mean(X, axis=(2, 3)), backprop
