"""The distributed bench's tables from given numbers (tests never time): the rows, and the
projection to many nodes from the compute measured per local batch and the gradient size."""

from __future__ import annotations

from types import SimpleNamespace

from bench.bench_distributed import LINKS, markdown, projection


def row(ranks: int, step: float, reduce: float) -> dict:
    alone = {"8 B": 5e-6, "gradient": 4e-4}
    return {
        "network": "mlp",
        "ranks": ranks,
        "batch": 128,
        "local_batch": 128 / ranks,
        "step_s": step,
        "allreduce_s": reduce,
        "compute_s": step - reduce,
        "gradient_bytes": 1_000_000,
        "alone": {"plain": alone, "deterministic": alone},
        "compute_by_batch_s": {"64": 3e-3, "32": 2e-3, "16": 1e-3} if ranks == 1 else {},
    }


def test_projection_adds_a_ring_allreduce_to_the_measured_compute():
    lines = projection([row(1, 6e-3, 0.0), row(2, 3.5e-3, 0.5e-3)], "mlp")
    two = next(line for line in lines if line.startswith("| 2 | 64 |"))
    bandwidth, latency = LINKS["100 Gb/s InfiniBand"]
    expected = 3e-3 + 2 * (1 / 2) * 1_000_000 / bandwidth + 2 * latency
    assert f"| 3.00 | {expected * 1e3:.2f} / {6e-3 / expected:.1f}x |" in two
    # below the smallest batch measured, its compute is the floor
    assert next(line for line in lines if line.startswith("| 16 | 8 |")).split(" | ")[2] == "1.00"


def test_markdown_has_a_row_per_run_and_says_nccl_was_not_run():
    info = {"date": "2026-11-30", "cpus": 2, "python": "3.11", "cpu": "test"}
    args = SimpleNamespace(rounds=1, steps=5, warmup=1)
    text = markdown([row(1, 6e-3, 0.0), row(2, 3.5e-3, 0.5e-3)], info, args)
    assert "| mlp | 2 | 128 | 64 | 3.50 | 3.00 | 0.500 | 14% |" in text
    assert "1.71x" in text  # 6.0 / 3.5 ms
    assert "The NCCL path (CuPy on GPUs) was not measured" in text
