"""Data-parallel training, what one process can check: the loader's shards, which
communicator a backend gets, launch detection, the rank-order sum, and the data-parallel step
on a world of one. The ranks themselves run in tests/test_distributed_mpi.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.data import DataLoader, RandomCropFlip
from anynet.distributed import (
    Communicator,
    DataParallelStep,
    DistributedError,
    from_setting,
    launched_size,
    sum_in_rank_order,
    transport,
)
from anynet.errors import ArgumentError
from anynet.training import select_step, train


def batches(loader: DataLoader, epoch: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    loader.set_epoch(epoch)
    return [(np.asarray(X), np.asarray(y)) for X, y in loader]


# --- the loader's shards --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize(
    "options",
    [{}, {"drop_last": True}, {"max_device_bytes": 3000}, {"augment": RandomCropFlip(1)}],
    ids=["resident", "drop_last", "streamed", "augmented"],
)
def test_ranks_batches_together_are_the_one_process_batch(size, options):
    X = np.random.default_rng(0).integers(0, 255, (23, 4, 4), dtype=np.uint8)
    y = np.arange(23) % 3
    make = dict(batch_size=5, seed=7, backend="numpy", flatten=True, **options)
    whole = batches(DataLoader(X, y, **make), epoch=2)
    shards = [batches(DataLoader(X, y, shard=(r, size), **make), epoch=2) for r in range(size)]
    for rank_batches in shards:
        assert len(rank_batches) == len(whole)  # every rank takes every step
    for b, (Xb, yb) in enumerate(whole):
        parts = [s[b] for s in shards]
        sizes = [len(p[1]) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), Xb)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), yb)


def test_a_sharded_loader_counts_the_global_batches():
    X, y = np.zeros((10, 3), np.float32), np.arange(10) % 2
    loader = DataLoader(X, y, 4, backend="numpy", normalize=None, shard=(2, 3))
    assert (len(loader), loader.batch_size, loader.n_samples) == (3, 4, 10)
    assert [loader.batch_samples(b) for b in range(3)] == [4, 4, 2]
    assert [len(yb) for _, yb in loader] == [1, 1, 0]  # 4 = 2+1+1, 2 = 1+1+0


@pytest.mark.parametrize(
    "shard, words",
    [
        ((2, 2), "shard's rank must be an integer in [0, 1]"),
        ((0, 0), "shard's size must be an integer >= 1"),
        (3, "shard must be None or a pair (rank, size)"),
        ((True, 2), "shard's rank must be an integer"),
    ],
)
def test_a_bad_shard_is_refused_by_name(shard, words):
    with pytest.raises(ArgumentError, match=re.escape(words)):
        DataLoader(np.zeros((4, 2), np.uint8), np.zeros(4, int), 2, shard=shard)


# --- launch detection and the choice of a communicator --------------------------------------


@pytest.mark.parametrize(
    "environ, size",
    [
        ({}, None),
        ({"PMI_SIZE": "4", "PMI_RANK": "1"}, 4),  # MPICH's and Intel MPI's Hydra
        ({"OMPI_COMM_WORLD_SIZE": "2"}, 2),  # Open MPI
        ({"PMIX_RANK": "0"}, 0),  # a PMIx launcher that does not say the size
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "3"}, None),  # srun without an MPI plugin
    ],
)
def test_launched_size_reads_the_launchers_variables(environ, size):
    assert launched_size(environ) == size


class _Backend:
    def __init__(self, kernels):
        self.kernels = kernels


@pytest.mark.parametrize(
    "kernels, nccl, expected",
    [("cuda", True, "nccl"), ("cuda", False, "mpi"), ("cpu", True, "mpi"), (None, None, "mpi")],
)
def test_gradients_go_over_nccl_between_cupy_gpus_only(kernels, nccl, expected):
    assert transport(_Backend(kernels), nccl=nccl) == expected
    assert transport(None) == "mpi"


def test_distributed_setting_refuses_what_it_does_not_know():
    assert from_setting(False, None) is None
    comm = _Solo()
    assert from_setting(comm, None) is comm
    with pytest.raises(ArgumentError, match="distributed must be False, True, 'deterministic'"):
        from_setting("yes", None)


# --- the rank-order sum ---------------------------------------------------------------------


def test_sum_in_rank_order_adds_left_to_right_without_touching_the_parts():
    # float32 addition is not associative: the order shows in the bits
    parts = [np.float32([1e8]), np.float32([1.0]), np.float32([-1e8])]
    total = sum_in_rank_order(parts)
    assert total[0] == np.float32(0.0)  # (1e8 + 1) - 1e8 = 0 in float32
    assert sum_in_rank_order(parts[::-1])[0] == np.float32(0.0)
    assert sum_in_rank_order([parts[0], parts[2], parts[1]])[0] == np.float32(1.0)
    assert parts[0][0] == np.float32(1e8)


# --- the step on a world of one -------------------------------------------------------------


class _Solo(Communicator):
    """A world of one process, no MPI: what every collective is with one rank."""

    name = "solo"

    def allreduce_sum(self, buffer):
        return buffer

    def allgather_numbers(self, values):
        return np.asarray([values], dtype=np.float64)

    def allgather(self, obj):
        return [obj]

    def bcast(self, obj, root=0):
        return obj

    def barrier(self):
        pass


def _run(fast: bool, wrap: bool, model: nn.Sequential):
    be = anynet.get_backend("numpy")
    rng = np.random.default_rng(1)
    X, y = rng.random((30, 6)).astype("float32"), np.arange(30) % 3
    comm = _Solo()
    loader = DataLoader(
        X, y, 8, seed=2, normalize=None, backend=be, shard=comm.shard if wrap else None
    )
    params = model.init_params(rng=be.host_generator(0), backend=be)
    step = select_step(model, nn.adam(0.01), params, backend=be, fast=fast)
    if wrap:
        step = DataParallelStep(step, comm)
    state = train(step, loader, epochs=2, seed=4, l2=1e-3, l2_per_sample=True)
    return state, {k: np.array(v) for k, v in step.params.items()}


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("batchnorm", [False, True], ids=["mlp", "batchnorm"])
def test_one_rank_trains_exactly_as_no_wrapper(fast, batchnorm):
    def model():
        middle = [nn.BatchNorm(8)] if batchnorm else [nn.Dropout(0.2)]
        return nn.Sequential(nn.Dense(6, 8), *middle, nn.ReLU(), nn.Dense(8, 3))

    plain_state, plain = _run(fast, False, model())
    state, params = _run(fast, True, model())
    assert "data-parallel on 1 ranks (solo)" in state.path
    np.testing.assert_allclose(state.history["loss"], plain_state.history["loss"], rtol=1e-6)
    for name, value in plain.items():
        np.testing.assert_array_equal(params[name], value, err_msg=name)


def test_a_summed_loss_is_refused():
    be = anynet.get_backend("numpy")
    model = nn.Sequential(nn.Dense(3, 2))
    params = model.init_params(rng=be.host_generator(0), backend=be)
    step = nn.GenericStep(model, nn.sgd(0.1), params, reduction="sum")
    with pytest.raises(DistributedError, match="reduction='mean'"):
        DataParallelStep(step, _Solo())


# --- MPI in one process ---------------------------------------------------------------------


def test_plain_python_is_a_world_of_one():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed")
    from anynet.distributed import MPICommunicator

    comm = MPICommunicator(deterministic=True)
    assert (comm.rank, comm.size) == (0, 1)
    buffer = np.arange(5, dtype=np.float32)
    assert comm.allreduce_sum(buffer) is buffer
    np.testing.assert_array_equal(comm.allgather_numbers([3, 0.5]), [[3.0, 0.5]])


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    import sys

    from anynet.distributed import world

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    with pytest.raises(DistributedError, match=r"pip install 'anynet-nn\[mpi\]'"):
        world()


class _OtherRankDiffers(_Solo):
    """Two ranks, the second set up with another seed."""

    def allgather(self, obj):
        return [obj, {**obj, "seed": obj["seed"] + 1}]


def test_ranks_set_up_for_different_runs_are_refused_before_training():
    from anynet.distributed.agree import check_same_run

    run = {"seed": 1, "data": "abc", "batch_size": 8}
    check_same_run(_Solo(), run)
    with pytest.raises(
        DistributedError, match="rank 1 is set up for another run than rank 0: seed"
    ):
        check_same_run(_OtherRankDiffers(), run)


@pytest.mark.parametrize(
    "spec, local, expected",
    [
        ("cupy", 5, "cupy:1"),  # 4 GPUs a node: the sixth rank on a node takes GPU 1
        ("torch:cuda", 2, "torch:cuda:2"),
        ("cupy:3", 0, "cupy:3"),  # a device named by the user stays
        ("numpy", 1, "numpy"),
        (None, 1, None),
    ],
)
def test_each_rank_on_a_node_takes_its_own_gpu(spec, local, expected):
    from anynet.distributed import rank_device

    assert rank_device(spec, local, count=4) == expected


# --- each rank's share of the cores ---------------------------------------------------------


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"])
def test_a_thread_count_the_user_set_stands(variable):
    from anynet.distributed.launch import share_cores

    assert share_cores(None, {variable: "3"}) is None


@pytest.mark.parametrize("ranks_on_the_node", [1, 2, 64])
def test_ranks_share_their_nodes_cores_between_their_blas_threads(ranks_on_the_node):
    """Every rank starting a BLAS thread per core made 2 ranks on 2 cores 15x slower."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed")
    import os

    from threadpoolctl import threadpool_info, threadpool_limits

    from anynet.distributed.launch import share_cores

    class Node:  # MPI's Split_type(COMM_TYPE_SHARED) of a node with this many ranks
        def Get_size(self):
            return ranks_on_the_node

        def Free(self):
            pass

    class World:
        def Split_type(self, kind):
            return Node()

    if not any(pool["user_api"] == "blas" for pool in threadpool_info()):
        pytest.skip("no BLAS library that threadpoolctl can limit")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with threadpool_limits(limits=None):  # gives back the library's threads afterwards
        threads = share_cores(World(), {})
        assert threads == max(1, cores // ranks_on_the_node)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert all(p["num_threads"] == threads for p in blas)
