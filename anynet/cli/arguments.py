"""The command's argument types: each error names the argument, what came and what is
expected."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1): a dropout rate or a momentum (1 would never forget, or drop all)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def file_path(text: str) -> Path:
    # Path() drops a trailing slash: 'models/' would become a file called 'models'.
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"expected a file name, got the folder {text!r}; give one inside it, such as "
            f"{text}model.safetensors"
        )
    return Path(text)


def divergence_factor(text: str) -> float | None:
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 1, or 'off'; got {text!r}")
    return value


def layer_sizes(text: str) -> tuple[int, ...]:
    # Every item must be digits: an empty one ('64,,32') is a slip, not a layer to drop, and
    # int()'s '1_000' or '+64' is nobody's layer size.
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
        why = " (an empty item)" if "" in parts else ""
        raise argparse.ArgumentTypeError(
            f"expected hidden layer sizes such as '256,128', positive integers separated by "
            f"commas; got {text!r}{why}"
        )
    return tuple(int(part) for part in parts)
