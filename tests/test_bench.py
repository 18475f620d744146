"""The benchmark's bookkeeping (no timing here: speed is measured in bench/, never asserted)."""

from __future__ import annotations

import argparse

import pytest

run = pytest.importorskip("bench.run")


def fake(ms, acc=0.86, **extra):
    # Three epochs; the first (a warm-up, here slower) must not count.
    return {
        "epoch_seconds": [10.0, ms / 1000, ms / 1000],
        "test_accuracy": acc,
        "peak_rss_mb": 500.0,
        **extra,
    }


RUNS = {
    ("anynet-numpy", 64): [fake(700), fake(900)],
    ("pytorch-cpu", 64): [fake(1400, 0.87), fake(1200, 0.87)],
    ("sklearn-mlp", 64): [fake(2000), {"error": "ImportError: no sklearn"}],
    ("anynet-numpy", 256): [fake(600, 0.85)],
    ("pytorch-cpu", 256): [{"error": "RuntimeError: boom"}],
}


def test_summary_drops_warm_up_and_takes_medians():
    table = run.summarize(RUNS, "cpu")
    assert table["anynet-numpy"][64]["ms_per_epoch"] == pytest.approx(800)
    assert table["anynet-numpy"][64]["ms_per_epoch_min"] == pytest.approx(700)
    assert table["anynet-numpy"][64]["epochs_timed"] == 4
    assert table["sklearn-mlp"][64]["ms_per_epoch"] == pytest.approx(2000)  # the error skipped
    assert "boom" in table["pytorch-cpu"][256]["error"]


def test_targets_pair_each_round_and_compare_accuracy():
    checks = run.targets(run.summarize(RUNS, "cpu"), RUNS, "cpu")
    torch64 = next(c for c in checks if c["peer"] == "pytorch-cpu" and "ratio" in c)
    # rounds: 700/1400 = 0.5 and 900/1200 = 0.75; their median is 0.625
    assert torch64["ratio"] == pytest.approx(0.625) and torch64["met"]
    sk = next(c for c in checks if c["peer"] == "sklearn-mlp")
    assert sk["ratio"] == pytest.approx(0.35) and sk["met"]  # the round with an error skipped
    gap = next(c for c in checks if "accuracy_gap_pp" in c)
    assert gap["accuracy_gap_pp"] == pytest.approx(1.0) and not gap["met"]
    assert gap["accuracy_gap_se_pp"] == pytest.approx(0.0)  # every seed gave the same
    assert not any(c["batch"] == 256 and "ratio" in c for c in checks)  # no peer number there


def test_accuracy_is_a_mean_over_seeds_with_its_standard_error():
    runs = {
        ("anynet-numpy", 64): [fake(700, 0.85), fake(700, 0.87), fake(700, 0.86)],
        ("pytorch-cpu", 64): [fake(900, 0.86), fake(900, 0.86), fake(900, 0.87)],
    }
    table = run.summarize(runs, "cpu")
    assert table["anynet-numpy"][64]["test_accuracy"] == pytest.approx(0.86)
    assert table["anynet-numpy"][64]["test_accuracy_se"] == pytest.approx(0.01 / 3**0.5)
    gap = next(c for c in run.targets(table, runs, "cpu") if "accuracy_gap_pp" in c)
    assert gap["accuracy_gap_pp"] == pytest.approx(100 * (0.8633333 - 0.86), abs=1e-4)
    se_torch = 100 * (0.0057735 / 3**0.5)
    se_ours = 100 * 0.01 / 3**0.5
    assert gap["accuracy_gap_se_pp"] == pytest.approx((se_ours**2 + se_torch**2) ** 0.5, rel=1e-3)
    assert gap["met"]


