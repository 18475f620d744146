"""A network as the fused step runs it: a list of stages and a loss head.

A stage is one linear operation followed by its element-wise epilogue (a bias, an activation,
dropout), the unit one launch of a GPU kernel can finish: :class:`Linear` for a Dense layer
today; a convolution adds a stage of its own that reuses :class:`Epilogue`. Each stage owns its
batch buffers and runs forward and backward through an :class:`~anynet.fast.ops.Ops`, nothing
else. :func:`plan` reads an engine model (:mod:`anynet.nn`) as stages, or says it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anynet.fast.activations import IDENTITY, Activation, activation_of
from anynet.fast.ops import Ops
from anynet.nn import layers as L

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

    def __init__(self, weight: str, n_in: int, n_out: int, epilogue: Epilogue):
        self.weight = weight
        self.n_in, self.n_out = n_in, n_out
        self.epilogue = epilogue
        self.capacity = 0

    def allocate(self, xp: Any, batch: int, dtype: Any, *, input_grad: bool) -> None:
        """Buffers for batches of up to ``batch`` rows."""
        e, shape = self.epilogue, (batch, self.n_out)
        self.Z = xp.empty(shape, dtype)
        # Where the derivative reads the output, the activation overwrites its input in place.
        self.A = self.Z if e.activation.saved == "a" else xp.empty(shape, dtype)
        self.D = xp.empty(shape, dtype) if e.dropout else None
        self.keep = xp.empty(shape, bool) if e.dropout else None
        self.dX = xp.empty((batch, self.n_in), dtype) if input_grad else None
        self.capacity = batch

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

    def __init__(self, kind: str):
        self.kind = kind  # 'softmax' or 'sigmoid'

    def loss(self, ops: Ops, Z: Array, y: Array, scale: float) -> Any:
        if self.kind == "softmax":
            return ops.softmax_cross_entropy(Z, y, scale)
        return ops.sigmoid_cross_entropy(Z, y, scale)


@dataclass(frozen=True)
class Plan:
    """A model as stages and a head."""

    stages: tuple[Linear, ...]
    head: CrossEntropyHead

    @property
    def needs_rng(self) -> bool:
        return any(stage.epilogue.dropout for stage in self.stages)


_HEADS = {
    "softmax_cross_entropy": "softmax",
    "nll": "softmax",
    "sigmoid_binary_cross_entropy": "sigmoid",
}


def plan(model: Any, loss: Any) -> Plan | None:
    """``model`` and ``loss`` as stages and a head, or ``None`` where the fused step does not
    apply (the generic step runs those): a :class:`~anynet.nn.Sequential` of Dense layers, each
    followed by at most one activation of the table and one Dropout, the last one giving the
    logits of a cross-entropy (LogSoftmax then ``'nll'`` is softmax cross-entropy in two
    pieces)."""
    if not isinstance(model, L.Sequential) or not isinstance(loss, str) or loss not in _HEADS:
        return None
    layers = list(enumerate(model.layers))
    if loss == "nll":
        if not layers or type(layers[-1][1]) is not L.LogSoftmax:
            return None
        layers = layers[:-1]
    groups: list[list[tuple[int, Any]]] = []  # each: a Dense, then what follows it
    for i, layer in layers:
        if type(layer) is L.Dense:
            groups.append([(i, layer)])
        elif not groups:
            return None
        else:
            groups[-1].append((i, layer))
    stages = []
    for group in groups:
        (i, dense), tail = group[0], [layer for _, layer in group[1:]]
        act, p = IDENTITY, 0.0
        if tail and activation_of(tail[0]) is not None:
            act, slope = activation_of(tail[0]), activation_of(tail[0]).slope(tail[0])
            tail = tail[1:]
        else:
            slope = 0.0
        if tail and type(tail[0]) is L.Dropout:
            p, tail = tail[0].p, tail[1:]
        if tail:
            return None  # something the epilogue does not know
        bias = f"{i}.b" if dense.bias else None
        stages.append(Linear(f"{i}.W", dense.n_in, dense.n_out, Epilogue(bias, act, slope, p)))
    if not stages or stages[-1].epilogue.activation is not IDENTITY or stages[-1].epilogue.dropout:
        return None  # the last Dense must give the logits directly
    return Plan(tuple(stages), CrossEntropyHead(_HEADS[loss]))
