"""Benchmark anynet against its peers, in one run, and write the tables.

    python -m bench                      # CPU: anynet-numpy, PyTorch, scikit-learn, the seed
    python -m bench --device gpu         # GPU: anynet-cupy, PyTorch eager, PyTorch CUDA graph
    python -m bench --batch 64 --epochs 4 --rounds 3
    python -m bench --peers anynet-numpy anynet-numpy-nonumba pytorch-cpu
    python -m bench --baseline 645ebc1   # adds anynet as it was at that commit: no slowdown?
    python -m bench --network cnn --batch 64 256   # the default CNN against PyTorch's

Each (peer, batch size) trains in a fresh subprocess (so peak memory is its own and no library
warms another's caches), and the peers take turns, round after round, because a shared machine
is noisy: compare within one run, and read the ratios. The first epoch of every run is a
warm-up; the table shows the median of the rest, in milliseconds per epoch.
Results go to ``bench/results/train_<device>_<date>_<machine>.json`` and ``.md``
(``train_cnn_...`` for ``--network cnn``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.cnn_peers import CNN_CPU_PEERS, CNN_GPU_PEERS
from bench.cnn_peers import NETWORK as CNN_NETWORK
from bench.peers import CPU_PEERS, GPU_PEERS, OPTIONAL_PEERS, PEER_ENV

RESULTS = Path(__file__).parent / "results"
TARGETS = {
    # (peer, batch sizes, largest allowed ratio anynet / peer), from the performance issue
    "cpu": [("pytorch-cpu", (64, 128, 256), 0.7), ("sklearn-mlp", (64, 128, 256, 1024), 0.6)],
    "gpu": [("pytorch-eager", (64, 128), 0.25), ("pytorch-cuda-graph", (256, 1024), 1.0)],
    # the convolutional-networks issue: at most PyTorch CPU's time (no target set on a GPU)
    "cnn-cpu": [("pytorch-cpu-cnn", (64, 256), 1.0)],
    "cnn-gpu": [],
}
#: What each ``--network`` trains: its peers on each device, and the table's description.
NETWORKS = {
    "mlp": {
        "cpu": CPU_PEERS,
        "gpu": GPU_PEERS,
        "what": "784-256-128-64-10 ReLU MLP, Adam (lr 1e-3)",
    },
    "cnn": {
        "cpu": CNN_CPU_PEERS,
        "gpu": CNN_GPU_PEERS,
        "what": f"CNN {CNN_NETWORK}, batch norm, Adam (lr 1e-3), images in [0, 1]",
    },
}
ALL_PEERS = {
    **CPU_PEERS,
    **GPU_PEERS,
    **OPTIONAL_PEERS,
    **CNN_CPU_PEERS,
    **CNN_GPU_PEERS,
}


def ours(device: str, network: str = "mlp") -> str:
    """The anynet peer the others are compared with."""
    name = "anynet-numpy" if device == "cpu" else "anynet-cupy"
    return name if network == "mlp" else f"{name}-{network}"


def torch_peer_of(device: str, network: str = "mlp") -> str:
    """The PyTorch peer whose accuracy anynet's is compared with."""
    name = "pytorch-cpu" if device == "cpu" else "pytorch-eager"
    return name if network == "mlp" else f"{name}-{network}"


def worker(peer: str, batch_size: int, epochs: int, seed: int) -> None:
    """Train one peer and print one JSON line."""
    from anynet.datasets import load_fashion_mnist

    fn, default_device = ALL_PEERS[peer]
    X, y = load_fashion_mnist("train")
    X_test, y_test = load_fashion_mnist("test")
    result = fn((X, y, X_test, y_test), batch_size, epochs, default_device, seed)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if peer.startswith("anynet"):  # which copy ran: the checkout, or a --baseline tree
        import anynet

        result["anynet_from"] = str(Path(anynet.__file__).parent.parent)
    if peer in GPU_PEERS or peer in CNN_GPU_PEERS:
        result["peak_device_mb"] = _peak_device_mb(peer)
    print(json.dumps(result))


def _peak_device_mb(peer: str) -> float | None:
    try:
        if peer.startswith("pytorch"):
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        import cupy

        return cupy.get_default_memory_pool().total_bytes() / 2**20
    except Exception:
        return None


