"""Weight penalties. Each returns ``(value, grads)`` for the weights it is given, so a training
step adds the value to the loss and the gradients to the weights' gradients.

By convention (scikit-learn's and most textbooks') penalties apply to weight matrices, not
biases: :func:`penalized` picks the parameters named ``W``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from array_api_compat import array_namespace

__all__ = ["l1_penalty", "l2_penalty", "penalized"]

Array = Any


def penalized(params: Mapping[str, Array]) -> list[str]:
    """Names of the parameters a penalty applies to: weight matrices (``*.W``), not biases."""
    return [name for name in params if name == "W" or name.endswith(".W")]


def l2_penalty(
    weights: Mapping[str, Array], strength: float, /, *, xp: Any = None
) -> tuple[Array | float, dict[str, Array]]:
    """``strength / 2 * sum(W**2)`` over the given arrays; gradient ``strength * W``.

    The from-scratch seed's ``L2_reg``.
    """
    strength = float(strength)
    if not weights:
        return 0.0, {}
    if xp is None:
        xp = array_namespace(*weights.values())
    value = sum(xp.sum(W * W) for W in weights.values()) * (0.5 * strength)
    return value, {name: W * strength for name, W in weights.items()}


def l1_penalty(
    weights: Mapping[str, Array], strength: float, /, *, xp: Any = None
) -> tuple[Array | float, dict[str, Array]]:
    """``strength * sum(|W|)`` over the given arrays; (sub)gradient ``strength * sign(W)``."""
    strength = float(strength)
    if not weights:
        return 0.0, {}
    if xp is None:
        xp = array_namespace(*weights.values())
    value = sum(xp.sum(xp.abs(W)) for W in weights.values()) * strength
    return value, {name: xp.sign(W) * strength for name, W in weights.items()}
