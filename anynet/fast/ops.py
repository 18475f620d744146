"""The operations a fused training step is made of, as one interface with a class per kernel
family.

A fused step (:mod:`anynet.fast.fused`) calls only these methods. Each works in place on
preallocated, C-contiguous buffers of the family's array library, and each is the twin of
generic engine code (:mod:`anynet.nn`), tested equal to it. The families:

- :class:`~anynet.fast.numpy_ops.NumpyOps`: NumPy passes over the buffers;
- :class:`~anynet.fast.numba_ops.NumbaOps`: the same, with numba kernels where one compiled
  pass beats several NumPy ones;
- :class:`~anynet.fast.cuda.ops.CudaOps`: CUDA kernels, one launch per element-wise chain,
  on CuPy arrays (and, in the tests, on NumPy arrays with the kernels built for the host).

A new stage of the fused step (a convolution, say) adds the few operations it needs here and
in each family; the step itself stays one.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from anynet.fast.activations import Activation

__all__ = ["AdamHyper", "Ops", "SGDHyper", "optimizer_hyper"]

Array = Any


@dataclass(frozen=True)
class AdamHyper:
    """Adam's hyper-parameters, as :func:`anynet.nn.adam` takes them (``decoupled``: AdamW)."""

    learning_rate: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float = 0.0
    decoupled: bool = False

    def scalars(self, count: int) -> tuple[float, float, float, float]:
        """The per-step scalars every family's update uses, for step ``count`` (1 on the first
        step): ``(1 - beta1, 1 - beta2, step, eps')``.

        The update is bound by memory bandwidth, so it is rearranged to take fewer passes:
        ``m += (1 - beta1) (g - m)``, likewise ``v``, and with the bias corrections ``c1``,
        ``c2``: ``lr c1 m / (c2 sqrt(v) + eps) = step m / (sqrt(v) + eps')`` with
        ``step = lr c1 / c2`` and ``eps' = eps / c2``.
        """
        c1 = 1.0 / (1.0 - self.beta1**count)
        c2 = 1.0 / math.sqrt(1.0 - self.beta2**count)
        return 1.0 - self.beta1, 1.0 - self.beta2, self.learning_rate * c1 / c2, self.eps / c2


@dataclass(frozen=True)
class SGDHyper:
    """SGD's hyper-parameters, as :func:`anynet.nn.sgd` takes them."""

    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


def optimizer_hyper(spec: tuple[str, dict[str, Any]]) -> AdamHyper | SGDHyper:
    """The hyper-parameters of a built-in optimizer, from its ``spec``."""
    kind, hyper = spec
    if kind == "sgd":
        return SGDHyper(**hyper)
    return AdamHyper(**hyper, decoupled=kind == "adamw")


