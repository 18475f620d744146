"""Data-parallel training on real MPI ranks: ``mpiexec -n 2`` and ``-n 3`` (uneven parts, and a
rank with an empty one), each rank running tests/distributed_worker.py.

- N ranks train as one process that computes the same N per-rank gradients and adds them,
  weighted, in rank order: bit for bit with ``deterministic``, within float tolerance without;
- a checkpoint written on 2 ranks resumes on 1 and on 3 ranks (same global batch);
- a killed or crashed rank ends the job promptly, non-zero, and the last checkpoint stays good;
- ``mpiexec -n 2 anynet train`` trains once, rank 0 alone writing.

They need mpi4py and an ``mpiexec`` (``pip install mpi4py mpich``; the ``distributed`` nox
session installs them) and skip without. Each rank runs one BLAS thread, as the bitwise
comparison needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'anynet-nn[mpi]')")

import anynet
from anynet.backends import derive_seed
from anynet.data import DataLoader
from anynet.distributed import sum_in_rank_order

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import distributed_worker as worker  # noqa: E402

MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec here (pip install mpich)")

ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def mpiexec(n: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``mpiexec -n N python -m mpi4py`` (an exception on one rank aborts them all) ``args``."""
    env = {**os.environ, **ONE_THREAD, "ANYNET_BACKEND": "numpy", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=HERE.parent,
    )


# --- N ranks against one process ----------------------------------------------------------


