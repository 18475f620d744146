"""A :class:`~anynet.distributed.Communicator` between NVIDIA GPUs, over NCCL (``cupy.cuda.nccl``).

One GPU per rank. Rank 0 makes the NCCL unique id and MPI broadcasts it; every rank then joins
the NCCL communicator with it (ChainerMN's ``PureNcclCommunicator`` does the same). The
gradient sum runs on the device, on the current CUDA stream, after the kernels that computed
the gradients and before those that apply them: nothing waits on the host. The few numbers
and objects a run exchanges otherwise (batch sizes, losses, a seed) go over MPI.

The ``deterministic`` sum gathers every rank's buffer on every GPU (an NCCL all-gather, ``size``
times the memory of one buffer) and adds them in rank order there.

Not yet run on a GPU: written against cupy's documented ``cupy.cuda.nccl`` API when no GPU
machine was available (see the README's "Distributed training").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from anynet.distributed.communicator import Communicator, DistributedError, sum_in_rank_order

__all__ = ["NCCLCommunicator"]

Array = Any


class NCCLCommunicator(Communicator):
    """The ranks of ``mpi`` (an :class:`~anynet.distributed.MPICommunicator`), one GPU each,
    summing CuPy arrays over NCCL.

    Parameters
    ----------
    mpi : MPICommunicator
        The ranks, and the channel for everything but the gradients.
    backend : Backend
        The rank's CuPy backend (its device is the rank's GPU).
    deterministic : bool
        Sum in rank order (see the module's notes).
    """

    name = "nccl"

    def __init__(self, mpi: Any, *, backend: Any, deterministic: bool = False):
        try:
            from cupy.cuda import nccl
        except Exception as exc:
            raise DistributedError(
                f"NCCL is not available through cupy here ({exc}); install a cupy wheel with "
                "NCCL (cupy-cuda12x, with pip install nvidia-nccl-cu12), or train over MPI: "
                "anynet.distributed.MPICommunicator()"
            ) from None
        self._nccl = nccl
        self.mpi, self.backend = mpi, backend
        self.rank, self.size = mpi.rank, mpi.size
        self.deterministic = bool(deterministic)
        self._types = {
            np.dtype("float32"): nccl.NCCL_FLOAT32,
            np.dtype("float64"): nccl.NCCL_FLOAT64,
        }
        with backend.device:
            uid = nccl.get_unique_id() if self.rank == 0 else None
            uid = mpi.bcast(uid, root=0)
            self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def allreduce_sum(self, buffer: Array) -> Array:
        import cupy

        if self.size == 1:
            return buffer
        kind = self._types.get(np.dtype(str(buffer.dtype)))
        if kind is None or not buffer.flags.c_contiguous:
            raise DistributedError(
                f"NCCL sums contiguous float32 or float64 CuPy arrays; got {buffer.dtype} "
                f"(contiguous: {buffer.flags.c_contiguous})"
            )
        with buffer.device:
            stream = cupy.cuda.get_current_stream().ptr
            n = buffer.size
            if not self.deterministic:
                self.comm.allReduce(
                    buffer.data.ptr, buffer.data.ptr, n, kind, self._nccl.NCCL_SUM, stream
                )
                return buffer
            gathered = cupy.empty((self.size, n), dtype=buffer.dtype)
            self.comm.allGather(buffer.data.ptr, gathered.data.ptr, n, kind, stream)
            buffer[...] = sum_in_rank_order([gathered[r] for r in range(self.size)])
            return buffer

    def allgather_numbers(self, values: Sequence[float]) -> np.ndarray:
        return self.mpi.allgather_numbers(values)

    def allgather(self, obj: Any) -> list[Any]:
        return self.mpi.allgather(obj)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.mpi.bcast(obj, root=root)

    def barrier(self) -> None:
        self.mpi.barrier()

    def abort(self, code: int = 1) -> NoReturn:
        self.mpi.abort(code)
