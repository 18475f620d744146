"""The library's words in the command line's: the Python arguments anynet's messages and
warnings name, replaced by the flags the user typed; and a message laid out in lines that a
terminal or a log shows whole."""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator

from anynet.errors import AnynetError

#: The Python arguments anynet's messages name (``batch_size=256``, ``batch_size must be``), and
#: the keys of a checkpoint's run record, as the user of the command typed them.
_FLAGS = {
    "hidden_layer_sizes": "--hidden",
    "activation": "--activation",
    "output": "--output",
    "init": "--init",
    "dropout": "--dropout",
    "solver": "--solver",
    "learning_rate_init": "--lr",
    "learning_rate": "--lr-schedule",
    "power_t": "--power-t",
    "n_iter_no_change": "--patience",
    "momentum": "--momentum",
    "alpha": "--alpha",
    "l1": "--l1",
    "max_iter": "--epochs",
    "batch_size": "--batch-size",
    "standardize": "--scale",
    "random_state": "--seed",
    "seed": "--seed",
    "dtype": "--dtype",
    "backend": "--backend",
    "data_dir": "--data-dir",
    "checkpoint_dir": "--checkpoint-dir",
    "checkpoint_every": "--checkpoint-every",
    "checkpoint_steps": "--checkpoint-steps",
    "resume": "--resume",
    "divergence_factor": "--divergence-factor",
}
#: Run-record keys that no one flag sets (listed by a checkpoint that belongs to another run).
_RECORD_KEYS = {
    "network": "the network (--hidden, --activation, --dropout)",
    "data": "the data (--data, --data-dir, --limit, --validation-fraction)",
    "classes": "the classes (--limit)",
}
#: Whole phrases first, where the generic rules below would read badly.
_PHRASES = (
    ("load_fashion_mnist(..., download=True)", "leave out --no-download"),
    ("pass data_dir= the folder holding them", "pass --data-dir, the folder holding them"),
    (" and download=False.", " and --no-download is given."),
    ("download=False", "--no-download"),
    ("divergence_factor=None", "--divergence-factor off"),
)
_NAMES = "|".join(sorted(_FLAGS, key=len, reverse=True))
_ASSIGNED = re.compile(rf"\b({_NAMES})=")  # batch_size=256 -> --batch-size 256
_MUST_BE = re.compile(rf"^({_NAMES}) must be\b")  # anynet.checks' wording
_LISTED = re.compile(rf"^([ \t]+)({_NAMES}|{'|'.join(_RECORD_KEYS)}):", re.MULTILINE)


def flag_words(message: str) -> str:
    """``message`` with the Python arguments it names replaced by the command's flags."""
    for python, flags in _PHRASES:
        message = message.replace(python, flags)
    message = _ASSIGNED.sub(lambda m: _FLAGS[m[1]] + " ", message)
    message = _MUST_BE.sub(lambda m: _FLAGS[m[1]] + " must be", message)
    return _LISTED.sub(lambda m: m[1] + {**_FLAGS, **_RECORD_KEYS}[m[2]] + ":", message)


@contextlib.contextmanager
def in_flags() -> Iterator[None]:
    """Around a call into the library: its errors come out naming flags, not arguments."""
    try:
        yield
    except (AnynetError, ValueError) as exc:
        raise AnynetError(flag_words(str(exc))) from exc


#: The width an error's details are wrapped to off a terminal (a log, a pipe).
LOG_WIDTH = 100
# A list item's marker: "- ", "* " or "1. ", after the line's indentation.
_ITEM = re.compile(r"^(\s*)((?:[-*]|\d+\.)\s+)?")


def layout(prefix: str, message: str, width: int | None = None) -> str:
    """``prefix: message`` as it is printed: its first line whole, the error in one line (a
    log's ``grep error:`` finds it); what a longer message adds after it indented below, each
    line wrapped at ``width`` (the terminal's, else :data:`LOG_WIDTH`) between words, never
    inside one (a path, a URL, a SHA-256 stays whole), a list item's text under its text."""
    if width is None:
        width = LOG_WIDTH
        if sys.stderr is not None and sys.stderr.isatty():
            width = max(60, shutil.get_terminal_size((LOG_WIDTH, 24)).columns - 1)
    lines = [line.rstrip() for line in message.splitlines() if line.strip()] or ["(no message)"]
    out = [f"{prefix}: {lines[0].strip()}"]
    for line in lines[1:]:
        indent, marker = _ITEM.match("  " + line).groups()
        marker = marker or ""
        out += textwrap.wrap(
            line.strip()[len(marker) :],
            width,
            initial_indent=indent + marker,
            subsequent_indent=indent + " " * len(marker),
            break_long_words=False,
            break_on_hyphens=False,
        )
    return "\n".join(out)
