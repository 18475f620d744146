"""Where this process stands in a job: launched by ``mpiexec``/``srun`` or not, and joining
the job's world.

Whether a process was started by an MPI launcher shows in its environment, so the command
line can decide without importing mpi4py (which would start MPI in every plain run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from anynet.distributed.communicator import Communicator, DistributedError

__all__ = [
    "LAUNCHER_SIZE_VARIABLES",
    "THREAD_VARIABLES",
    "launched_size",
    "local_rank",
    "rank_device",
    "share_cores",
    "world",
]

#: What each launcher sets to the number of processes it started: MPICH's and Intel MPI's
#: Hydra and Slurm's ``srun --mpi=pmi2`` (``PMI_SIZE``), Open MPI's ``mpirun``
#: (``OMPI_COMM_WORLD_SIZE``), PMIx launchers such as ``srun --mpi=pmix``
#: (``PMIX_SIZE``, not always set) and MVAPICH (``MV2_COMM_WORLD_SIZE``).
LAUNCHER_SIZE_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_SIZE",
    "MV2_COMM_WORLD_SIZE",
)
#: Set by launchers that do not always say the size (a PMIx launcher sets a rank).
_RANK_VARIABLES = ("PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")


def launched_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The number of processes an MPI launcher started with this one, from the environment;
    ``None`` when no launcher started it (a plain ``python``, or ``srun`` without an MPI
    plugin, which starts processes that MPI sees as worlds of one). A launcher that says a
    rank but no size counts as 0: launched, size unknown."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    if any(environ.get(name, "").strip() for name in _RANK_VARIABLES):
        return 0
    return None


def world(*, deterministic: bool = False, backend=None, environ=None) -> Communicator:
    """The job's communicator, for ``backend``'s arrays (NCCL between CuPy GPUs where cupy has
    it, else MPI: :func:`~anynet.distributed.communicator_for`), after checking that MPI sees
    the world the launcher started, and with this rank's BLAS threads limited to its share of
    the node's cores (:func:`share_cores`).

    Raises
    ------
    DistributedError
        mpi4py is not installed, or MPI sees another number of processes than the launcher
        started (an ``mpiexec`` of another MPI library than mpi4py's; ``srun`` without
        ``--mpi=pmix``): every process would train alone and write the same files.
    """
    from anynet.distributed.select import communicator_for

    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(
            "data-parallel training needs mpi4py, which is not installed: "
            "pip install 'anynet-nn[mpi]' (and an MPI library: pip install mpich, or your "
            "cluster's module)"
        ) from None
    size = MPI.COMM_WORLD.Get_size()
    expected = launched_size(environ)
    slurm = (os.environ if environ is None else environ).get("SLURM_NTASKS", "")
    if not expected and slurm.isdigit() and int(slurm) > 1 and size == 1:
        expected = int(slurm)
    if expected and expected != size:
        raise DistributedError(
            f"the launcher started {expected} processes, but MPI sees a world of {size}: "
            "mpiexec (or srun) and mpi4py use different MPI libraries. Launch with the "
            "mpiexec of mpi4py's MPI (python -c 'import mpi4py; print(mpi4py.get_config())' "
            "names it), or with srun --mpi=pmix"
        )
    share_cores(MPI.COMM_WORLD, environ)
    return communicator_for(backend, deterministic=deterministic)


#: Thread counts a user may set; any of them set means the user chose, and anynet leaves it.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def share_cores(mpi_comm, environ: Mapping[str, str] | None = None) -> int | None:
    """Limit this rank's BLAS threads to its share of its node's cores (the cores it may run
    on, divided by the ranks on the node, at least 1), as ``torchrun`` sets one OpenMP thread
    per process; returns that count, or ``None`` where one of :data:`THREAD_VARIABLES` is set
    (the user's choice stands).

    Without it every rank starts a BLAS thread per core: measured with 2 ranks on 2 cores,
    an MLP epoch took 23.2 s instead of 1.5 s, the threads waiting on each other."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name, "").strip() for name in THREAD_VARIABLES):
        return None
    from mpi4py import MPI
    from threadpoolctl import threadpool_limits

    node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        ranks_here = node.Get_size()
    finally:
        node.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // ranks_here)
    threadpool_limits(limits=threads, user_api="blas")
    return threads


def local_rank(comm: Communicator) -> int:
    """This process's rank among the processes of the job on its own node (which GPU to
    take), found by MPI (``MPI_COMM_TYPE_SHARED``), or ``comm.rank`` without MPI."""
    mpi = getattr(comm, "comm", None)
    if mpi is None:
        mpi = getattr(getattr(comm, "mpi", None), "comm", None)
    if mpi is None:
        return comm.rank
    from mpi4py import MPI

    node = mpi.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def rank_device(spec: str | None, local: int, count: int | None = None) -> str | None:
    """The backend spec for the rank that is ``local``-th on its node: a GPU backend named
    without its device (``'cupy'``, ``'torch:cuda'``) gets GPU ``local % count`` (``count``:
    the node's GPUs, asked of the library when not given), one GPU per rank; any other spec
    is returned as it is."""
    if spec not in ("cupy", "torch:cuda"):
        return spec
    if count is None:
        if spec == "cupy":
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        else:
            import torch

            count = torch.cuda.device_count()
    return f"{spec}:{local % max(int(count), 1)}"
