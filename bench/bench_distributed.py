"""Data-parallel training on MPI: time per step, split into compute and all-reduce, at 1 and 2
ranks, and a projection of scaling to many nodes from the measured all-reduce cost.

    python -m bench.bench_distributed                       # MLP and CNN, 1 and 2 ranks
    python -m bench.bench_distributed --network mlp --ranks 1 2 4 --steps 200 --rounds 5

Each (network, ranks) runs as ``mpiexec -n RANKS python -m mpi4py -m bench.bench_distributed
--worker ...``, one BLAS thread per rank; configurations take turns, round after round,
because a shared machine is noisy. A worker trains ``--steps`` steps of the global batch on
random Fashion-MNIST-shaped images (timing does not depend on the pixels) after a warm-up,
through anynet's :class:`~anynet.distributed.DataParallelStep` on a communicator wrapped to
time its collectives: "all-reduce" is the time in them (the gradients' sum and the gather of
each rank's batch size and loss, waiting for the slowest rank included), "compute" the rest
of the step. It also times the all-reduce alone, of an 8-byte and a gradient-sized buffer,
plain and in rank order (``deterministic``). Rank 0 reports the medians.

Results go to ``bench/results/distributed_<date>_<machine>.md`` and ``.json``; the markdown
ends with the projection. Needs mpi4py and an mpiexec (``pip install mpi4py mpich``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from anynet.distributed import Communicator

RESULTS = Path(__file__).parent / "results"
#: The networks of the other rows: ``python -m bench``'s MLP, and ``--network cnn``'s CNN.
NETWORKS = {
    "mlp": "784-256-128-64-10 ReLU MLP, Adam (lr 1e-3)",
    "cnn": "anynet's default CNN (3x conv-BN-ReLU-pool, 32/64/128 channels, Dense 256, Dense), "
    "Adam (lr 1e-3)",
}
#: Networks to project onto: bandwidth in bytes/s, latency in seconds per message.
LINKS = {
    "100 Gb/s InfiniBand": (12.5e9, 2e-6),
    "25 Gb/s Ethernet": (3.1e9, 15e-6),
    "10 Gb/s Ethernet": (1.25e9, 30e-6),
}
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


class TimedCommunicator(Communicator):
    """``inner`` with the seconds spent in its per-step collectives counted in ``seconds``."""

    def __init__(self, inner: Communicator):
        self.inner = inner
        self.rank, self.size = inner.rank, inner.size
        self.deterministic, self.name = inner.deterministic, inner.name
        self.seconds = 0.0

    def allreduce_sum(self, buffer):
        t0 = time.perf_counter()
        try:
            return self.inner.allreduce_sum(buffer)
        finally:
            self.seconds += time.perf_counter() - t0

    def allgather_numbers(self, values):
        t0 = time.perf_counter()
        try:
            return self.inner.allgather_numbers(values)
        finally:
            self.seconds += time.perf_counter() - t0

    def allgather(self, obj):
        return self.inner.allgather(obj)

    def bcast(self, obj, root=0):
        return self.inner.bcast(obj, root)

    def barrier(self):
        self.inner.barrier()

    def abort(self, code=1):
        self.inner.abort(code)


# --- a rank ---------------------------------------------------------------------------------


def _model(network: str):
    from anynet import nn
    from anynet.estimator.network import default_cnn

    if network == "cnn":
        return nn.Sequential(*default_cnn((1, 28, 28), 10)), False
    return nn.Sequential(
        nn.Dense(784, 256), nn.ReLU(), nn.Dense(256, 128), nn.ReLU(),
        nn.Dense(128, 64), nn.ReLU(), nn.Dense(64, 10),
    ), True  # fmt: skip


def _allreduce_alone(comm: Communicator, size: int, repeats: int) -> float:
    """Median seconds of one all-reduce of ``size`` float32 values."""
    buffer = np.ones(size, dtype=np.float32)
    times = []
    for _ in range(repeats):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_sum(buffer)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def worker(network: str, batch: int, steps: int, warmup: int) -> None:
    import anynet
    from anynet import nn
    from anynet.data import DataLoader
    from anynet.distributed import DataParallelStep, communicator_for
    from anynet.training import select_step

    be = anynet.get_backend("numpy")
    comm = TimedCommunicator(communicator_for(be))
    rng = np.random.default_rng(0)
    n = batch * (steps + warmup)
    X = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    model, flat = _model(network)
    loader = DataLoader(
        X, y, batch, seed=0, backend=be, flatten=flat, shard=comm.shard, normalize="unit"
    )
    params = model.init_params(rng=be.host_generator(0), backend=be)
    inner = select_step(model, nn.adam(1e-3), params, backend=be)
    step = DataParallelStep(inner, comm)
    totals, reduces = [], []
    for b, (Xb, yb) in enumerate(loader):
        comm.barrier()  # every step starts together: the times are the step's own
        before, t0 = comm.seconds, time.perf_counter()
        step(Xb, yb)
        if b >= warmup:
            totals.append(time.perf_counter() - t0)
            reduces.append(comm.seconds - before)
    gradient = sum(int(np.prod(v.shape)) for k, v in inner.grads.items())
    # On one rank, compute alone at the local batches of more ranks: what the projection uses.
    by_batch = {}
    if comm.size == 1:
        local = batch // 2
        while local >= 1:
            smaller = DataLoader(X, y, local, seed=0, backend=be, flatten=flat, normalize="unit")
            times = []
            for b, (Xb, yb) in enumerate(smaller):
                if b == warmup + steps:
                    break
                t0 = time.perf_counter()
                inner(Xb, yb)
                if b >= warmup:
                    times.append(time.perf_counter() - t0)
            by_batch[local] = statistics.median(times)
            local //= 2
    alone = {}
    for deterministic in (False, True):
        plain = communicator_for(be, deterministic=deterministic)
        key = "deterministic" if deterministic else "plain"
        alone[key] = {
            "8 B": _allreduce_alone(plain, 2, 200),
            "gradient": _allreduce_alone(plain, gradient, 50),
        }
    if comm.rank == 0:
        result = {
            "network": network,
            "ranks": comm.size,
            "batch": batch,
            "local_batch": loader.batch_samples(0) / comm.size,
            "step_name": step.name,
            "step_s": statistics.median(totals),
            "allreduce_s": statistics.median(reduces),
            "compute_s": statistics.median(t - r for t, r in zip(totals, reduces, strict=True)),
            "gradient_values": gradient,
            "gradient_bytes": gradient * 4,
            "alone": alone,
            "compute_by_batch_s": by_batch,
        }
        print("RESULT " + json.dumps(result), flush=True)


# --- the driver -----------------------------------------------------------------------------


def _run(mpiexec: str, ranks: int, network: str, batch: int, steps: int, warmup: int) -> dict:
    env = {**os.environ, **ONE_THREAD}
    python = [sys.executable, "-m", "mpi4py", "-m", "bench.bench_distributed"]
    cmd = [mpiexec, "-n", str(ranks), *python]
    cmd += ["--worker", network, str(batch), str(steps), str(warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key in ("step_s", "allreduce_s", "compute_s"):
        out[key] = statistics.median(r[key] for r in runs)
    for how in out["alone"]:
        for size in out["alone"][how]:
            out["alone"][how][size] = statistics.median(r["alone"][how][size] for r in runs)
    out["rounds"] = len(runs)
    return out


def projection(rows: list[dict], network: str) -> list[str]:
    """Markdown: time per step on p nodes, one rank each, the global batch split over them:
    the compute measured on one rank at the local batch B / p, plus a ring all-reduce of the
    gradient on a few networks, 2 (p - 1) / p * G / bandwidth + 2 (p - 1) * latency."""
    one = next((r for r in rows if r["network"] == network and r["ranks"] == 1), None)
    if one is None:
        return []
    B, G = one["batch"], one["gradient_bytes"]
    compute = {int(b): t for b, t in one["compute_by_batch_s"].items()}
    compute[B] = one["compute_s"]
    smallest = min(compute)
    lines = [
        f"### Projection: {network}, global batch {B}, gradient {G / 1e6:.2f} MB",
        "",
        "Compute: measured on one rank at each local batch B/p. All-reduce: a ring's "
        "2 (p-1)/p x G / bandwidth + "
        "2 (p-1) x latency (MPI and NCCL use rings or trees at this size), on networks of "
        "these bandwidths and latencies: "
        + "; ".join(f"{n} {bw / 1e9:g} GB/s, {lat * 1e6:g} us" for n, (bw, lat) in LINKS.items())
        + ". One rank per node (strong scaling):",
        "",
        "| nodes | local batch | compute ms | "
        + " | ".join(f"{link}: ms / speedup" for link in LINKS)
        + " |",
        "|---|---|---|" + "---|" * len(LINKS),
    ]
    base = one["step_s"]
    for p in (1, 2, 4, 8, 16, 32, 64, 128):
        local = B // p
        spent = compute.get(local, compute[smallest]) if local >= smallest else compute[smallest]
        cells = []
        for bandwidth, latency in LINKS.values():
            ring = 0.0 if p == 1 else 2 * (p - 1) / p * G / bandwidth + 2 * (p - 1) * latency
            cells.append(f"{(spent + ring) * 1e3:.2f} / {base / (spent + ring):.1f}x")
        lines.append(f"| {p} | {B / p:g} | {spent * 1e3:.2f} | " + " | ".join(cells) + " |")
    floor = 2 * G / LINKS["100 Gb/s InfiniBand"][0]
    lines += [
        "",
        f"The all-reduce never costs less than about 2 x G / bandwidth ({floor * 1e3:.2f} ms "
        "on 100 Gb/s InfiniBand) whatever the node count, and its latency term grows with it, "
        "while compute falls with the local batch only as far as a small batch's fixed costs "
        f"({compute[smallest] * 1e3:.2f} ms at batch {smallest}). Where the speedup stops "
        "growing, more nodes need a larger global batch (the same local batch per node: weak "
        "scaling, whose compute per step stays constant).",
        "",
    ]
    return lines


def markdown(rows: list[dict], info: dict, args) -> str:
    lines = [
        "# Data-parallel training on MPI (CPU)",
        "",
        f"{info['date']} · {info.get('cpu', '?')}, {info['cpus']} CPUs · python "
        f"{info['python']} · mpi4py {info.get('mpi4py', '?')} · {info.get('mpi', '?')} · "
        f"median of {args.rounds} interleaved rounds of {args.steps} steps (after "
        f"{args.warmup} warm-up steps), one BLAS thread per rank, random uint8 images",
        "",
        "All ranks on this one machine: the all-reduce goes through shared memory, so it is "
        "the cheapest it will ever be; the projection below puts it on real networks.",
        "",
        "| network | ranks | global batch | per rank | ms/step | compute ms | all-reduce ms "
        "| all-reduce share | samples/s | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        single = next((o for o in rows if o["network"] == r["network"] and o["ranks"] == 1), None)
        speedup = f"{single['step_s'] / r['step_s']:.2f}x" if single else "n/a"
        lines.append(
            f"| {r['network']} | {r['ranks']} | {r['batch']} | {r['local_batch']:g} | "
            f"{r['step_s'] * 1e3:.2f} | {r['compute_s'] * 1e3:.2f} | "
            f"{r['allreduce_s'] * 1e3:.3f} | {r['allreduce_s'] / r['step_s']:.0%} | "
            f"{r['batch'] / r['step_s']:,.0f} | {speedup} |"
        )
    lines += [
        "",
        "All-reduce alone (median of 50-200 calls), microseconds:",
        "",
        "| network | ranks | gradient | 8 B plain | 8 B in rank order | gradient plain "
        "| gradient in rank order |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["ranks"] < 2:
            continue
        a = r["alone"]
        lines.append(
            f"| {r['network']} | {r['ranks']} | {r['gradient_bytes'] / 1e3:,.0f} KB | "
            f"{a['plain']['8 B'] * 1e6:.1f} | {a['deterministic']['8 B'] * 1e6:.1f} | "
            f"{a['plain']['gradient'] * 1e6:.0f} | {a['deterministic']['gradient'] * 1e6:.0f} |"
        )
    lines.append("")
    for network in dict.fromkeys(r["network"] for r in rows):
        lines += projection(rows, network)
    lines += [
        "The NCCL path (CuPy on GPUs) was not measured: no GPU machine was available when this "
        "bench was written.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", nargs="+", default=["mlp", "cnn"], choices=sorted(NETWORKS))
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=128, help="the global batch")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--tag", default="", help="appended to the result files' names")
    parser.add_argument("--worker", nargs=4, metavar=("NET", "BATCH", "STEPS", "WARMUP"))
    args = parser.parse_args(argv)
    if args.worker:
        network, batch, steps, warmup = args.worker
        worker(network, int(batch), int(steps), int(warmup))
        return 0
    mpiexec = shutil.which(
        "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if mpiexec is None:
        print("no mpiexec found: pip install mpi4py mpich", file=sys.stderr)
        return 2
    from bench.run import machine, result_name

    info = machine()
    import mpi4py
    from mpi4py import MPI

    info["mpi4py"] = mpi4py.__version__
    info["mpi"] = " ".join(MPI.Get_library_version().splitlines()[0].split())
    configs = [(net, k) for net in args.network for k in args.ranks]
    runs: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
    for i in range(args.rounds):
        for net, k in configs:
            result = _run(mpiexec, k, net, args.batch, args.steps, args.warmup)
            runs[(net, k)].append(result)
            print(
                f"round {i + 1}/{args.rounds} {net} {k} ranks: {result['step_s'] * 1e3:.2f} "
                f"ms/step, all-reduce {result['allreduce_s'] * 1e3:.3f} ms",
                file=sys.stderr,
            )
    rows = [_median_of(runs[c]) for c in configs]
    name = result_name("cpu", info).replace("train_cpu", "distributed") + args.tag
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    (args.out / f"{name}.md").write_text(markdown(rows, info, args))
    print(f"wrote {args.out / name}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
