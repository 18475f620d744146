"""Data-parallel training over processes: MPI everywhere, NCCL between NVIDIA GPUs.

Every process (rank) of a job started by ``mpiexec`` or ``srun`` holds the same parameters,
trains on its own part of each batch, and the ranks sum their gradients once per step, so all
take the same update. ``mpiexec -n 4 anynet train`` does it from the command line,
``NNClassifier(distributed=True)`` from Python (see the README's "Distributed training").

- :mod:`~anynet.distributed.communicator`: :class:`Communicator`, what a run needs of the
  ranks, and :func:`sum_in_rank_order`, what a ``deterministic`` sum is;
- :mod:`~anynet.distributed.mpi`: :class:`MPICommunicator`, over mpi4py;
- :mod:`~anynet.distributed.nccl`: :class:`NCCLCommunicator`, over NCCL for CuPy;
- :mod:`~anynet.distributed.select`: :func:`communicator_for`, which of them for a backend;
- :mod:`~anynet.distributed.launch`: :func:`launched_size` (was this process started by an
  MPI launcher?) and :func:`world`;
- :mod:`~anynet.distributed.step`: :class:`DataParallelStep`, which wraps any training step.

Nothing here imports mpi4py or cupy until a communicator is made.
"""

from anynet.distributed.communicator import Communicator, DistributedError, sum_in_rank_order
from anynet.distributed.launch import launched_size, local_rank, rank_device, world
from anynet.distributed.select import communicator_for, from_setting, transport
from anynet.distributed.step import DataParallelStep

__all__ = [
    "Communicator",
    "DataParallelStep",
    "DistributedError",
    "MPICommunicator",
    "NCCLCommunicator",
    "communicator_for",
    "from_setting",
    "launched_size",
    "local_rank",
    "rank_device",
    "sum_in_rank_order",
    "transport",
    "world",
]


def __getattr__(name: str):
    # The communicators load on first use: MPICommunicator imports mpi4py only when built,
    # but keep even their modules out of a plain `import anynet.distributed`.
    if name == "MPICommunicator":
        from anynet.distributed.mpi import MPICommunicator

        return MPICommunicator
    if name == "NCCLCommunicator":
        from anynet.distributed.nccl import NCCLCommunicator

        return NCCLCommunicator
    raise AttributeError(f"module 'anynet.distributed' has no attribute {name!r}")
