"""Weight initializers.

Random initial weights are drawn on the host from a NumPy generator (``backend.host_generator``)
in float64, cast on the host, then copied to the device. The same seed therefore gives
bit-identical initial weights on every backend: the device's own generator never takes part.

An initializer is ``init(shape, *, fan_in, fan_out, rng, backend, dtype) -> device array``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "INITIALIZERS",
    "get_initializer",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "pytorch_uniform",
    "uniform",
    "zeros",
]

Initializer = Callable[..., Any]


def _draw(host: Any, backend: Any, dtype: Any) -> Any:
    return backend.asarray(host, dtype=dtype)


def uniform(shape, *, fan_in, fan_out, rng, backend, dtype, low=-1.0, high=1.0):
    """U(low, high), by default U(-1, 1): the from-scratch seed's initialization."""
    return _draw(rng.uniform(low, high, size=shape), backend, dtype)


def glorot_uniform(shape, *, fan_in, fan_out, rng, backend, dtype):
    """U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio, 2010)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return _draw(rng.uniform(-limit, limit, size=shape), backend, dtype)


def glorot_normal(shape, *, fan_in, fan_out, rng, backend, dtype):
    """N(0, 2 / (fan_in + fan_out))."""
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return _draw(rng.normal(0.0, std, size=shape), backend, dtype)


def he_uniform(shape, *, fan_in, fan_out, rng, backend, dtype):
    """U(-a, a) with ``a = sqrt(6 / fan_in)`` (He et al., 2015), for ReLU networks."""
    limit = math.sqrt(6.0 / fan_in)
    return _draw(rng.uniform(-limit, limit, size=shape), backend, dtype)


def he_normal(shape, *, fan_in, fan_out, rng, backend, dtype):
    """N(0, 2 / fan_in) (He et al., 2015), for ReLU networks."""
    std = math.sqrt(2.0 / fan_in)
    return _draw(rng.normal(0.0, std, size=shape), backend, dtype)


def pytorch_uniform(shape, *, fan_in, fan_out, rng, backend, dtype):
    """U(-a, a) with ``a = 1 / sqrt(fan_in)``: what ``torch.nn.Linear`` draws for its weights
    and biases by default (``kaiming_uniform_`` with ``a = sqrt(5)``)."""
    limit = 1.0 / math.sqrt(fan_in)
    return _draw(rng.uniform(-limit, limit, size=shape), backend, dtype)


def zeros(shape, *, fan_in, fan_out, rng, backend, dtype):
    """All zeros (draws nothing from ``rng``)."""
    return backend.xp.zeros(shape, dtype=backend.dtype(dtype), device=backend.device)


INITIALIZERS: dict[str, Initializer] = {
    "uniform": uniform,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "pytorch_uniform": pytorch_uniform,
    "zeros": zeros,
}


def get_initializer(name: str | Initializer) -> Initializer:
    """Look an initializer up by name (a callable passes through)."""
    if callable(name):
        return name
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"init={name!r} is not an initializer anynet knows; expected one of "
            f"{sorted(INITIALIZERS)} or a callable"
        ) from None