@pytest.fixture(scope="module", params=[2, 3], ids=["2 ranks", "3 ranks"])
def ranks_run(request, tmp_path_factory):
    """Every case of the worker trained on ``request.param`` ranks: (ranks, folder)."""
    out = tmp_path_factory.mktemp(f"steps{request.param}")
    done = mpiexec(request.param, str(HERE / "distributed_worker.py"), "steps", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return request.param, out


def parts(n: int, k: int) -> list[tuple[int, int]]:
    """The documented split of a batch of n over k ranks: contiguous, the first n % k ranks
    one sample more."""
    base, extra = divmod(n, k)
    bounds, at = [], 0
    for r in range(k):
        size = base + (r < extra)
        bounds.append((at, at + size))
        at += size
    return bounds


def one_process(case: str, k: int) -> dict[str, np.ndarray]:
    """The worker's run of ``case`` on k ranks, computed in one process: k copies of the step
    (the ranks), each computing its part's gradient; the parts' gradients weighted by their
    share of the batch and added in rank order; the same update on every copy; batch norm's
    new running statistics averaged alike."""
    be = anynet.get_backend("numpy")
    X, y = worker.data()
    loader = DataLoader(X, y, worker.BATCH, seed=worker.SEED, normalize=None, backend=be)
    copies = [worker.make_step(case, be) for _ in range(k)]
    stats = copies[0].model.statistics()
    trained = [n for n in copies[0].params if n not in stats]
    for epoch in range(worker.EPOCHS):
        loader.set_epoch(epoch)
        for b, (Xb, yb) in enumerate(loader):
            n = Xb.shape[0]
            grads, new_stats = [], []
            for r, (lo, hi) in enumerate(parts(n, k)):
                step, w = copies[r], (hi - lo) / n
                if hi == lo:  # an empty part adds nothing
                    grads.append(np.zeros(sum(step.params[t].size for t in trained), "float32"))
                    continue
                key = (worker.SEED, epoch, b, 1) + ((r,) if r else ())
                rng = be.generator(derive_seed(*key)) if step.needs_rng else None
                step.compute_grads(Xb[lo:hi], yb[lo:hi], l2=worker.L2 / n, rng=rng)
                grads.append(np.concatenate([step.grads[t].ravel() for t in trained]) * w)
            total = sum_in_rank_order(grads)
            for r, step in enumerate(copies):
                at = 0
                for t in trained:
                    size = step.params[t].size
                    value = total[at : at + size].reshape(step.params[t].shape)
                    if hasattr(step, "grad"):
                        step.grads[t][...] = value
                    else:
                        step.grads[t] = value
                    at += size
                step.apply_grads()
                lo, hi = parts(n, k)[r]
                if stats:
                    new_stats.append(
                        np.concatenate([step.params[s].ravel() for s in stats]) * ((hi - lo) / n)
                    )
            if stats:
                average = sum_in_rank_order(new_stats)
                for step in copies:
                    at = 0
                    for s in stats:
                        size = step.params[s].size
                        step.params[s][...] = average[at : at + size].reshape(step.params[s].shape)
                        at += size
    return {name: np.asarray(v) for name, v in copies[0].params.items()}


def read(out: Path, case: str, how: str, rank: int) -> dict[str, np.ndarray]:
    with np.load(out / f"{case}-{how}-rank{rank}.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("case", worker.CASES)
def test_deterministic_ranks_equal_one_process_bitwise(ranks_run, case):
    k, out = ranks_run
    expected = one_process(case, k)
    for rank in range(k):
        got = read(out, case, "det", rank)
        for name, value in expected.items():
            np.testing.assert_array_equal(
                got[f"param:{name}"], value, err_msg=f"{name}, rank {rank}"
            )


@pytest.mark.parametrize("case", worker.CASES)
def test_plain_allreduce_ranks_equal_one_process_within_rounding(ranks_run, case):
    k, out = ranks_run
    expected = one_process(case, k)
    first = read(out, case, "sum", 0)
    for rank in range(k):
        got = read(out, case, "sum", rank)
        for name, value in expected.items():
            # MPI's sum is the same on every rank, whatever order it added in
            np.testing.assert_array_equal(got[f"param:{name}"], first[f"param:{name}"])
            np.testing.assert_allclose(got[f"param:{name}"], value, rtol=1e-4, atol=1e-5)


def test_every_rank_logs_the_whole_batchs_loss(ranks_run):
    k, out = ranks_run
    losses = [read(out, "fused", "det", r)["loss"] for r in range(k)]
    for loss in losses[1:]:
        np.testing.assert_array_equal(loss, losses[0])
    assert str(read(out, "fused", "det", 0)["path"]).endswith(f"data-parallel on {k} ranks (mpi)")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ranks", [2, 3])
def test_weighted_ranks_train_as_one_weighted_process(tmp_path, ranks):
    """Sample weights on ranks: each rank's part of the batch weighs as in the whole batch
    (scikit-learn's sum(w * loss) / sum(w) over the global batch), zero weights and a rank
    with an empty part included."""
    done = mpiexec(ranks, str(HERE / "distributed_worker.py"), "weighted", str(tmp_path / "w.npz"))
    assert done.returncode == 0, done.stdout + done.stderr
    X, y = worker.data()
    alone = worker.weighted_classifier().fit(X, y, sample_weight=worker.weights())
    got = fitted(tmp_path / "w.npz")
    for name, value in alone.params_.items():
        np.testing.assert_allclose(got[f"param:{name}"], value, rtol=1e-4, atol=1e-5)


# --- checkpoints: resumed on other rank counts, kept through a killed rank ------------------


def fitted(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def worker_fit(n: int, out: Path, checkpoints: Path, epochs: int) -> dict[str, np.ndarray]:
    done = mpiexec(
        n, str(HERE / "distributed_worker.py"), "fit", str(out), str(checkpoints), str(epochs)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return fitted(out)


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """A 2-rank fit of 2 epochs with checkpoints, and the same run straight to 3 epochs."""
    d = tmp_path_factory.mktemp("resume")
    first = worker_fit(2, d / "first.npz", d / "checkpoints", 2)
    whole = worker_fit(2, d / "whole.npz", d / "whole-checkpoints", 3)
    return d, first, whole


@pytest.mark.parametrize("ranks", [1, 3])
def test_a_two_rank_checkpoint_resumes_on_other_rank_counts(two_rank_runs, tmp_path, ranks):
    d, first, whole = two_rank_runs
    shutil.copytree(d / "checkpoints", tmp_path / "checkpoints")
    resumed = worker_fit(ranks, tmp_path / "resumed.npz", tmp_path / "checkpoints", 3)
    assert resumed["n_iter"] == whole["n_iter"] == 3
    # the checkpoint's epochs are kept as they were, the third trained on `ranks` ranks
    np.testing.assert_array_equal(resumed["loss"][:2], first["loss"])
    np.testing.assert_allclose(resumed["loss"], whole["loss"], rtol=1e-5)
    for name in [k for k in whole if k.startswith("param:")]:
        # the same global batches; only the rounding of the sum differs with the rank count
        np.testing.assert_allclose(resumed[name], whole[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("how", ["kill", "crash"])
def test_a_dead_rank_ends_the_job_and_the_checkpoint_stays_good(tmp_path, how):
    from anynet.io import load_checkpoint

    checkpoints = tmp_path / "checkpoints"
    started = time.monotonic()
    done = mpiexec(
        2,
        str(HERE / "distributed_worker.py"),
        how,
        str(tmp_path / "x.npz"),
        str(checkpoints),
        "6",
        timeout=120,
    )
    took = time.monotonic() - started
    assert done.returncode != 0
    assert took < 60, f"the job took {took:.0f} s to end after rank 1 died"
    if how == "crash":
        assert "rank 1 crashed on purpose at step 6" in done.stderr
    saved = load_checkpoint(checkpoints / "checkpoint.safetensors", backend="numpy")
    assert 1 <= saved.step <= 6  # rank 0 wrote up to the last step it could vouch for
    resumed = worker_fit(2, tmp_path / "resumed.npz", checkpoints, 3)
    assert resumed["n_iter"] == 3


# --- the command line -----------------------------------------------------------------------


def anynet_under_mpiexec(n: int, *args: str, timeout: float = 240, **kw) -> subprocess.Popen:
    """``mpiexec -n N python -m anynet *args`` (``anynet train`` finds the launcher's
    variables and trains data-parallel), started, its output piped."""
    env = {**os.environ, **ONE_THREAD, "ANYNET_BACKEND": "numpy", "PYTHONUNBUFFERED": "1"}
    env.pop("ANYNET_DEBUG", None)
    return subprocess.Popen(
        [MPIEXEC, "-n", str(n), sys.executable, "-m", "anynet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def have_data() -> bool:
    from anynet.datasets import load_fashion_mnist

    try:
        load_fashion_mnist("test", download=False)
    except anynet.AnynetError:
        return False
    return True


needs_data = pytest.mark.skipif(not have_data(), reason="Fashion-MNIST not installed here")


@needs_data
def test_anynet_train_under_mpiexec_trains_once_and_rank_0_writes(tmp_path):
    run = anynet_under_mpiexec(
        2, "train", "--epochs", "1", "--limit", "1000", "--hidden", "16", "--quiet",
        "--out", str(tmp_path / "m.safetensors"), "--checkpoint-dir", str(tmp_path / "ck"),
    )  # fmt: skip
    out, err = run.communicate(timeout=240)
    assert run.returncode == 0, out + err
    assert out.count("test accuracy") == 1, out
    assert err.count("training ") == 1 and "data-parallel on 2 ranks (mpi)" in err, err
    model = anynet.load(tmp_path / "m.safetensors")
    assert model.n_iter_ == 1
    assert (tmp_path / "ck" / "checkpoint.safetensors").exists()


def test_anynet_train_refused_on_one_rank_ends_every_rank(tmp_path):
    run = anynet_under_mpiexec(
        2, "train", "--resume", "--checkpoint-dir", str(tmp_path / "none"),
        "--out", str(tmp_path / "m.safetensors"),
    )  # fmt: skip
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "of 2): error: --resume: --checkpoint-dir" in err


@needs_data
def test_a_killed_rank_ends_anynet_train_and_its_checkpoint_resumes(tmp_path):
    import signal

    from anynet.io import load_checkpoint

    ck = tmp_path / "ck"
    common = ["--limit", "6000", "--hidden", "16", "--quiet", "--checkpoint-dir", str(ck)]
    run = anynet_under_mpiexec(
        2, "train", "--epochs", "30", "--checkpoint-steps", "3",
        "--out", str(tmp_path / "m.safetensors"), *common,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (ck / "checkpoint.safetensors").exists():
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.2)
        # The lock holds the pid of rank 0, the rank that writes: kill it outright.
        pid = int((ck / "checkpoint.lock").read_text().split()[1])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        run.communicate(timeout=60)
        assert time.monotonic() - killed < 30
        assert run.returncode != 0
    finally:
        if run.poll() is None:
            run.kill()
    saved = load_checkpoint(ck / "checkpoint.safetensors", backend="numpy")
    assert saved.step >= 3
    resumed = anynet_under_mpiexec(
        1, "train", "--epochs", "1", "--resume", "--out", str(tmp_path / "m.safetensors"), *common
    )
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out + err
    assert anynet.load(tmp_path / "m.safetensors").n_iter_ == 1
