"""Argument checks, in one wording: ``<name> must be <what>; got <value>``.

Every public function and class that takes a number, a count, a flag or a choice checks it here
and gets back the value in its plain Python type (a NumPy integer comes back an ``int``). A
failed check raises :class:`~anynet.errors.ArgumentError`, a ``ValueError`` and a ``TypeError``
at once. Booleans are never numbers here: ``batch_size=True`` is a mistake, not 1.

>>> from anynet.checks import check_int
>>> check_int("batch_size", 64, minimum=1)
64
>>> check_int("batch_size", 0, minimum=1)
Traceback (most recent call last):
...
anynet.errors.ArgumentError: batch_size must be an integer >= 1; got 0
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Collection
from typing import Any

from anynet.errors import ArgumentError

__all__ = ["check_choice", "check_flag", "check_int", "check_number", "fail"]


def fail(name: str, expected: str, value: Any, hint: str = "") -> ArgumentError:
    """The error for argument ``name``: what it must be, what came, and what to do."""
    return ArgumentError(
        f"{name} must be {expected}; got {value!r}" + (f". {hint}" if hint else "")
    )


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def _bounds(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, hint: str = ""
) -> int:
    """``value`` as an ``int`` within ``[minimum, maximum]``."""
    expected = " ".join(("an integer", _bounds(minimum, maximum, False, False))).strip()
    if _is_bool(value):
        raise fail(name, expected, value, hint)
    try:
        number = operator.index(value)
    except TypeError:
        raise fail(name, expected, value, hint) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise fail(name, expected, value, hint)
    return int(number)


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a finite ``float`` within the bounds (``low_open``: ``low`` excluded)."""
    expected = " ".join(("a number", _bounds(low, high, low_open, high_open))).strip()
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise fail(name, expected, value, hint)
    number = float(value)
    if not math.isfinite(number):
        raise fail(name, expected, value, hint)
    if low is not None and (number <= low if low_open else number < low):
        raise fail(name, expected, value, hint)
    if high is not None and (number >= high if high_open else number > high):
        raise fail(name, expected, value, hint)
    return number


def check_flag(name: str, value: Any) -> bool:
    """``value`` as a ``bool``: ``True`` or ``False`` (NumPy's too), nothing else."""
    if not _is_bool(value):
        raise fail(name, "True or False", value)
    return bool(value)


def check_choice(name: str, value: Any, choices: Collection[Any], hint: str = "") -> Any:
    """``value``, if it is one of ``choices``."""
    try:
        ok = value in choices
    except TypeError:  # unhashable
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        raise fail(name, f"one of {listed}", value, hint)
    return value
