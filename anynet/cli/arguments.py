"""The command's argument types: each error names the argument, what came and what is
expected; the help's layout, every default shown; the help of the options that several
commands share."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

#: ``--backend``'s help, for every command.
BACKEND_HELP = (
    "where to compute: numpy, cupy, cupy:N, torch, torch:cuda, array_api_strict "
    "(default: $ANYNET_BACKEND, else numpy)"
)
#: ``--data-dir``'s help, for every command that reads Fashion-MNIST.
DATA_DIR_HELP = (
    "folder holding the four Fashion-MNIST .gz files, searched alone (default: "
    "$ANYNET_DATA_DIR/fashion-mnist, the user cache, /usr/share/datasets/fashion-mnist, then "
    "a download)"
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with every default: ``(default: X)`` after an option's help, except for
    a flag (off unless given) and an option whose default is None (its help says what happens
    without it, or its per-model defaults)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)

    def _split_lines(self, text, width):
        # Never at a hyphen: a path or a file name stays whole (anynet-model.safetensors).
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


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
