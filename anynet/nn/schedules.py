"""Learning-rate schedules: functions of the optimizer's step count (0 for the first update)
that return a Python float, as optax's are. Any optimizer of :mod:`anynet.nn.optim` takes one
as its ``learning_rate``, and so do the fused steps: the rate is read from the step count kept
in the optimizer's state, so a resumed run continues the schedule exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from anynet.checks import check_int, check_number

__all__ = ["Schedule", "constant", "cosine_decay"]

Schedule = Callable[[int], float]


def constant(value: float) -> Schedule:
    """The same rate at every step."""
    value = check_number("learning_rate", value, low=0.0, low_open=True)

    def schedule(count: int) -> float:
        return value

    return schedule


def cosine_decay(initial: float, decay_steps: int, final: float = 0.0) -> Schedule:
    """From ``initial`` down to ``final`` along half a cosine over ``decay_steps`` steps, then
    ``final``: ``final + (initial - final) * (1 + cos(pi * count / decay_steps)) / 2``.

    Examples
    --------
    >>> from anynet.nn.schedules import cosine_decay
    >>> lr = cosine_decay(1e-3, 100)
    >>> lr(0), round(lr(50), 9), lr(100), lr(150)
    (0.001, 0.0005, 0.0, 0.0)
    """
    initial = check_number("initial", initial, low=0.0, low_open=True)
    decay_steps = check_int("decay_steps", decay_steps, minimum=1)
    final = check_number("final", final, low=0.0, high=initial)

    def schedule(count: int) -> float:
        done = min(count, decay_steps) / decay_steps
        return final + (initial - final) * 0.5 * (1.0 + math.cos(math.pi * done))

    return schedule