def baseline_tree(ref: str) -> Path:
    """The repository at ``ref``, extracted once into a temporary folder: a ``--baseline``
    peer runs the benchmark's own worker from there, with that commit's anynet."""
    import tempfile

    root = Path(__file__).parent.parent
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = Path(tempfile.gettempdir()) / f"anynet-bench-{sha}"
    if not (tree / "anynet").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=root, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _run_worker(peer: str, batch: int, epochs: int, seed: int) -> dict:
    """One peer's run in a fresh process. ``name@ref`` runs peer ``name`` from ``ref``'s tree."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    name, _, ref = peer.partition("@")
    env.update(PEER_ENV.get(name, {}))
    cwd = None
    if ref:
        cwd = baseline_tree(ref)
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--worker", name, str(batch), str(epochs), str(seed)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=3600,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    info = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for dist in ("anynet-nn", "numpy", "scikit-learn", "torch", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def result_name(device: str, info: dict, network: str = "mlp") -> str:
    """``train_<device>_<date>_<machine>`` (``train_cnn_...`` for the CNN): results are kept
    per day and machine, since the machine a benchmark runs on (the CI kind) changes between
    sessions."""
    import re

    machine = info.get("gpu") or info.get("cpu") or platform.machine()
    slug = re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")
    kind = device if network == "mlp" else f"{network}_{device}"
    return f"train_{kind}_{info['date']}_{slug}"


def summarize(runs: dict, device: str) -> dict:
    """Median ms per epoch (warm-up epochs dropped), accuracy, ops, memory per peer and batch."""
    table = {}
    for (peer, batch), results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            table.setdefault(peer, {})[batch] = {"error": results[0]["error"]}
            continue
        times = [t for r in ok for t in r["epoch_seconds"][1:]]
        accuracies = [r["test_accuracy"] for r in ok]
        row = {
            "ms_per_epoch": 1000 * statistics.median(times),
            "ms_per_epoch_min": 1000 * min(times),
            "epochs_timed": len(times),
            # Accuracy after a few epochs varies with the seed by ~0.5-0.8 pp (measured over
            # 10 seeds), as much as the 0.5 pp target: a mean with its standard error.
            "test_accuracy": statistics.fmean(accuracies),
            "test_accuracy_se": _standard_error(accuracies),
            "runs": len(ok),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
        }
        for key in ("ops_per_step", "fast_path", "peak_device_mb", "note", "dtype", "model"):
            if key in ok[-1]:
                row[key] = ok[-1][key]
        table.setdefault(peer, {})[batch] = row
    return table


def _standard_error(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    return statistics.stdev(values) / len(values) ** 0.5


def paired_ratio(runs: dict, ours: str, peer: str, batch: int) -> float | None:
    """Median over rounds of (our median epoch / the peer's median epoch) in the same round.

    Runs of one round are minutes apart; on a shared machine whose speed drifts over tens of
    seconds, pairing them cancels most of the drift that a ratio of overall medians keeps.
    """
    a, b = runs.get((ours, batch), []), runs.get((peer, batch), [])
    ratios = [
        statistics.median(x["epoch_seconds"][1:]) / statistics.median(y["epoch_seconds"][1:])
        for x, y in zip(a, b, strict=False)
        if "error" not in x and "error" not in y
    ]
    return statistics.median(ratios) if ratios else None


def targets(table: dict, runs: dict, device: str, network: str = "mlp") -> list[dict]:
    anynet = ours(device, network)
    out = []
    for peer, batches, limit in TARGETS[device if network == "mlp" else f"{network}-{device}"]:
        for batch in batches:
            ratio = paired_ratio(runs, anynet, peer, batch)
            if ratio is None:
                continue
            out.append(
                {
                    "peer": peer,
                    "batch": batch,
                    "ratio": ratio,
                    "limit": limit,
                    "met": ratio <= limit,
                }
            )
    torch_peer = torch_peer_of(device, network)
    for batch, a in table.get(anynet, {}).items():
        b = table.get(torch_peer, {}).get(batch, {})
        if "test_accuracy" in a and "test_accuracy" in b:
            # How far anynet's mean accuracy is below PyTorch's (negative: above it).
            gap = 100 * (b["test_accuracy"] - a["test_accuracy"])
            ses = (a.get("test_accuracy_se"), b.get("test_accuracy_se"))
            se = None if None in ses else 100 * (ses[0] ** 2 + ses[1] ** 2) ** 0.5
            out.append(
                {
                    "peer": torch_peer,
                    "batch": batch,
                    "accuracy_gap_pp": gap,
                    "accuracy_gap_se_pp": se,
                    "limit": 0.5,
                    "met": gap <= 0.5,
                }
            )
    return out


def markdown(table: dict, runs: dict, checks: list[dict], info: dict, device: str, args) -> str:
    batches = sorted({b for rows in table.values() for b in rows})
    network = getattr(args, "network", "mlp")
    anynet = ours(device, network)
    lines = [
        f"# anynet training benchmark ({device}{', ' + network if network != 'mlp' else ''})",
        "",
        f"{info['date']}, {info.get('cpu', '?')} ({info['cpus']} cores)"
        + (f", {info['gpu']}" if "gpu" in info else "")
        + f"; Python {info['python']}, "
        + ", ".join(
            f"{k} {info[k]}"
            for k in ("anynet-nn", "numpy", "torch", "scikit-learn", "cupy-cuda12x", "cupy-cuda13x")
            if k in info
        ),
        "",
        f"{NETWORKS[network]['what']}, Fashion-MNIST resident in memory; "
        f"{args.epochs} epochs per run, first dropped as warm-up, {args.rounds} interleaved "
        "rounds in shuffled order, each round with its own seed; median ms per epoch (and the "
        "fastest epoch). anynet's ratio to a peer is the median over rounds of the ratio "
        "within each round (paired, to cancel the machine's drift). Test accuracy after the "
        "same epochs: the mean over the rounds' seeds, ± its standard error.",
        "",
        "| peer | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for peer, rows in table.items():
        cells = []
        for b in batches:
            r = rows.get(b, {})
            if "ms_per_epoch" in r:
                ratio = ""
                paired = paired_ratio(runs, anynet, peer, b) if peer != anynet else None
                if paired is not None:
                    ratio = f" (anynet {paired:.2f}x)"
                se = r.get("test_accuracy_se")
                accuracy = f"{100 * r['test_accuracy']:.1f}%" + (
                    f" ± {100 * se:.1f}" if se is not None else ""
                )
                cells.append(
                    f"{r['ms_per_epoch']:.0f} ms (min {r['ms_per_epoch_min']:.0f}), "
                    f"{accuracy}{ratio}"
                )
            else:
                cells.append(r.get("error", "-")[:60])
        lines.append(f"| {peer} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Operations per training step, and peak memory (resident set of the process):",
        "",
        "| peer | batch | ops per step | peak RSS MB | notes |",
        "|---|---|---|---|---|",
    ]
    for peer, rows in table.items():
        for b, r in sorted(rows.items()):
            if "ms_per_epoch" not in r:
                continue
            ops = ", ".join(f"{k}: {v}" for k, v in r.get("ops_per_step", {}).items()) or "-"
            notes = "; ".join(
                str(r[k])
                for k in ("fast_path", "dtype", "model", "note", "peak_device_mb")
                if k in r
            )
            lines.append(f"| {peer} | {b} | {ops} | {r['peak_rss_mb']:.0f} | {notes} |")
    if checks:
        lines += [
            "",
            "Targets:",
            "",
            "| target | batch | measured | limit | met |",
            "|---|---|---|---|---|",
        ]
        for c in checks:
            if "ratio" in c:
                what, got = f"anynet / {c['peer']} time", f"{c['ratio']:.3f}x"
                limit = f"<= {c['limit']}x"
            else:
                what = f"accuracy below {c['peer']} (mean)"
                se = c.get("accuracy_gap_se_pp")
                got = f"{c['accuracy_gap_pp']:+.2f}" + (f" ± {se:.2f}" if se is not None else "")
                got += " pp"
                limit = "<= 0.5 pp"
            lines.append(
                f"| {what} | {c['batch']} | {got} | {limit} | {'yes' if c['met'] else 'NO'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument(
        "--network", choices=sorted(NETWORKS), default="mlp", help="what the peers train"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128, 256, 1024])
    parser.add_argument("--epochs", type=int, default=3, help="per run, the first a warm-up")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peers", nargs="+", default=None)
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for the tables (default: %(default)s)"
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help="also run anynet as it was at this git commit (peer anynet-numpy@REF)",
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("PEER", "BATCH", "EPOCHS", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        peer, batch, epochs, seed = args.worker
        worker(peer, int(batch), int(epochs), int(seed))
        return 0
    peers = args.peers or list(NETWORKS[args.network][args.device])
    if args.baseline:
        peers.append(f"{ours(args.device, args.network)}@{args.baseline}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch of each run is a warm-up")
    runs: dict = {}
    order = random.Random(0)  # a seeded shuffle: the same run order every time
    for rnd in range(args.rounds):
        for batch in args.batch:
            # Shuffled each round: on a shared machine the first run after a pause, or during a
            # neighbour's burst, is slower; no peer should always take that place.
            for peer in order.sample(peers, len(peers)):
                result = _run_worker(peer, batch, args.epochs, seed=rnd)
                runs.setdefault((peer, batch), []).append(result)
                shown = result.get("error") or (
                    f"{1000 * statistics.median(result['epoch_seconds'][1:]):.0f} ms/epoch, "
                    f"{100 * result['test_accuracy']:.2f}%"
                )
                print(
                    f"round {rnd + 1}/{args.rounds}  batch {batch:5d}  {peer:20s} {shown}",
                    flush=True,
                )
    table = summarize(runs, args.device)
    checks = targets(table, runs, args.device, args.network)
    info = machine()
    args.results.mkdir(parents=True, exist_ok=True)
    md = markdown(table, runs, checks, info, args.device, args)
    stem = result_name(args.device, info, args.network)
    (args.results / f"{stem}.md").write_text(md)
    (args.results / f"{stem}.json").write_text(
        json.dumps(
            {
                "machine": info,
                "settings": {
                    k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                },
                "results": {
                    peer: {str(b): r for b, r in rows.items()} for peer, rows in table.items()
                },
                "targets": checks,
                # Every run as measured, for anyone who wants another statistic.
                "runs": [
                    {"peer": p, "batch": b, "round": i, **r}
                    for (p, b), rs in runs.items()
                    for i, r in enumerate(rs)
                ],
            },
            indent=2,
        )
    )
    print()
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
