"""Element-wise activations, softmax and their hand-written backward passes.

Every function here is pure Array API code: it takes arrays of any conforming library and
returns arrays of the same library, on the same device. ``xp`` is inferred from the first array
when not given; callers on a hot path (layers, losses) pass it to skip that lookup.

Each ``f`` has a twin ``f_backward(dy, ...)`` returning ``dx``, the gradient of the loss with
respect to ``f``'s input given ``dy``, the gradient with respect to its output. Backward passes
take the forward *output* where the derivative can be written from it (sigmoid, tanh, ReLU,
softmax): the output is what a layer keeps anyway.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

__all__ = [
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "log_softmax_backward",
    "one_hot",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]

Array = Any


def _xp(x: Array, xp: Any | None) -> Any:
    return array_namespace(x) if xp is None else xp


def sigmoid(x: Array, /, *, xp: Any | None = None) -> Array:
    """The logistic function ``1 / (1 + exp(-x))``, without overflow.

    ``exp`` only ever sees ``-|x|``, so large negative inputs give 0 instead of an overflow
    warning and ``inf`` intermediate.
    """
    xp = _xp(x, xp)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dy: Array, y: Array, /) -> Array:
    """Gradient through the sigmoid, from its output ``y``: ``dy * y * (1 - y)``."""
    return dy * y * (1 - y)


def tanh(x: Array, /, *, xp: Any | None = None) -> Array:
    """The hyperbolic tangent."""
    return _xp(x, xp).tanh(x)


def tanh_backward(dy: Array, y: Array, /) -> Array:
    """Gradient through tanh, from its output ``y``: ``dy * (1 - y**2)``."""
    return dy * (1 - y * y)


def relu(x: Array, /, *, xp: Any | None = None) -> Array:
    """The rectifier ``max(x, 0)``."""
    xp = _xp(x, xp)
    return xp.where(x > 0, x, 0.0)


def relu_backward(dy: Array, y: Array, /, *, xp: Any | None = None) -> Array:
    """Gradient through ReLU, from its output ``y``: ``dy`` where ``y > 0``, else 0.

    At exactly 0 the subgradient 0 is taken, as PyTorch and scikit-learn do.
    """
    xp = _xp(dy, xp)
    return xp.where(y > 0, dy, 0.0)


def leaky_relu(x: Array, /, negative_slope: float = 0.01, *, xp: Any | None = None) -> Array:
    """``x`` where ``x > 0``, else ``negative_slope * x``."""
    xp = _xp(x, xp)
    return xp.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(
    dy: Array, y: Array, /, negative_slope: float = 0.01, *, xp: Any | None = None
) -> Array:
    """Gradient through leaky ReLU, from its output ``y`` (valid for ``negative_slope >= 0``,
    where ``y > 0`` exactly when ``x > 0``)."""
    xp = _xp(dy, xp)
    return xp.where(y > 0, dy, dy * negative_slope)


def silu(x: Array, /, *, xp: Any | None = None) -> Array:
    """The sigmoid-weighted linear unit ``x * sigmoid(x)`` (SiLU, or swish; PyTorch's
    ``silu``)."""
    return x * sigmoid(x, xp=xp)


def silu_backward(dy: Array, x: Array, /, *, xp: Any | None = None) -> Array:
    """Gradient through SiLU, from its *input* ``x`` (its output does not determine the slope:
    SiLU is not monotonic): ``dy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    s = sigmoid(x, xp=xp)
    return dy * s * (1 + x * (1 - s))


def softmax(x: Array, /, *, axis: int = -1, xp: Any | None = None) -> Array:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed on ``x - max(x)`` so it never
    overflows: logits of 1e4 in float32 still give probabilities that sum to 1."""
    xp = _xp(x, xp)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def softmax_backward(dy: Array, y: Array, /, *, axis: int = -1, xp: Any | None = None) -> Array:
    """Gradient through softmax, from its output ``y``: ``y * (dy - sum(dy * y))``."""
    xp = _xp(dy, xp)
    return y * (dy - xp.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x: Array, /, *, axis: int = -1, xp: Any | None = None) -> Array:
    """``log(softmax(x))`` as ``z - log(sum(exp(z)))`` with ``z = x - max(x)``: finite for
    any finite input, where taking the log of a softmax would give ``-inf``."""
    xp = _xp(x, xp)
    z = x - xp.max(x, axis=axis, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))


def log_softmax_backward(dy: Array, y: Array, /, *, axis: int = -1, xp: Any | None = None) -> Array:
    """Gradient through log-softmax, from its output ``y``: ``dy - exp(y) * sum(dy)``."""
    xp = _xp(dy, xp)
    return dy - xp.exp(y) * xp.sum(dy, axis=axis, keepdims=True)


def one_hot(labels: Array, num_classes: int, /, *, dtype: Any, xp: Any | None = None) -> Array:
    """Integer class labels of shape ``(N,)`` as a ``(N, num_classes)`` indicator matrix.

    Built by comparison with ``arange`` rather than by integer-array assignment, which the
    Array API does not guarantee. Labels outside ``[0, num_classes)`` give an all-zero row:
    check labels at the boundary (the estimator and loader do).
    """
    xp = _xp(labels, xp)
    classes = xp.arange(num_classes, dtype=labels.dtype, device=device(labels))
    return xp.astype(labels[:, None] == classes, dtype)
