"""Argument checks: one wording, plain Python values back, booleans never numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anynet.checks import check_choice, check_flag, check_int, check_number
from anynet.errors import AnynetError, ArgumentError


def test_integers_come_back_plain_and_numpy_ones_pass():
    assert check_int("n", np.int64(5), minimum=1) == 5 and type(check_int("n", np.int64(5))) is int


@pytest.mark.parametrize("value", [True, np.bool_(False), 2.0, "3", None, 0])
def test_what_is_not_an_integer_at_least_one_is_refused_in_one_wording(value):
    with pytest.raises(ArgumentError) as info:
        check_int("batch_size", value, minimum=1, hint="Use e.g. 64")
    assert str(info.value) == f"batch_size must be an integer >= 1; got {value!r}. Use e.g. 64"


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, 1.0, True, "0.5"])
def test_numbers_outside_the_interval_or_not_finite_are_refused(value):
    with pytest.raises(ArgumentError, match=r"p must be a number in \[0.0, 1.0\); got"):
        check_number("p", value, low=0.0, high=1.0, high_open=True)


def test_numbers_come_back_as_floats():
    assert type(check_number("lr", np.float32(0.5), low=0.0, low_open=True)) is float


def test_flags_and_choices():
    assert check_flag("shuffle", np.bool_(True)) is True
    with pytest.raises(ArgumentError, match="shuffle must be True or False; got 1"):
        check_flag("shuffle", 1)
    assert check_choice("solver", "adam", ("sgd", "adam")) == "adam"
    with pytest.raises(ArgumentError, match="solver must be one of 'sgd', 'adam'; got 'lbfgs'"):
        check_choice("solver", "lbfgs", ("sgd", "adam"))
    with pytest.raises(ArgumentError):
        check_choice("solver", ["unhashable"], ("sgd",))


def test_the_error_is_what_either_kind_of_caller_catches():
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, TypeError)
    assert issubclass(ArgumentError, AnynetError)
