"""A :class:`~anynet.distributed.Communicator` over MPI, through mpi4py.

Host arrays (NumPy) are summed in place. A GPU array goes to MPI as it is (DLPack / the CUDA
array interface) when the MPI library is CUDA-aware, and otherwise through a pinned host
buffer; any other array (PyTorch on the CPU, array-api-strict) through a host copy. Between
NVIDIA GPUs :mod:`~anynet.distributed.nccl` is the faster road.

The ``deterministic`` sum is chainer's scheme for non-CUDA-aware MPI: each rank receives one
slice of every rank's buffer (an all-to-all), adds the slices in rank order, and all ranks
gather the summed slices back. It costs about 1.5-3x the library's all-reduce, and gives the
same bits whatever the number of processes per node, the network or the message size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from anynet.distributed.communicator import Communicator

__all__ = ["MPICommunicator"]

Array = Any


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (default: ``MPI.COMM_WORLD``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The MPI communicator (a sub-communicator to train on some ranks only).
    deterministic : bool
        Sum in rank order (see the module's notes).
    cuda_aware : bool, optional
        Whether MPI reads and writes GPU memory itself. Default: what MPI says
        (``MPIX_Query_cuda_support``, where the library has it; else no).
    """

    def __init__(self, comm: Any = None, *, deterministic: bool = False, cuda_aware=None):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.deterministic = bool(deterministic)
        if cuda_aware is None:
            query = getattr(MPI, "Query_cuda_support", None)
            cuda_aware = bool(query()) if query is not None else False
        self.cuda_aware = bool(cuda_aware)
        self.name = "mpi, cuda-aware" if self.cuda_aware else "mpi"
        self._pinned: dict[tuple, Any] = {}

    # --- the gradient sum -------------------------------------------------------------------

    def allreduce_sum(self, buffer: Array) -> Array:
        if self.size == 1:
            return buffer
        if isinstance(buffer, np.ndarray):
            if buffer.flags.c_contiguous and buffer.flags.writeable:
                self._sum(buffer, np)
                return buffer
            host = np.ascontiguousarray(buffer).copy()
            self._sum(host, np)
            return host
        if _is_cupy(buffer):
            return self._sum_cupy(buffer)
        return self._sum_through_host(buffer)

    def _sum(self, buffer: Array, xp: Any) -> None:
        """Sum ``buffer`` over the ranks in place (a host array, or a GPU array that a
        CUDA-aware MPI reads)."""
        if self.deterministic:
            self._sum_in_rank_order(buffer, xp)
        else:
            self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)

    def _sum_in_rank_order(self, buffer: Array, xp: Any) -> None:
        """All-to-all of slices, each slice summed in rank order by its owner, all-gather."""
        counts = _slices(buffer.shape[0], self.size)
        displs = [sum(counts[:r]) for r in range(self.size)]
        mine, kind = counts[self.rank], self._type(buffer)
        received = xp.empty((self.size * mine,), dtype=buffer.dtype)
        from_each = [r * mine for r in range(self.size)]
        self.comm.Alltoallv(
            [buffer, counts, displs, kind], [received, [mine] * self.size, from_each, kind]
        )
        total = received[:mine].copy()
        for r in range(1, self.size):
            total += received[r * mine : (r + 1) * mine]
        self.comm.Allgatherv([total, mine, kind], [buffer, counts, displs, kind])

    def _type(self, buffer: Array) -> Any:
        from mpi4py.util.dtlib import from_numpy_dtype

        return from_numpy_dtype(np.dtype(str(buffer.dtype)))

    def _sum_cupy(self, buffer: Array) -> Array:
        """A CuPy array: straight to a CUDA-aware MPI, else through pinned host memory."""
        import cupy

        with buffer.device:
            # MPI knows nothing of CUDA streams: the gradient must be complete before it reads.
            cupy.cuda.get_current_stream().synchronize()
            if self.cuda_aware and buffer.flags.c_contiguous:
                self._sum(buffer, cupy)
                return buffer
            key = (buffer.device.id, buffer.shape, str(buffer.dtype))
            if key not in self._pinned:
                import cupyx

                self._pinned[key] = cupyx.empty_pinned(buffer.shape, dtype=buffer.dtype)
            host = self._pinned[key]
            buffer.get(out=host)
            self._sum(host, np)
            buffer.set(host)
            return buffer

    def _sum_through_host(self, buffer: Array) -> Array:
        """Another library's array (PyTorch, array-api-strict): a host copy, summed, and
        copied back to the array's own library and device."""
        from anynet.backends import backend_of

        backend = backend_of(buffer)
        backend.synchronize()
        host = np.array(backend.to_numpy(buffer), copy=True, order="C")
        self._sum(host, np)
        return backend.asarray(host)

    # --- the small things -------------------------------------------------------------------

    def allgather_numbers(self, values: Sequence[float]) -> np.ndarray:
        send = np.asarray(values, dtype=np.float64).reshape(-1)
        received = np.empty((self.size, send.size), dtype=np.float64)
        self.comm.Allgather(send, received)
        return received

    def allgather(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> NoReturn:
        self.comm.Abort(int(code))
        raise SystemExit(code)  # not reached: Abort ends the process


def _slices(n: int, size: int) -> list[int]:
    """The lengths of ``size`` near-equal slices of ``n`` (the first ``n % size`` one longer)."""
    base, extra = divmod(n, size)
    return [base + (r < extra) for r in range(size)]


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"
