"""A fused, in-place training step for multi-layer perceptrons on NumPy.

The generic engine (:mod:`anynet.nn`) allocates a new array for every operation, which is what
lets it run on any Array API library. On a CPU the allocations and the passes over memory they
imply cost as much as the arithmetic at these sizes, so for the common case — ``Dense`` layers
with element-wise activations and dropout, a cross-entropy loss, SGD or Adam — this module runs
the same step with:

- all parameters in one flat buffer (weights first, so an L2 penalty is one operation), their
  gradients in another, and the optimizer's moments in two more: one optimizer update is a
  handful of passes over four arrays instead of a few per tensor;
- every intermediate preallocated and written with ``out=``: no allocation per step.

Each function below is the in-place twin of a generic one, named in its docstring, and
``tests/test_fast.py`` checks it equal to that twin on random inputs. ``FusedMLPStep`` composes
them; :func:`anynet.fast.fused_step` decides when it applies. Results equal the generic step's
up to floating-point rounding (the order of operations differs), not bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from anynet.fast.kernels import KERNELS
from anynet.nn import layers as L
from anynet.nn.optim import AdamState, LearningRateState, TraceState

__all__ = [
    "FusedMLPStep",
    "adam_scalars",
    "adam_update_",
    "flush_subnormal_",
    "leaky_relu_",
    "leaky_relu_backward_",
    "relu_",
    "relu_backward_",
    "sgd_update_",
    "sigmoid_",
    "sigmoid_backward_",
    "sigmoid_cross_entropy_",
    "softmax_cross_entropy_",
    "tanh_",
    "tanh_backward_",
]

# Every NumPy call of the step goes through this name, so a benchmark can count them.
xp_np: Any = np


def _axpy(x: np.ndarray, y: np.ndarray, a: float, tmp: np.ndarray) -> None:
    """``y += a * x`` in place (``tmp`` is scratch of ``x``'s shape).

    Not SciPy's BLAS ``axpy``, although it takes one pass where this takes two: SciPy bundles
    its own OpenBLAS, whose thread pool then fights NumPy's for the cores between matrix
    products (measured: a step 13 times slower on 2 cores).
    """
    xp_np.multiply(x, a, out=tmp)
    xp_np.add(y, tmp, out=y)


# --- activations, in place: Z becomes the activation's output ---------------------------------


def relu_(Z: np.ndarray) -> None:
    """In-place twin of :func:`anynet.nn.functional.relu` (``fmax``: NaN becomes 0 there too)."""
    xp_np.fmax(Z, 0, out=Z)


def relu_backward_(dA: np.ndarray, A: np.ndarray, mask: np.ndarray) -> None:
    """In-place twin of :func:`anynet.nn.functional.relu_backward`: ``dA`` becomes ``dZ``.
    ``mask`` is a boolean buffer of ``A``'s shape."""
    xp_np.greater(A, 0, out=mask)
    xp_np.multiply(dA, mask, out=dA)


def sigmoid_(Z: np.ndarray, tmp: np.ndarray) -> None:
    """In-place twin of :func:`anynet.nn.functional.sigmoid` (the same overflow-free form:
    ``exp`` only sees ``-|z|``)."""
    xp_np.abs(Z, out=tmp)
    xp_np.negative(tmp, out=tmp)
    xp_np.exp(tmp, out=tmp)  # e = exp(-|z|), in (0, 1]
    positive = Z >= 0
    xp_np.add(tmp, 1, out=Z)  # 1 + e
    xp_np.divide(1, Z, out=Z)  # 1 / (1 + e): sigmoid(|z|)
    # For z < 0, sigmoid(z) = e / (1 + e) = e * sigmoid(|z|).
    xp_np.multiply(tmp, Z, out=tmp)
    xp_np.copyto(Z, tmp, where=~positive)


def sigmoid_backward_(dA: np.ndarray, A: np.ndarray, tmp: np.ndarray) -> None:
    """In-place twin of :func:`anynet.nn.functional.sigmoid_backward`."""
    xp_np.subtract(1, A, out=tmp)
    xp_np.multiply(tmp, A, out=tmp)
    xp_np.multiply(dA, tmp, out=dA)


def tanh_(Z: np.ndarray) -> None:
    """In-place twin of :func:`anynet.nn.functional.tanh`."""
    xp_np.tanh(Z, out=Z)


def tanh_backward_(dA: np.ndarray, A: np.ndarray, tmp: np.ndarray) -> None:
    """In-place twin of :func:`anynet.nn.functional.tanh_backward`."""
    xp_np.multiply(A, A, out=tmp)
    xp_np.subtract(1, tmp, out=tmp)
    xp_np.multiply(dA, tmp, out=dA)


def leaky_relu_(Z: np.ndarray, slope: float, tmp: np.ndarray) -> None:
    """In-place twin of :func:`anynet.nn.functional.leaky_relu` (``0 <= slope < 1``)."""
    xp_np.multiply(Z, slope, out=tmp)
    xp_np.maximum(Z, tmp, out=Z)


def leaky_relu_backward_(
    dA: np.ndarray, A: np.ndarray, slope: float, tmp: np.ndarray, mask: np.ndarray
) -> None:
    """In-place twin of :func:`anynet.nn.functional.leaky_relu_backward`."""
    xp_np.less_equal(A, 0, out=mask)
    xp_np.multiply(dA, slope, out=tmp)
    xp_np.copyto(dA, tmp, where=mask)


# --- losses: the logits buffer becomes the gradient -------------------------------------------


def softmax_cross_entropy_(Z: np.ndarray, y: np.ndarray, scale: float, col: np.ndarray) -> float:
    """In-place twin of :func:`anynet.nn.losses.softmax_cross_entropy` for integer labels.

    ``Z`` (logits) becomes ``dlogits`` (``(softmax - one_hot) * scale``); returns the loss.
    ``col`` is a ``(B, 1)`` buffer.
    """
    # Flat positions of the labelled logits: cheaper than take_along_axis or 2-D fancy indexing.
    at = xp_np.arange(0, Z.size, Z.shape[1]) + y
    flat = Z.reshape(-1)
    xp_np.max(Z, axis=1, keepdims=True, out=col)
    xp_np.subtract(Z, col, out=Z)  # shifted logits: the largest is 0, exp cannot overflow
    picked = xp_np.take(flat, at)
    xp_np.exp(Z, out=Z)
    xp_np.sum(Z, axis=1, keepdims=True, out=col)
    loss = float(xp_np.sum(xp_np.log(col)) - xp_np.sum(picked)) * scale
    xp_np.divide(Z, col, out=Z)
    flat[at] -= 1.0
    xp_np.multiply(Z, scale, out=Z)
    return loss


def sigmoid_cross_entropy_(Z: np.ndarray, y: np.ndarray, scale: float, tmp: np.ndarray) -> float:
    """In-place twin of :func:`anynet.nn.losses.sigmoid_binary_cross_entropy` for integer
    labels: ``Z`` becomes ``(sigmoid(Z) - one_hot) * scale``; returns the loss."""
    rows = xp_np.arange(len(y))
    picked = float(xp_np.sum(Z[rows, y]))
    # sum of max(z, 0) + log1p(exp(-|z|)), minus the labelled logits (z * t)
    xp_np.abs(Z, out=tmp)
    xp_np.negative(tmp, out=tmp)
    xp_np.exp(tmp, out=tmp)
    xp_np.log1p(tmp, out=tmp)
    loss = float(xp_np.sum(tmp)) + float(xp_np.sum(xp_np.maximum(Z, 0))) - picked
    sigmoid_(Z, tmp)
    Z[rows, y] -= 1.0
    xp_np.multiply(Z, scale, out=Z)
    return loss * scale


# --- optimizers on flat buffers --------------------------------------------------------------
#
# The optimizers' running averages are flushed to zero once they fall below the smallest normal
# number. Why: a parameter whose gradient stays zero (the weights into a dead ReLU unit) has its
# first moment shrink by beta1 = 0.9 a step, so after ~700 steps it is subnormal, and there it
# stays (0.9 of the smallest subnormal rounds back to itself). On x86 every operation that
# touches a subnormal takes a microcode assist: measured on the benchmark's MLP at batch 64,
# ~17,600 such moments made each epoch after the first 1.9x slower (0.98 s, then 1.86 s). The
# flush changes nothing the parameters can see: a moment below 1.2e-38 (float32) moves a weight
# by less than 1e-32. NaN is kept (it fails the comparison), so it still surfaces.


def flush_subnormal_(a: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
    """Set the subnormal entries of ``a`` to zero, in place (``tmp``, ``mask``: scratch)."""
    xp_np.abs(a, out=tmp)
    xp_np.less(tmp, np.finfo(a.dtype).tiny, out=mask)
    xp_np.copyto(a, 0, where=mask)


def adam_update_(
    theta: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    count: int,
    tmp: np.ndarray,
    mask: np.ndarray,
    *,
    learning_rate: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> None:
    """In-place twin of :func:`anynet.nn.optim.adam` (``decoupled``: ``adamw``) for step
    ``count`` (1 on the first step), on flat buffers. ``g``, ``tmp`` and the boolean ``mask``
    are scratch. Subnormal moments become zero (see above).

    The update is bound by memory bandwidth, so it is rearranged to take fewer passes over the
    buffers: ``m += (1 - beta1) (g - m)``, likewise ``v``, and with the bias corrections
    ``c1``, ``c2``: ``c1 m / (c2 sqrt(v) + eps) = (c1 / c2) m / (sqrt(v) + eps / c2)``.
    """
    if weight_decay and not decoupled:  # Adam's L2: into the gradient
        _axpy(theta, g, weight_decay, tmp)
    c1 = 1.0 / (1.0 - beta1**count)
    c2 = 1.0 / math.sqrt(1.0 - beta2**count)
    xp_np.subtract(g, m, out=tmp)
    xp_np.multiply(tmp, 1.0 - beta1, out=tmp)
    xp_np.add(m, tmp, out=m)
    xp_np.multiply(g, g, out=g)
    xp_np.subtract(g, v, out=g)
    xp_np.multiply(g, 1.0 - beta2, out=g)
    xp_np.add(v, g, out=v)
    flush_subnormal_(m, tmp, mask)
    flush_subnormal_(v, tmp, mask)
    xp_np.sqrt(v, out=tmp)
    xp_np.add(tmp, eps / c2, out=tmp)
    xp_np.divide(m, tmp, out=tmp)  # the Adam direction, times c2 / c1
    if weight_decay and decoupled:  # AdamW: theta - lr (wd theta + direction), old theta both
        xp_np.multiply(theta, 1.0 - learning_rate * weight_decay, out=theta)
    xp_np.multiply(tmp, -learning_rate * c1 / c2, out=tmp)
    xp_np.add(theta, tmp, out=theta)


def adam_scalars(hyper: Mapping[str, Any], count: int) -> tuple[float, float, float, float]:
    """Adam's per-step scalars for the fused kernels, in :func:`adam_update_`'s rearrangement:
    ``(1 - beta1, 1 - beta2, step, eps')`` with ``step = lr c1 / c2`` and ``eps' = eps / c2``,
    ``c1``, ``c2`` the bias corrections of step ``count`` (1 on the first step)."""
    c1 = 1.0 / (1.0 - hyper["beta1"] ** count)
    c2 = 1.0 / math.sqrt(1.0 - hyper["beta2"] ** count)
    step = hyper["learning_rate"] * c1 / c2
    return 1.0 - hyper["beta1"], 1.0 - hyper["beta2"], step, hyper["eps"] / c2


def sgd_update_(
    theta: np.ndarray,
    g: np.ndarray,
    trace: np.ndarray | None,
    tmp: np.ndarray,
    mask: np.ndarray,
    *,
    learning_rate: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    """In-place twin of :func:`anynet.nn.optim.sgd`, on flat buffers. ``g``, ``tmp`` and the
    boolean ``mask`` are scratch. A subnormal momentum trace becomes zero (see above)."""
    if weight_decay:
        _axpy(theta, g, weight_decay, tmp)
    if trace is not None:
        xp_np.multiply(trace, momentum, out=trace)
        xp_np.add(trace, g, out=trace)  # t = momentum t + g
        flush_subnormal_(trace, tmp, mask)
        if nesterov:
            _axpy(trace, g, momentum, tmp)  # g + momentum t
        else:
            xp_np.copyto(g, trace)
    _axpy(g, theta, -learning_rate, tmp)


# --- the fused step --------------------------------------------------------------------------

_ACTIVATIONS = (L.ReLU, L.Sigmoid, L.Tanh, L.LeakyReLU)


def parse_mlp(model: L.Layer, loss: str) -> list[tuple[L.Dense, L.Layer | None, float]] | None:
    """``model`` as ``[(dense, activation or None, dropout p), ...]``, or ``None`` if it is not
    a stack of Dense layers with element-wise activations and dropout that ``loss`` fits."""
    if not isinstance(model, L.Sequential):
        return None
    items = list(model.layers)
    if loss == "nll":  # LogSoftmax + NLL is softmax cross-entropy written in two pieces
        if not items or not isinstance(items[-1], L.LogSoftmax):
            return None
        items = items[:-1]
    elif loss not in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        return None
    plan: list[list[Any]] = []
    for layer in items:
        if isinstance(layer, L.Dense):
            plan.append([layer, None, 0.0])
        elif isinstance(layer, _ACTIVATIONS) and plan and plan[-1][1] is None:
            if plan[-1][2]:
                return None  # dropout before the activation: not the usual shape
            plan[-1][1] = layer
        elif isinstance(layer, L.Dropout) and plan and not plan[-1][2]:
            plan[-1][2] = layer.p
        else:
            return None
    if not plan or plan[-1][1] is not None or plan[-1][2]:
        return None  # the last Dense must give the logits directly
    return [tuple(p) for p in plan]


class FusedMLPStep:
    """The training step of an MLP on NumPy, fused over flat buffers (see the module doc).

    ``params`` and ``opt_state`` present the flat buffers in the generic engine's form (a dict
    of views, the optimizer's NamedTuples), so checkpoints, callbacks and the estimator see the
    same structures whichever step ran.
    """

    #: The array library of the buffers (a subclass for another library replaces it).
    xp: Any = np

    def __init__(self, model, plan, optimizer, template_state, params, dtype, loss, reduction):
        self.model = model
        self.plan = plan
        self.kind, self.hyper = optimizer.spec
        self.loss = loss
        self.reduction = reduction
        self.dtype = np.dtype(dtype)
        self._template = template_state
        shapes = model.param_shapes()
        # Weights first, then biases: the penalties apply to one contiguous region.
        order = [n for n in shapes if n.endswith(".W")] + [n for n in shapes if n.endswith(".b")]
        sizes = {n: math.prod(shapes[n]) for n in order}
        self.n_weights = sum(sizes[n] for n in order if n.endswith(".W"))
        total = sum(sizes.values())
        xp = self.xp
        self.theta = xp.empty(total, dtype=self.dtype)
        self.grad = xp.empty(total, dtype=self.dtype)
        self.tmp = xp.empty(total, dtype=self.dtype)
        self.mask = xp.empty(total, dtype=bool)
        self._slices: dict[str, slice] = {}
        offset = 0
        for n in order:
            self._slices[n] = slice(offset, offset + sizes[n])
            offset += sizes[n]
        self._shapes = {n: tuple(shapes[n]) for n in shapes}  # the model's own order
        self.views = self._named(self.theta)
        self.grad_views = self._named(self.grad)
        self.m = self.v = self.trace = None
        if self.kind in ("adam", "adamw"):
            self.m = xp.zeros(total, dtype=self.dtype)
            self.v = xp.zeros(total, dtype=self.dtype)
            self._mu, self._nu = self._named(self.m), self._named(self.v)
        elif self.hyper["momentum"]:
            self.trace = xp.zeros(total, dtype=self.dtype)
            self._trace = self._named(self.trace)
        self.count = 0
        self.kernels = KERNELS
        self.name = "fused numpy" + (" + numba" if self.kernels is not None else "")
        # Per Dense layer of the plan: its parameter names ("i.W" and, with a bias, "i.b").
        per_layer = [
            [n for n in shapes if n.split(".")[0] == str(i)] for i in range(len(model.layers))
        ]
        self._dense_names = [names for names in per_layer if names]
        self._buffers_for = 0
        self.load(params, template_state)

    # -- moving state in and out ----------------------------------------------------------

    def load(self, params: Mapping[str, Any], opt_state: Any = None) -> None:
        """Copy parameters (and optimizer state in the generic form) into the flat buffers."""
        asarray = self.xp.asarray
        for n, view in self.views.items():
            view[...] = asarray(params[n])
        if opt_state is None:
            return
        for s in _walk(opt_state):
            if isinstance(s, AdamState):
                self.count = int(s.count)
                for n in self.views:
                    self._mu[n][...] = asarray(s.mu[n])
                    self._nu[n][...] = asarray(s.nu[n])
            elif isinstance(s, TraceState) and s.trace:
                for n in self.views:
                    self._trace[n][...] = asarray(s.trace[n])
            elif isinstance(s, LearningRateState):
                self.count = int(s.count)

    def _named(self, buffer: Any) -> dict[str, Any]:
        """Views of ``buffer`` by parameter name, shaped as the parameters."""
        return {n: buffer[self._slices[n]].reshape(shape) for n, shape in self._shapes.items()}

    @property
    def params(self) -> dict[str, Any]:
        return self.views

    @property
    def opt_state(self) -> Any:
        """The optimizer state in the generic engine's structure (views into the buffers)."""

        def rebuild(s):
            if isinstance(s, tuple) and not hasattr(s, "_fields"):
                return tuple(rebuild(x) for x in s)
            if isinstance(s, AdamState):
                return AdamState(count=self.count, mu=self._mu, nu=self._nu)
            if isinstance(s, TraceState):
                return s if self.trace is None else TraceState(self._trace)
            if isinstance(s, LearningRateState):
                return LearningRateState(self.count)
            return s

        return rebuild(self._template)

    # -- the step -------------------------------------------------------------------------

    def _allocate(self, batch: int) -> None:
        """Activation, gradient and scratch buffers for batches of up to ``batch`` rows."""
        dt, empty = self.dtype, self.xp.empty
        self.Z = [empty((batch, d.n_out), dt) for d, _, _ in self.plan]
        self.D = [empty((batch, d.n_out), dt) if p else None for d, _, p in self.plan]
        self.keep = [empty((batch, d.n_out), bool) if p else None for d, _, p in self.plan]
        self.dA = [empty((batch, d.n_out), dt) for d, _, _ in self.plan]
        self.tmpA = [empty((batch, d.n_out), dt) for d, _, _ in self.plan]
        self.maskA = [empty((batch, d.n_out), bool) for d, _, _ in self.plan]
        self.col = empty((batch, 1), dt)
        self.ones = self.xp.ones(batch, dt)
        self._buffers_for = batch

    def __call__(self, X: np.ndarray, y: np.ndarray, *, l1: float, l2: float, rng: Any) -> Any:
        """One step on batch ``X, y``; returns the loss (a NumPy scalar)."""
        B = X.shape[0]
        if B > self._buffers_for:
            self._allocate(B)
        if X.dtype != self.dtype:
            X = X.astype(self.dtype)
        with np.errstate(over="ignore", under="ignore"):
            loss = self._step(X, y, B, float(l1), float(l2), rng)
        return np.asarray(loss, dtype=self.dtype)

    def _step(self, X, y, B, l1, l2, rng):
        mm = xp_np.matmul
        inputs = [X]
        n = len(self.plan)
        # forward
        for i, (dense, act, p) in enumerate(self.plan):
            names = self._dense_names[i]
            W = self.views[names[0]]
            Z = self.Z[i][:B]
            mm(inputs[-1], W, out=Z)
            if self.kernels is not None and dense.bias and type(act) is L.ReLU:
                self.kernels.bias_relu(Z, self.views[names[1]])  # one pass for both
            else:
                if dense.bias:
                    xp_np.add(Z, self.views[names[1]], out=Z)
                if act is not None:
                    self._activate(act, Z, self.tmpA[i][:B])
            out = Z
            if p:
                # The same draw as the generic Dropout: uniform of the batch's shape, >= p.
                keep = self.keep[i][:B]
                xp_np.greater_equal(rng.uniform(Z.shape, self.dtype.name), p, out=keep)
                out = self.D[i][:B]
                xp_np.multiply(Z, keep, out=out)
                xp_np.multiply(out, 1.0 / (1.0 - p), out=out)
            inputs.append(out)
        # loss: the logits buffer becomes dlogits
        logits = self.Z[-1][:B]
        scale = 1.0 / B if self.reduction == "mean" else 1.0
        if self.loss == "sigmoid_binary_cross_entropy":
            value = sigmoid_cross_entropy_(logits, y, scale, self.tmpA[-1][:B])
        elif self.kernels is not None:
            value = self.kernels.softmax_cross_entropy(logits, y, self.dtype.type(scale))
        else:
            value = softmax_cross_entropy_(logits, y, scale, self.col[:B])
        # backward
        dZ = logits
        for i in range(n - 1, -1, -1):
            dense, _, _ = self.plan[i]
            names = self._dense_names[i]
            mm(inputs[i].T, dZ, out=self.grad_views[names[0]])
            if dense.bias:  # the column sums, as a BLAS product with ones
                mm(self.ones[:B], dZ, out=self.grad_views[names[1]])
            if i == 0:
                break  # nobody wants the gradient of the data
            _, prev_act, prev_p = self.plan[i - 1]
            dA = self.dA[i - 1][:B]
            mm(dZ, self.views[names[0]].T, out=dA)
            if prev_p:
                xp_np.multiply(dA, self.keep[i - 1][:B], out=dA)
                xp_np.multiply(dA, 1.0 / (1.0 - prev_p), out=dA)
            if self.kernels is not None and type(prev_act) is L.ReLU:
                self.kernels.relu_backward(dA, self.Z[i - 1][:B])
            elif prev_act is not None:
                self._activate_backward(
                    prev_act, dA, self.Z[i - 1][:B], self.tmpA[i - 1][:B], self.maskA[i - 1][:B]
                )
            dZ = dA
        # penalties on the weights (one region of the flat buffers)
        W, gW, tW = (a[: self.n_weights] for a in (self.theta, self.grad, self.tmp))
        if l2:
            value += 0.5 * l2 * float(xp_np.dot(W, W))
            _axpy(W, gW, l2, tW)
        if l1:
            value += l1 * float(xp_np.sum(xp_np.abs(W)))
            xp_np.sign(W, out=tW)
            xp_np.multiply(tW, l1, out=tW)
            xp_np.add(gW, tW, out=gW)
        # optimizer
        self.count += 1
        h = self.hyper
        if self.kind == "sgd":
            sgd_update_(
                self.theta,
                self.grad,
                self.trace,
                self.tmp,
                self.mask,
                learning_rate=h["learning_rate"],
                momentum=h["momentum"],
                nesterov=h["nesterov"],
                weight_decay=h["weight_decay"],
            )
        elif self.kernels is not None:
            self._adam_kernel(h)
        else:
            adam_update_(
                self.theta,
                self.grad,
                self.m,
                self.v,
                self.count,
                self.tmp,
                self.mask,
                learning_rate=h["learning_rate"],
                beta1=h["beta1"],
                beta2=h["beta2"],
                eps=h["eps"],
                weight_decay=h["weight_decay"],
                decoupled=self.kind == "adamw",
            )
        return value

    def _adam_kernel(self, h):
        """:func:`adam_update_` as one compiled pass (the same rearrangement)."""
        lr, wd = h["learning_rate"], h["weight_decay"]
        if wd and self.kind == "adam":
            _axpy(self.theta, self.grad, wd, self.tmp)
        elif wd:
            xp_np.multiply(self.theta, 1.0 - lr * wd, out=self.theta)
        t = self.dtype.type  # scalars in the buffers' dtype: float32 stays float32
        scalars = adam_scalars(h, self.count)
        self.kernels.adam(
            self.theta, self.grad, self.m, self.v, *map(t, scalars), t(np.finfo(self.dtype).tiny)
        )

    @staticmethod
    def _activate(act, Z, tmp):
        if isinstance(act, L.ReLU):
            relu_(Z)
        elif isinstance(act, L.Sigmoid):
            sigmoid_(Z, tmp)
        elif isinstance(act, L.Tanh):
            tanh_(Z)
        else:
            leaky_relu_(Z, act.negative_slope, tmp)

    @staticmethod
    def _activate_backward(act, dA, A, tmp, mask):
        if isinstance(act, L.ReLU):
            relu_backward_(dA, A, mask)
        elif isinstance(act, L.Sigmoid):
            sigmoid_backward_(dA, A, tmp)
        elif isinstance(act, L.Tanh):
            tanh_backward_(dA, A, tmp)
        else:
            leaky_relu_backward_(dA, A, act.negative_slope, tmp, mask)


def _walk(state: Any):
    """Every NamedTuple in an optimizer state (chains are plain tuples of states)."""
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        for s in state:
            yield from _walk(s)
    else:
        yield state
