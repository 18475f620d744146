"""The ``anynet`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` with an ``add_<name>(subparsers)``
that declares its arguments. Errors anynet raises on purpose become one line on stderr and a
non-zero exit, never a traceback; what a message adds after its first line (the ways to get
the data, a list of differences) follows it indented. Messages and warnings from the library
name the flags the user typed, not the Python arguments behind them.

- :mod:`~anynet.cli.info`, :mod:`~anynet.cli.train`, :mod:`~anynet.cli.evaluate`,
  :mod:`~anynet.cli.predict`: the subcommands (predict with its image reading);
- :mod:`~anynet.cli.arguments`: the argument types;
- :mod:`~anynet.cli.outputs`: the paths a run will write, checked before its work;
- :mod:`~anynet.cli.data`: Fashion-MNIST as ``--data-dir`` and ``--no-download`` say;
- :mod:`~anynet.cli.own_data`: your own data (``--data``), its validation split, and new data
  held to what a model was trained on;
- :mod:`~anynet.cli.messages`: the library's argument names as the command's flags.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

import anynet
from anynet.cli.evaluate import add_evaluate, cmd_evaluate
from anynet.cli.info import add_info, cmd_info
from anynet.cli.messages import flag_words, layout
from anynet.cli.predict import add_predict, cmd_predict
from anynet.cli.train import add_train, cmd_train
from anynet.errors import AnynetError

__all__ = ["main"]


COMMANDS = {
    "info": (add_info, cmd_info),
    "train": (add_train, cmd_train),
    "evaluate": (add_evaluate, cmd_evaluate),
    "predict": (add_predict, cmd_predict),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block is one ``-h`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="anynet",
        description="Neural-network classifiers whose hand-written backprop runs on any Array "
        "API backend (NumPy, CuPy, PyTorch, array-api-strict).",
    )
    parser.add_argument("--version", action="version", version=f"anynet {anynet.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _report(prefix: str, message: str) -> None:
    """``prefix: message`` on stderr: its first line is the whole error, in one line; what a
    library message says after it (the ways to get the data, a list of differences) follows
    indented, one item a line, each wrapped to the terminal (or a log's width) rather than
    run together into one unreadable line (see :func:`~anynet.cli.messages.layout`)."""
    print(layout(prefix, message), file=sys.stderr)


#: What to try when a command runs out of memory.
_MEMORY_HINTS = {
    "train": "a smaller --hidden, --batch-size or --limit?",
    "evaluate": "a machine with more memory, or a smaller model?",
    "predict": "fewer images at once: smaller IDX files, or fewer INPUT arguments?",
}


def _out_of_memory(command: str, exc: MemoryError) -> str:
    """The one line for a refused allocation: NumPy's message says what it was (``Unable to
    allocate 5.6 TiB for an array with shape ...``); where a MemoryError has none, where it
    happened, in anynet's or a library's function."""
    said = str(exc).strip()
    if not said:
        tb, where = exc.__traceback__, ""
        while tb is not None:  # the innermost frame: where the allocation was asked for
            frame = tb.tb_frame
            where = f" in {frame.f_globals.get('__name__', '?')}.{frame.f_code.co_name}"
            tb = tb.tb_next
        said = f"an allocation{where} was refused (its size not reported)"
    return f"out of memory: {said} ({_MEMORY_HINTS.get(command, 'a machine with more memory?')})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"anynet {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        # A warning is for the user of the command: no source file and line, and flags' names.
        _report(f"{prefix}: warning", flag_words(str(message)))

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return COMMANDS[args.command][1](args)
    except BrokenPipeError:
        # The reader went away (`anynet predict ... | head`): what it wanted it has. Point
        # stdout at nothing, so that Python's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command a pipe ended
    except (AnynetError, ValueError, OSError) as exc:
        # Bad input ends as one error line; ANYNET_DEBUG=1 keeps the traceback for developers.
        if os.environ.get("ANYNET_DEBUG"):
            raise
        _report(f"{prefix}: error", str(exc))
        return 1
    except MemoryError as exc:  # an allocation refused outright; the OOM killer is no exception
        if os.environ.get("ANYNET_DEBUG"):
            raise
        _report(f"{prefix}: error", _out_of_memory(args.command, exc))
        return 1
    except KeyboardInterrupt:
        print(f"anynet {args.command}: interrupted", file=sys.stderr)
        return 130