def test_markdown_shows_errors_and_misses():
    table = run.summarize(RUNS, "cpu")
    args = argparse.Namespace(epochs=3, rounds=2)
    info = {"date": "2026-11-23", "cpus": 2, "python": "3.11", "cpu": "test"}
    md = run.markdown(table, RUNS, run.targets(table, RUNS, "cpu"), info, "cpu", args)
    assert "boom" in md and "| NO |" in md and "anynet 0.62x" in md and "0.625x" in md
    assert "86.0% ± 0.0" in md and "+1.00 ± 0.00 pp" in md


def test_epochs_below_two_are_refused(capsys):
    with pytest.raises(SystemExit):
        run.main(["--epochs", "1"])
    assert "warm-up" in capsys.readouterr().err


def test_a_worker_runs_end_to_end():
    """The parent talks to its workers through the command line: run one for real (the
    seed's small NumPy network, two short epochs) and read its JSON back."""
    from anynet.datasets import load_fashion_mnist
    from anynet.errors import AnynetError

    try:
        load_fashion_mnist("test", download=False)
    except AnynetError:
        pytest.skip("Fashion-MNIST not installed here")
    result = run._run_worker("seed-numpy", 4096, 2, seed=1)
    assert "error" not in result, result
    assert len(result["epoch_seconds"]) == 2 and 0.1 < result["test_accuracy"] <= 1.0
    assert result["peak_rss_mb"] > 0


def test_every_peer_uses_the_seed_it_is_given():
    """Each round passes another seed; a peer that ignored it would compare one
    initialisation of its own against several of the others'."""
    import inspect

    from bench import peers

    for name, (fn, _) in {**peers.CPU_PEERS, **peers.GPU_PEERS}.items():
        body = inspect.getsource(fn).replace(" ", "")
        assert "seed" in inspect.signature(fn).parameters, name
        for fixed in ("random_state=0", "manual_seed(0)", "default_rng(0)"):
            assert fixed not in body, f"{name} fixes a seed: {fixed}"


def test_results_are_named_by_day_and_machine():
    info = {"date": "2026-11-30", "cpu": "AMD EPYC 7B13 64-Core Processor"}
    assert run.result_name("cpu", info) == "train_cpu_2026-11-30_amd-epyc-7b13-64-core-processor"
    gpu = {"date": "2026-11-30", "cpu": "x", "gpu": "NVIDIA H200"}
    assert run.result_name("gpu", gpu) == "train_gpu_2026-11-30_nvidia-h200"


def test_the_no_numba_peer_really_runs_without_numba():
    from bench.peers import OPTIONAL_PEERS, PEER_ENV

    assert "anynet-numpy-nonumba" in OPTIONAL_PEERS
    assert PEER_ENV["anynet-numpy-nonumba"] == {"ANYNET_NUMBA": "0"}


def test_the_cnn_row_compares_anynets_cnn_with_pytorchs():
    runs = {
        ("anynet-numpy-cnn", 64): [fake(40000, 0.90), fake(50000, 0.91)],
        ("pytorch-cpu-cnn", 64): [fake(50000, 0.90), fake(50000, 0.90)],
    }
    checks = run.targets(run.summarize(runs, "cpu"), runs, "cpu", "cnn")
    ratio = next(c for c in checks if "ratio" in c)
    assert ratio["peer"] == "pytorch-cpu-cnn" and ratio["ratio"] == pytest.approx(0.9)
    gap = next(c for c in checks if "accuracy_gap_pp" in c)
    assert gap["accuracy_gap_pp"] == pytest.approx(-0.5)
    info = {"date": "2026-11-30", "cpu": "AMD EPYC", "cpus": 2, "python": "3.11"}
    assert run.result_name("cpu", info, "cnn") == "train_cnn_cpu_2026-11-30_amd-epyc"
    args = argparse.Namespace(epochs=2, rounds=2, network="cnn")
    md = run.markdown(run.summarize(runs, "cpu"), runs, checks, info, "cpu", args)
    assert "CNN 3x(conv 3x3 - BN - ReLU - maxpool 2)" in md and "(anynet 0.90x)" in md
