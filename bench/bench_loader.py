"""DataLoader throughput on Fashion-MNIST's training set: batches per second and device memory.

Run ``python -m bench.bench_loader`` (NumPy), or name backends::

    python -m bench.bench_loader --backend numpy --backend torch
    python -m bench.bench_loader --backend cupy --stream-budget 16000000   # on a GPU

Each epoch is one pass of ``for X, y in loader`` with the device synchronized at its end, so
queued GPU work is counted. Configurations are interleaved (one epoch of each, repeated) and
the median is reported, as this machine's timings are noisy. Results go to
``bench/results/loader_<backend>.md`` and ``.json``.

The CuPy rows (resident, and streamed through pinned buffers and a copy stream) are ready but
have not been run yet: no GPU was available when this bench was written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import anynet
from anynet.data import DataLoader
from anynet.datasets import load_fashion_mnist

RESULTS = Path(__file__).parent / "results"


def device_memory(be: anynet.Backend) -> int | None:
    """Bytes the backend's allocator holds on a GPU now; None on the CPU."""
    if be.name == "cupy":
        be.synchronize()
        return int(be.library.get_default_memory_pool().used_bytes())
    if be.name == "torch" and be.device.type == "cuda":
        be.synchronize()
        return int(be.library.cuda.memory_allocated(be.device))
    return None


def run_epoch(loader: DataLoader) -> float:
    """Seconds for one epoch, device work included."""
    be = loader.backend
    be.synchronize()
    start = time.perf_counter()
    for _xb, _yb in loader:
        pass
    be.synchronize()
    return time.perf_counter() - start


def bench_backend(name, X, y, batch_sizes, repeats, normalize, stream_budget):
    be = anynet.get_backend(name)
    modes = [("resident", None)] + ([("streamed", stream_budget)] if stream_budget else [])
    loaders, rows = {}, []
    for mode, budget in modes:
        for batch in batch_sizes:
            before = device_memory(be)
            start = time.perf_counter()
            loader = DataLoader(
                X, y, batch, backend=be, seed=0, normalize=normalize, max_device_bytes=budget
            )
            be.synchronize()
            setup = time.perf_counter() - start
            after = device_memory(be)
            run_epoch(loader)  # warm-up: allocator, kernels compiled on first use
            loaders[mode, batch] = loader
            rows.append(
                {
                    "backend": be.spec,
                    "mode": mode,
                    "batch_size": batch,
                    "batches_per_epoch": len(loader),
                    "setup_s": setup,
                    "loader_device_bytes": loader.device_bytes,
                    "allocator_bytes_added": None if before is None else after - before,
                    "pinned": loader.pin_memory,
                    "epoch_s": [],
                }
            )
    for _ in range(repeats):  # interleaved: one epoch of every configuration per round
        for row in rows:
            row["epoch_s"].append(run_epoch(loaders[row["mode"], row["batch_size"]]))
    for row in rows:
        median = statistics.median(row["epoch_s"])
        row["median_epoch_s"] = median
        row["batches_per_s"] = row["batches_per_epoch"] / median
        row["samples_per_s"] = X.shape[0] / median
    return rows


def markdown(rows, meta) -> str:
    lines = [
        f"# DataLoader throughput: {meta['backend']}",
        "",
        f"{meta['date']} · {meta['machine']} · numpy {meta['numpy']} · "
        f"Fashion-MNIST train ({meta['n_samples']} samples, uint8 on the device) · "
        f"normalize={meta['normalize']!r} · median of {meta['repeats']} interleaved epochs",
        "",
        "| mode | batch | batches/s | samples/s | ms/epoch | loader device MB | "
        "allocator MB added | setup s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        added = r["allocator_bytes_added"]
        lines.append(
            f"| {r['mode']}{' (pinned)' if r['pinned'] else ''} | {r['batch_size']} | "
            f"{r['batches_per_s']:.0f} | {r['samples_per_s']:.0f} | "
            f"{1000 * r['median_epoch_s']:.1f} | {r['loader_device_bytes'] / 1e6:.1f} | "
            f"{'n/a (CPU)' if added is None else f'{added / 1e6:.1f}'} | {r['setup_s']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", help="repeatable; default: numpy")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=5, help="epochs per configuration")
    parser.add_argument(
        "--normalize", default="unit", choices=["unit", "standardize", "symmetric", "none"]
    )
    parser.add_argument(
        "--stream-budget",
        type=int,
        default=8_000_000,
        help="also bench streaming from host memory under this device budget (0: skip)",
    )
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    normalize = None if args.normalize == "none" else args.normalize

    X, y = load_fashion_mnist("train")
    for name in args.backend or ["numpy"]:
        try:
            be = anynet.get_backend(name)
        except anynet.AnynetError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        rows = bench_backend(
            be, X, y, args.batch_sizes, args.repeats, normalize, args.stream_budget or None
        )
        meta = {
            "backend": be.spec,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "anynet": anynet.__version__,
            "n_samples": int(X.shape[0]),
            "normalize": normalize,
            "repeats": args.repeats,
        }
        text = markdown(rows, meta)
        print(text)
        if not args.no_save:
            RESULTS.mkdir(parents=True, exist_ok=True)
            stem = f"loader_{be.spec.replace(':', '_')}"
            (RESULTS / f"{stem}.md").write_text(text)
            report = {"meta": meta, "rows": rows}
            (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
