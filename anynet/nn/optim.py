"""Optimizers as small composable ``(init, update)`` pairs, after optax.

A :class:`GradientTransformation` turns gradients into updates:
``updates, state = t.update(grads, state, params)``; :func:`apply_updates` adds them to the
parameters. State is a NamedTuple of plain arrays and Python numbers, so a checkpoint can save
it and a flat parameter buffer (one array) works as well as a dict of many.

The familiar optimizers are chains of parts::

    sgd   = chain(add_decayed_weights(wd), trace(momentum, nesterov), scale_by_learning_rate(lr))
    adam  = chain(add_decayed_weights(wd), scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr))
    adamw = chain(scale_by_adam(b1, b2, eps), add_decayed_weights(wd), scale_by_learning_rate(lr))

Updates are functional (``p + u`` makes a new array) so the same code runs on libraries whose
arrays cannot be written in place; the fused in-place fast paths come later, as tested twins.
Hyper-parameters are kept as Python floats: a NumPy scalar would silently promote float32
parameters to float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from array_api_compat import array_namespace

from anynet.checks import check_number

__all__ = [
    "FLUSH_SUBNORMAL_EVERY",
    "AdamState",
    "EmptyState",
    "GradientTransformation",
    "LearningRateState",
    "TraceState",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "scale_by_adam",
    "scale_by_learning_rate",
    "sgd",
    "trace",
]

Array = Any
Tree = Mapping[str, Array]
Schedule = Callable[[int], float]

#: Adam sets its subnormal moments to zero every this many steps. A parameter whose gradient
#: stays zero (a weight into a dead ReLU unit) has its first moment shrink by beta1 a step into
#: the subnormal range, and stay there (beta1 times the smallest subnormal rounds back to it);
#: on x86 CPUs each operation on a subnormal takes a microcode assist, and on NumPy a few
#: thousand such moments made every epoch after the first 1.7x slower. A moment crosses that
#: range once, so flushing now and then is enough, and costs nothing measurable on a GPU. The
#: parameters cannot tell: a moment below float32's 1.2e-38 moves a weight by < 1e-32.
FLUSH_SUBNORMAL_EVERY = 64


class GradientTransformation(NamedTuple):
    """A pair of pure functions: ``init(params) -> state`` and
    ``update(updates, state, params) -> (updates, state)``.

    ``spec`` names a built-in optimizer and its hyper-parameters (``('adam', {...})``), so a
    backend fast path can recognise it and run the same update fused; ``None`` for anything
    else, which always runs through ``update``.
    """

    init: Callable[[Tree], Any]
    update: Callable[[Tree, Any, Tree], tuple[dict[str, Array], Any]]
    spec: tuple[str, dict[str, Any]] | None = None


class EmptyState(NamedTuple):
    """State of a transformation that keeps none."""


class TraceState(NamedTuple):
    """Momentum buffers, one per parameter."""

    trace: dict[str, Array]


class AdamState(NamedTuple):
    """Adam's step count and first and second moment estimates."""

    count: int
    mu: dict[str, Array]
    nu: dict[str, Array]


class LearningRateState(NamedTuple):
    """Steps taken, for a learning-rate schedule."""

    count: int


