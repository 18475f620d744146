"""Learning-rate schedules: functions of the optimizer's step count (0 for the first update)
that return a Python float, as optax's are. Any optimizer of :mod:`anynet.nn.optim` takes one
as its ``learning_rate``, and so do the fused steps: the rate is read from the step count kept
in the optimizer's state, so a resumed run continues the schedule exactly.

Schedules compose. scikit-learn's ``learning_rate='invscaling'`` is an inverse scaling in the
samples seen, held for an epoch at a time::

    held(inverse_scaling(lr, power_t, scale=n_samples), every=steps_per_epoch)

and its ``'adaptive'`` is a :func:`reducible` constant, whose rate
:class:`~anynet.training.EarlyStopping` divides when the loss stops improving (the one schedule
with a state of its own: how often it was divided, which checkpoints keep).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from anynet.checks import check_int, check_number, fail

__all__ = [
    "ReducibleSchedule",
    "Schedule",
    "constant",
    "cosine_decay",
    "held",
    "inverse_scaling",
    "reducible",
]

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


def inverse_scaling(
    initial: float, power: float, *, scale: float = 1.0, offset: float = 1.0
) -> Schedule:
    """``initial / (offset + scale * count) ** power``: scikit-learn's inverse scaling, where
    ``offset + scale * count`` is its ``t + 1``, the samples seen plus one.

    Examples
    --------
    >>> from anynet.nn.schedules import inverse_scaling
    >>> lr = inverse_scaling(0.1, 0.5, scale=3.0)
    >>> lr(0), lr(1), round(lr(5), 6)
    (0.1, 0.05, 0.025)
    """
    initial = check_number("initial", initial, low=0.0, low_open=True)
    power = check_number("power", power, low=0.0)
    scale = check_number("scale", scale, low=0.0)
    offset = check_number("offset", offset, low=0.0, low_open=True)

    def schedule(count: int) -> float:
        return initial / (offset + scale * count) ** power

    return schedule


def held(schedule: Schedule, every: int) -> Schedule:
    """``schedule`` read once every ``every`` steps and held in between: step ``count`` gets
    ``schedule(count // every)``. With ``every`` the steps of an epoch, the rate changes
    between epochs only, and ``schedule`` counts epochs.

    Examples
    --------
    >>> from anynet.nn.schedules import held, inverse_scaling
    >>> lr = held(inverse_scaling(1.0, 1.0), every=2)
    >>> [lr(count) for count in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.3333333333333333]
    """
    if not callable(schedule):
        raise fail("schedule", "a function of the step count", schedule)
    every = check_int("every", every, minimum=1)

    def at(count: int) -> float:
        return schedule(count // every)

    return at


class ReducibleSchedule:
    """A schedule whose rate a training callback divides, as scikit-learn's
    ``learning_rate='adaptive'`` does: ``schedule(count)`` divided by ``divisor`` once for each
    :meth:`reduce` so far (in turn, as scikit-learn's ``learning_rate /= 5`` is: the same
    floats).

    :attr:`reductions` is its state: a checkpoint keeps it (with the callback that reduces it,
    :class:`~anynet.training.EarlyStopping`), so a resumed run trains at the rate the
    uninterrupted one would.
    """

    def __init__(self, schedule: Schedule, divisor: float = 5.0):
        if not callable(schedule):
            raise fail("schedule", "a function of the step count", schedule)
        self.schedule = schedule
        self.divisor = check_number("divisor", divisor, low=1.0, low_open=True)
        #: How many times the rate was divided so far.
        self.reductions = 0

    def reduce(self) -> None:
        """Divide the rate by :attr:`divisor` from now on."""
        self.reductions += 1

    def __call__(self, count: int) -> float:
        rate = float(self.schedule(count))
        for _ in range(self.reductions):
            rate /= self.divisor
        return rate

    def __repr__(self) -> str:
        return f"ReducibleSchedule(divisor={self.divisor}, reductions={self.reductions})"


def reducible(schedule: Schedule | float, divisor: float = 5.0) -> ReducibleSchedule:
    """``schedule`` (or a constant rate) as a :class:`ReducibleSchedule`.

    Examples
    --------
    >>> from anynet.nn.schedules import reducible
    >>> lr = reducible(1e-3)
    >>> lr.reduce(); lr.reduce()
    >>> lr(0) == 1e-3 / 5 / 5
    True
    """
    return ReducibleSchedule(schedule if callable(schedule) else constant(schedule), divisor)