class Ops:
    """The operations of a fused step. Subclasses implement every method, except the few
    written here in terms of the others and ``xp`` (:meth:`batch_norm_inference`).

    Attributes
    ----------
    name : str
        The family, as a step reports it (``'cpu'``, ``'cpu + numba'``, ``'cuda'``).
    xp : module
        The array library of the buffers (``numpy``, ``cupy``); a fused step allocates its
        buffers with it.

    Notes
    -----
    Optimizer states are flushed to zero once subnormal. A parameter whose gradient stays zero
    (a weight into a dead ReLU unit) has its first moment shrink by ``beta1`` a step into the
    subnormal range, where it stays (0.9 of the smallest subnormal rounds back to it); on x86
    every operation that touches a subnormal takes a microcode assist, and ~17,600 such moments
    made each epoch of the benchmark's MLP 1.9x slower. A moment below float32's 1.2e-38 moves
    a weight by less than 1e-32; NaN fails the comparison and is kept, so it still surfaces.
    """

    name = "ops"
    xp: Any = None

    def context(self) -> Any:
        """What a step runs inside: the device made current, or floating-point warnings
        silenced (a non-finite loss is the training loop's to report, once, by step)."""
        return contextlib.nullcontext()

    # --- linear algebra -------------------------------------------------------------------

    def matmul(self, A: Array, B: Array, out: Array) -> None:
        """``out = A @ B`` (``A``, ``B`` may be transposed views)."""
        raise NotImplementedError

    def bias_grad(self, dZ: Array, out: Array) -> None:
        """``out`` = the column sums of ``dZ`` (the gradient of a bias added to every row)."""
        raise NotImplementedError

    # --- the element-wise epilogue of a linear stage ---------------------------------------

    def bias_act(self, Z: Array, b: Array | None, act: Activation, slope: float, A: Array) -> None:
        """``Z += b`` (unless ``b`` is None, broadcast along the rows), then ``A = act(Z)``.
        ``A`` may be ``Z`` itself, for activations whose derivative reads their output."""
        raise NotImplementedError

    def dropout(self, A: Array, u: Array, p: float, out: Array, keep: Array) -> None:
        """Inverted dropout as :class:`anynet.nn.Dropout` draws it: ``keep = u >= p`` (a bool
        buffer), ``out = A * keep / (1 - p)``."""
        raise NotImplementedError

    def act_backward(
        self,
        dA: Array,
        saved: Array,
        act: Activation,
        slope: float,
        keep: Array | None = None,
        p: float = 0.0,
    ) -> None:
        """``dA`` becomes the gradient at the activation's input: through dropout's ``keep``
        mask (if given), then the activation's derivative, which reads ``saved`` (its output or
        its input, as ``act.saved`` says)."""
        raise NotImplementedError

    def copy(self, src: Array, out: Array) -> None:
        """``out[...] = src``, ``src`` of any strides (a transposed view): a layout change."""
        raise NotImplementedError

    # --- images, channels last: (N, H, W, C) -----------------------------------------------
    # ``pads`` is (top, bottom, left, right), ``kernel`` and ``stride`` (height, width) pairs.

    def im2col(self, X: Array, pads: tuple, kernel: tuple, stride: tuple, cols: Array) -> None:
        """The windows of ``X`` ``(N, H, W, C)`` (any strides), zero-padded by ``pads``, into
        ``cols`` ``(N, Ho, Wo, kH, kW, C)``: the rows of a convolution's one matrix product."""
        raise NotImplementedError

    def col2im(self, dcols: Array, pads: tuple, kernel: tuple, stride: tuple, dX: Array) -> None:
        """The adjoint of :meth:`im2col`: ``dX`` ``(N, H, W, C)`` = the sum of every window's
        ``dcols`` ``(N, Ho, Wo, kH, kW, C)`` at the input position it came from (padding
        dropped)."""
        raise NotImplementedError

    def max_pool(self, X: Array, kernel: tuple, stride: tuple, Y: Array, arg: Array) -> None:
        """``Y`` ``(N, Ho, Wo, C)`` = the maximum of each window of ``X``, and ``arg`` (uint8)
        which offset of the window (row-major) holds it: the first of equal maxima, as
        :class:`anynet.nn.MaxPool2D` routes the gradient."""
        raise NotImplementedError

    def max_pool_backward(
        self, dY: Array, arg: Array, kernel: tuple, stride: tuple, dX: Array
    ) -> None:
        """``dX`` = ``dY`` routed to each window's ``arg`` position (summed where windows
        overlap; zero where no window won)."""
        raise NotImplementedError

    def avg_pool(self, X: Array, kernel: tuple, stride: tuple, Y: Array) -> None:
        """``Y`` = the mean of each window of ``X``."""
        raise NotImplementedError

    def avg_pool_backward(self, dY: Array, kernel: tuple, stride: tuple, dX: Array) -> None:
        """``dX`` = each window's ``dY / (kH * kW)`` spread over the window."""
        raise NotImplementedError

    # --- batch normalization over the rows of (M, C) ---------------------------------------

    def batch_norm(
        self,
        Z: Array,
        gamma: Array,
        beta: Array,
        eps: float,
        act: Activation,
        slope: float,
        Xhat: Array,
        Y: Array,
        A: Array,
        stats: Array,
    ) -> None:
        """Twin of :class:`anynet.nn.BatchNorm`'s training forward on ``Z`` ``(M, C)``:
        ``stats`` ``(3, C)`` becomes the batch mean, biased variance and ``1 / sqrt(var +
        eps)``; ``Xhat`` the normalized ``Z``; ``Y = Xhat * gamma + beta`` and ``A = act(Y)``
        (``A`` may be ``Y``, as for :meth:`bias_act`)."""
        raise NotImplementedError

    def batch_norm_backward(
        self,
        dA: Array,
        saved: Array,
        act: Activation,
        slope: float,
        Xhat: Array,
        gamma: Array,
        stats: Array,
        dgamma: Array,
        dbeta: Array,
        dX: Array | None,
    ) -> None:
        """``dA`` through the activation (as :meth:`act_backward`; ``dA`` is overwritten),
        then ``dgamma``, ``dbeta`` and, unless ``dX`` is None, chainer's closed form
        ``dX = gamma inv_std (dY - (Xhat dgamma + dbeta) / M)``."""
        raise NotImplementedError

    def batch_norm_inference(
        self,
        Z: Array,
        gamma: Array,
        beta: Array,
        mean: Array,
        var: Array,
        eps: float,
        act: Activation,
        slope: float,
        Y: Array,
        A: Array,
    ) -> None:
        """Twin of :class:`anynet.nn.BatchNorm`'s evaluation forward on ``Z`` ``(M, C)``:
        ``Y = (Z - mean) / sqrt(var + eps) * gamma + beta`` with the running statistics, and
        ``A = act(Y)`` (``A`` may be ``Y``).

        Every family has this one: the statistics fold into one scale and one shift per
        column, so it is a product and :meth:`bias_act`; it runs only when a model is scored,
        where one pass more than a kernel's costs little."""
        xp = self.xp
        scale = gamma / xp.sqrt(var + eps)
        xp.multiply(Z, scale, out=Y)
        self.bias_act(Y, beta - mean * scale, act, slope, A)

    def running_average(
        self, old: Array, batch: Array, momentum: float, scale: float, out: Array
    ) -> None:
        """``out = old * (1 - momentum) + batch * (momentum * scale)``: a running statistic
        as :class:`anynet.nn.BatchNorm` updates it (``scale``: the variance's ``m / (m - 1)``)."""
        raise NotImplementedError

    # --- losses: the logits buffer becomes the gradient -------------------------------------

    def softmax_cross_entropy(self, Z: Array, y: Array, scale: float) -> Any:
        """Twin of :func:`anynet.nn.softmax_cross_entropy` for int64 labels ``y``: ``Z``
        (logits) becomes ``(softmax(Z) - one_hot(y)) * scale``; returns the loss (summed over
        the rows, times ``scale``), as a number or a 0-d device array."""
        raise NotImplementedError

    def sigmoid_cross_entropy(self, Z: Array, y: Array, scale: float) -> Any:
        """Twin of :func:`anynet.nn.sigmoid_binary_cross_entropy` for int64 labels: ``Z``
        becomes ``(sigmoid(Z) - one_hot(y)) * scale``; returns the loss as above."""
        raise NotImplementedError

    # --- penalties on the weights: value returned, gradient added --------------------------

    def l2_penalty(self, W: Array, gW: Array, strength: float) -> Any:
        """``gW += strength * W``; returns ``strength / 2 * sum(W**2)``."""
        raise NotImplementedError

    def l1_penalty(self, W: Array, gW: Array, strength: float) -> Any:
        """``gW += strength * sign(W)``; returns ``strength * sum(|W|)``."""
        raise NotImplementedError

    # --- optimizers over one flat buffer of parameters -------------------------------------

    def adam(self, theta: Array, g: Array, m: Array, v: Array, count: int, h: AdamHyper) -> None:
        """Twin of :func:`anynet.nn.adam` (``h.decoupled``: :func:`~anynet.nn.adamw`) for step
        ``count``: ``theta``, ``m`` and ``v`` updated in place; ``g`` may be overwritten."""
        raise NotImplementedError

    def sgd(self, theta: Array, g: Array, trace: Array | None, h: SGDHyper) -> None:
        """Twin of :func:`anynet.nn.sgd`: ``theta`` and the momentum ``trace`` (``None``
        without momentum) updated in place; ``g`` may be overwritten."""
        raise NotImplementedError

    # --- the data loader's batch ------------------------------------------------------------

    def gather(self, X: Array, rows: Array, conversion: tuple[str, tuple], out: Array) -> None:
        """``out = convert(X[rows])`` for 2-D uint8 ``X`` in one pass: ``conversion`` is
        ``('lookup', (table,))``, a table of the 256 converted pixel values, or
        ``('standardize', (mean, inv_std))``, computing ``(X - mean) * inv_std`` in ``out``'s
        dtype."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
