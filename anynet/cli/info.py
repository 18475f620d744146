"""``anynet info``: anynet's version, and which backends and devices work here."""

from __future__ import annotations

import argparse
import json
import platform

import anynet
from anynet.backends import backend_status


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
    from anynet.fast import cpu_path

    versions = _versions()
    status = backend_status()
    step, why = cpu_path()
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
                    "cpu_training_step": {"name": step, "why": why},
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
    print()
    print(f"training step on the CPU (numpy): {step} ({why})")
    return 0