def apply_updates(params: Tree, updates: Tree) -> dict[str, Array]:
    """``params + updates``, parameter by parameter."""
    return {name: p + updates[name] for name, p in params.items()}


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transformations one after the other; the state is the tuple of their states."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params):
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate: float | Schedule) -> GradientTransformation:
    """Multiply by ``-learning_rate`` (descent). ``learning_rate`` may be a schedule: a
    function of the step count (0, 1, ...) returning a Python float."""
    schedule = learning_rate if callable(learning_rate) else None
    if schedule is None:
        fixed = -check_number("learning_rate", learning_rate, low=0.0, low_open=True)

    def init(params):
        return LearningRateState(count=0)

    def update(updates, state, params):
        factor = -float(schedule(state.count)) if schedule is not None else fixed
        return {k: u * factor for k, u in updates.items()}, LearningRateState(state.count + 1)

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay: float) -> GradientTransformation:
    """Add ``weight_decay * param`` to each update (L2 regularisation when placed before the
    optimizer's scaling, decoupled weight decay when placed after it, as in AdamW)."""
    weight_decay = check_number("weight_decay", weight_decay, low=0.0)

    def init(params):
        return EmptyState()

    def update(updates, state, params):
        if weight_decay == 0.0:
            return dict(updates), state
        return {k: u + weight_decay * params[k] for k, u in updates.items()}, state

    return GradientTransformation(init, update)


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum: ``t = g + decay * t``; the update is ``t``, or ``g + decay * t`` for
    Nesterov's momentum (PyTorch's formulation)."""
    decay = check_number("momentum", decay, low=0.0, high=1.0, high_open=True)

    def init(params):
        if decay == 0.0:
            return TraceState(trace={})
        return TraceState(trace=_zeros_like(params))

    def update(updates, state, params):
        if decay == 0.0:
            return dict(updates), state
        new = {k: g + decay * state.trace[k] for k, g in updates.items()}
        if nesterov:
            return {k: g + decay * new[k] for k, g in updates.items()}, TraceState(new)
        return new, TraceState(new)

    return GradientTransformation(init, update)


def scale_by_adam(
    beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
) -> GradientTransformation:
    """Adam's direction ``m_hat / (sqrt(v_hat) + eps)`` with bias-corrected moments
    (Kingma & Ba, 2015), as PyTorch computes it."""
    beta1 = check_number("beta1", beta1, low=0.0, high=1.0, high_open=True)
    beta2 = check_number("beta2", beta2, low=0.0, high=1.0, high_open=True)
    eps = check_number("eps", eps, low=0.0, low_open=True)

    def init(params):
        return AdamState(count=0, mu=_zeros_like(params), nu=_zeros_like(params))

    def update(updates, state, params):
        count = state.count + 1
        mu = {k: beta1 * state.mu[k] + (1.0 - beta1) * g for k, g in updates.items()}
        nu = {k: beta2 * state.nu[k] + (1.0 - beta2) * (g * g) for k, g in updates.items()}
        # Bias corrections as Python floats: no device work, no dtype promotion.
        c1 = 1.0 / (1.0 - beta1**count)
        c2 = 1.0 / math.sqrt(1.0 - beta2**count)
        xp = _namespace(updates)
        if count % FLUSH_SUBNORMAL_EVERY == 0:
            mu = {k: _flush_subnormal(xp, m) for k, m in mu.items()}
            nu = {k: _flush_subnormal(xp, v) for k, v in nu.items()}
        out = {k: (mu[k] * c1) / (xp.sqrt(nu[k]) * c2 + eps) for k in updates}
        return out, AdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


def sgd(
    learning_rate: float | Schedule = 0.01,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    """Stochastic gradient descent, with optional (Nesterov) momentum and L2 weight decay."""
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True needs a momentum > 0")
    t = chain(
        add_decayed_weights(weight_decay),
        trace(momentum, nesterov),
        scale_by_learning_rate(learning_rate),
    )
    return _named(
        t,
        "sgd",
        learning_rate,
        momentum=float(momentum),
        nesterov=bool(nesterov),
        weight_decay=float(weight_decay),
    )


def adam(
    learning_rate: float | Schedule = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    """Adam (Kingma & Ba, 2015); ``weight_decay`` adds L2 to the gradient, as PyTorch's Adam."""
    t = chain(
        add_decayed_weights(weight_decay),
        scale_by_adam(beta1, beta2, eps),
        scale_by_learning_rate(learning_rate),
    )
    return _named(
        t,
        "adam",
        learning_rate,
        beta1=float(beta1),
        beta2=float(beta2),
        eps=float(eps),
        weight_decay=float(weight_decay),
    )


def adamw(
    learning_rate: float | Schedule = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as PyTorch's."""
    t = chain(
        scale_by_adam(beta1, beta2, eps),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
    return _named(
        t,
        "adamw",
        learning_rate,
        beta1=float(beta1),
        beta2=float(beta2),
        eps=float(eps),
        weight_decay=float(weight_decay),
    )


def _named(t: GradientTransformation, name: str, learning_rate: Any, **hyper: Any):
    """Attach a spec for fast paths: the optimizer's name and hyper-parameters, the learning
    rate a float or a schedule (a function of the step count)."""
    rate = learning_rate if callable(learning_rate) else float(learning_rate)
    return t._replace(spec=(name, {"learning_rate": rate, **hyper}))


def _flush_subnormal(xp: Any, a: Array) -> Array:
    """``a`` with its subnormal entries set to zero (NaN stays NaN)."""
    return xp.where(xp.abs(a) < xp.finfo(a.dtype).smallest_normal, xp.zeros_like(a), a)


def _namespace(tree: Tree) -> Any:
    return array_namespace(*tree.values())


def _zeros_like(params: Tree) -> dict[str, Array]:
    if not params:
        return {}
    xp = _namespace(params)
    return {k: xp.zeros_like(p) for k, p in params.items()}
