"""A network as the fused step runs it: a list of stages and a loss head.

A stage is one operation followed by its element-wise epilogue (a bias, an activation,
dropout), the unit one launch of a GPU kernel can finish: :class:`Linear` for a Dense layer,
and the image stages of :mod:`anynet.fast.conv_stages` and :mod:`anynet.fast.norm_stages`.
Each stage owns its batch buffers and runs forward and backward through an
:class:`~anynet.fast.ops.Ops`, nothing else:

- ``allocate(xp, batch, shape, dtype, *, input_grad)``: buffers for up to ``batch`` samples of
  ``shape``; returns the output's sample shape;
- ``forward(ops, X, params, rng)`` and ``backward(ops, dY, params, grads)``, the latter
  returning the input's gradient (``None`` without ``input_grad``);
- ``infer(ops, X, params)``: the forward of evaluation mode (no dropout, batch norm's running
  statistics), into the same buffers, for scoring between steps;
- ``statistics``: the names of parameters it estimates rather than trains, written by
  ``commit(ops, params)`` after the optimizer's update; ``needs_rng``: whether it draws;
- ``uses``: the operations it needs beyond a dense stage's, which a family may not have yet
  (:func:`anynet.fast.fused_step` then keeps the generic step).

:func:`plan` reads an engine model (:mod:`anynet.nn`) as stages, or says it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anynet.fast.activations import IDENTITY, Activation, activation_of
from anynet.fast.ops import Ops
from anynet.nn import layers as L
from anynet.nn import losses as engine_losses
from anynet.nn.norm import BatchNorm as BatchNormLayer

__all__ = ["CrossEntropyHead", "Epilogue", "Linear", "Plan", "plan"]

Array = Any


@dataclass(frozen=True)
class Epilogue:
    """What follows a linear operation element-wise: a bias (its parameter name, or None), an
    activation (a row of :data:`~anynet.fast.activations.TABLE`) and dropout."""

    bias: str | None = None
    activation: Activation = IDENTITY
    slope: float = 0.0
    dropout: float = 0.0


class Linear:
    """A :class:`~anynet.nn.Dense` layer and its epilogue: ``Y = epilogue(X @ W)``."""

    statistics: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()  # only operations every family has

    def __init__(self, weight: str, n_in: int, n_out: int, epilogue: Epilogue):
        self.weight = weight
        self.n_in, self.n_out = n_in, n_out
        self.epilogue = epilogue

    @property
    def needs_rng(self) -> bool:
        return bool(self.epilogue.dropout)

    def allocate(self, xp: Any, batch: int, shape: tuple, dtype: Any, *, input_grad: bool):
        """Buffers for batches of up to ``batch`` rows; returns ``(n_out,)``."""
        if tuple(shape) != (self.n_in,):
            raise ValueError(
                f"Dense({self.n_in}, {self.n_out}) expects inputs of shape (batch, {self.n_in}); "
                f"got samples of shape {tuple(shape)}"
            )
        e, shape = self.epilogue, (batch, self.n_out)
        self.Z = xp.empty(shape, dtype)
        # Where the derivative reads the output, the activation overwrites its input in place.
        self.A = self.Z if e.activation.saved == "a" else xp.empty(shape, dtype)
        self.D = xp.empty(shape, dtype) if e.dropout else None
        self.keep = xp.empty(shape, bool) if e.dropout else None
        self.dX = xp.empty((batch, self.n_in), dtype) if input_grad else None
        return (self.n_out,)

    def forward(self, ops: Ops, X: Array, params: dict, rng: Any) -> Array:
        e, B = self.epilogue, X.shape[0]
        self.X = X  # for the weight gradient
        Z = self.Z[:B]
        A = Z if self.A is self.Z else self.A[:B]  # the same buffer: the same object
        ops.matmul(X, params[self.weight], Z)
        bias = params[e.bias] if e.bias else None
        ops.bias_act(Z, bias, e.activation, e.slope, A)
        if not e.dropout:
            return A
        # The same draw as the generic Dropout layer: uniform of the batch's shape, >= p.
        u = rng.uniform(A.shape, str(A.dtype))
        ops.dropout(A, u, e.dropout, self.D[:B], self.keep[:B])
        return self.D[:B]

    def infer(self, ops: Ops, X: Array, params: dict) -> Array:
        e, B = self.epilogue, X.shape[0]
        Z = self.Z[:B]
        A = Z if self.A is self.Z else self.A[:B]
        ops.matmul(X, params[self.weight], Z)
        ops.bias_act(Z, params[e.bias] if e.bias else None, e.activation, e.slope, A)
        return A

    def backward(self, ops: Ops, dY: Array, params: dict, grads: dict) -> Array | None:
        """``dY`` (the gradient at the output, overwritten) to the parameters' gradients and,
        if this stage was allocated with ``input_grad``, the gradient at the input."""
        e, B = self.epilogue, dY.shape[0]
        saved = self.A[:B] if e.activation.saved == "a" else self.Z[:B]
        keep = self.keep[:B] if e.dropout else None
        ops.act_backward(dY, saved, e.activation, e.slope, keep, e.dropout)
        ops.matmul(self.X.T, dY, grads[self.weight])
        if e.bias:
            ops.bias_grad(dY, grads[e.bias])
        if self.dX is None:
            return None
        dX = self.dX[:B]
        ops.matmul(dY, params[self.weight].T, dX)
        return dX


class CrossEntropyHead:
    """The loss on the last stage's output (logits), which becomes the loss's gradient."""

    #: Its targets are int64 class labels.
    labels = True

    def __init__(self, kind: str):
        self.kind = kind  # 'softmax' or 'sigmoid'

    def loss(
        self, ops: Ops, Z: Array, y: Array, scale: float, sample_weight: Array | None = None
    ) -> Any:
        if sample_weight is not None:
            return self._weighted_loss(ops, Z, y, scale, sample_weight)
        if self.kind == "softmax":
            return ops.softmax_cross_entropy(Z, y, scale)
        return ops.sigmoid_cross_entropy(Z, y, scale)

    def _weighted_loss(self, ops: Ops, Z: Array, y: Array, scale: float, w: Array) -> Any:
        """With sample weights: the engine's loss (the generic body), its gradient written
        into ``Z``. Weighted fits are rarer than plain ones; no kernel of its own is needed."""
        if self.kind == "softmax":
            loss = engine_losses.softmax_cross_entropy
        else:
            loss = engine_losses.sigmoid_binary_cross_entropy
        w = ops.xp.asarray(w, dtype=Z.dtype)
        value, dZ = loss(Z, y, reduction="sum", xp=ops.xp, sample_weight=w)
        Z[...] = dZ * scale
        return float(value) * scale


class RegressionHead:
    """A regression loss (``'half_squared_error'``, ``'poisson'``) on the last stage's output,
    which becomes its gradient: the engine's own loss (the generic body) on the ops' arrays.
    It is a few element-wise operations, a small part of a step: no kernel is needed."""

    #: Its targets are real values of the output's shape, not labels.
    labels = False

    def __init__(self, kind: str):
        self.kind = kind
        self._loss = engine_losses.LOSSES[kind]

    def loss(
        self, ops: Ops, Z: Array, y: Array, scale: float, sample_weight: Array | None = None
    ) -> Any:
        xp = ops.xp
        how = {} if sample_weight is None else {"sample_weight": xp.asarray(sample_weight)}
        value, dZ = self._loss(Z, xp.asarray(y, dtype=Z.dtype), reduction="sum", xp=xp, **how)
        Z[...] = dZ * scale
        return float(value) * scale


@dataclass(frozen=True)
class Plan:
    """A model as stages and a head."""

    stages: tuple[Any, ...]
    head: CrossEntropyHead | RegressionHead

    @property
    def needs_rng(self) -> bool:
        return any(stage.needs_rng for stage in self.stages)


_HEADS = {
    "softmax_cross_entropy": "softmax",
    "nll": "softmax",
    "sigmoid_binary_cross_entropy": "sigmoid",
    "half_squared_error": "half_squared_error",
    "poisson": "poisson",
}


def plan(model: Any, loss: Any) -> Plan | None:
    """``model`` and ``loss`` as stages and a head, or ``None`` where the fused step does not
    apply (the generic step runs those).

    Covered: a :class:`~anynet.nn.Sequential` whose last layer is a Dense giving the logits of
    a cross-entropy (LogSoftmax then ``'nll'`` is softmax cross-entropy in two pieces), or the
    output of a regression loss (``'half_squared_error'``, ``'poisson'``), made of

    - Dense, Conv2D and BatchNorm layers, each followed by at most one activation of the table
      and, on flat features, one Dropout;
    - MaxPool2D, AvgPool2D and GlobalAvgPool2D after an image stage;
    - Flatten after an image stage, followed by at most one Dropout.

    The first layer is a Dense (flat input) or a Conv2D (images ``(N, C, H, W)``). Anything
    else (a Residual block, an activation after a pool, dropout on images) is not covered.
    """
    if not isinstance(model, L.Sequential) or not isinstance(loss, str) or loss not in _HEADS:
        return None
    layers = list(enumerate(model.layers))
    if loss == "nll":
        if not layers or type(layers[-1][1]) is not L.LogSoftmax:
            return None
        layers = layers[:-1]
    stages: list[Any] = []
    images = False  # whether the current stage's output is channels-last images
    k = 0
    while k < len(layers):
        i, layer = layers[k]
        made, k = _stage(i, layer, layers, k + 1, first=not stages, images=images)
        if made is None:
            return None
        stage, images = made
        stages.append(stage)
    last = stages[-1] if stages else None
    if not isinstance(last, Linear) or last.epilogue != Epilogue(last.epilogue.bias):
        return None  # the last stage must be a Dense giving the logits directly
    kind = _HEADS[loss]
    head = RegressionHead(kind) if kind in engine_losses.LOSSES else CrossEntropyHead(kind)
    return Plan(tuple(stages), head)


def _tail(layers: list, k: int, *, dropout: bool) -> tuple[Any, float, float, int]:
    """The activation (and its slope) and dropout rate of the layers from ``k`` on, and where
    the next stage starts."""
    act, slope, p = IDENTITY, 0.0, 0.0
    if k < len(layers) and activation_of(layers[k][1]) is not None:
        layer = layers[k][1]
        act, slope, k = activation_of(layer), activation_of(layer).slope(layer), k + 1
    if dropout and k < len(layers) and type(layers[k][1]) is L.Dropout:
        p, k = layers[k][1].p, k + 1
    return act, slope, p, k


def _stage(i: int, layer: Any, layers: list, k: int, *, first: bool, images: bool):
    """``((stage, images after it), next k)`` for ``layer`` (index ``i`` in the model) and what
    follows it from ``k``; ``(None, k)`` where it is not covered."""
    from anynet.fast import conv_stages as C
    from anynet.fast import norm_stages as N
    from anynet.nn import conv

    kind = type(layer)
    if kind is L.Dense and not images:
        act, slope, p, k = _tail(layers, k, dropout=True)
        bias = f"{i}.b" if layer.bias else None
        stage = Linear(f"{i}.W", layer.n_in, layer.n_out, Epilogue(bias, act, slope, p))
        return (stage, False), k
    if kind is conv.Conv2D and (first or images):
        act, slope, _, k = _tail(layers, k, dropout=False)
        epilogue = Epilogue(f"{i}.b" if layer.bias else None, act, slope)
        pads = layer._pads()
        conv_stage = C.Conv(
            f"{i}.W", layer.c_in, layer.c_out, layer.kernel_size, layer.stride, pads, epilogue,
            channels_first=first,
        )  # fmt: skip
        return (conv_stage, True), k
    if kind is BatchNormLayer and not first:
        act, slope, p, k = _tail(layers, k, dropout=not images)
        names = {name: f"{i}.{name}" for name in ("gamma", "beta", "mean", "var")}
        epilogue = Epilogue(None, act, slope, p)
        bn = N.BatchNorm(names, layer.n_features, layer.momentum, layer.eps, epilogue)
        return (bn, images), k
    if kind in (conv.MaxPool2D, conv.AvgPool2D) and images:
        if layer.kernel_size[0] * layer.kernel_size[1] > 256:
            return None, k  # the winner's offset is kept in a byte
        pool = C.Pool("max" if kind is conv.MaxPool2D else "avg", layer.kernel_size, layer.stride)
        return (pool, True), k
    if kind is conv.GlobalAvgPool2D and images:
        return (C.Pool("avg", None, None), False), k
    if kind is L.Flatten and images:
        p = 0.0
        if k < len(layers) and type(layers[k][1]) is L.Dropout:
            p, k = layers[k][1].p, k + 1
        return (C.Flatten(p), False), k
    return None, k
