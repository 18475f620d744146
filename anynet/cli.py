"""The ``anynet`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` with an ``add_<name>(subparsers)``
that declares its arguments. Errors anynet raises on purpose become one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence

import anynet
from anynet.backends import backend_status
from anynet.errors import AnynetError

__all__ = ["main"]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"anynet": anynet.__version__, "python": platform.python_version()}
    for dist in ("numpy", "array-api-compat", "array-api-extra"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def add_info(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="version, and which backends and devices work here",
        description="Print anynet's version and, for each backend, whether it works on this "
        "machine, its library version and devices, or why it does not.",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def cmd_info(args: argparse.Namespace) -> int:
    versions = _versions()
    status = backend_status()
    if args.json:
        print(
            json.dumps(
                {
                    "versions": versions,
                    "backends": [
                        {
                            "name": s.name,
                            "available": s.available,
                            "version": s.version,
                            "devices": list(s.devices),
                            "reason": s.reason,
                        }
                        for s in status
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(
        f"anynet {versions.pop('anynet')}  ("
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ")"
    )
    print()
    rows = [("backend", "available", "version", "devices, or why not")]
    for s in status:
        detail = ", ".join(s.devices) if s.available else s.reason
        rows.append((s.name, "yes" if s.available else "no", s.version or "-", detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    return 0


COMMANDS = {"info": (add_info, cmd_info)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except AnynetError as exc:
        print(f"anynet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"anynet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
