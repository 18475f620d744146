"""What a data-parallel run asks of the processes it runs on: :class:`Communicator`.

A communicator joins the ``size`` processes of one job (its ranks, 0 to ``size - 1``) and
offers the few collective operations data-parallel training needs: the sum of a gradient
buffer over all ranks, a few numbers gathered from each, a Python object broadcast, and an
abort that ends every rank. :mod:`~anynet.distributed.mpi` implements it over MPI,
:mod:`~anynet.distributed.nccl` over NCCL between GPUs; a test or a benchmark may wrap one
(to count or time its calls) by subclassing or delegating.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from anynet.errors import AnynetError

__all__ = ["Communicator", "DistributedError", "sum_in_rank_order"]

Array = Any


class DistributedError(AnynetError, RuntimeError):
    """A data-parallel run cannot start or go on: no MPI, ranks that disagree, a launcher
    whose world does not match MPI's."""


def sum_in_rank_order(parts: Sequence[Array]) -> Array:
    """``((parts[0] + parts[1]) + parts[2]) + ...``: the sum of the ranks' buffers in rank
    order, which is what a ``deterministic`` communicator returns on every rank, bit for bit,
    whatever the reduction algorithm and the network (a new array; ``parts`` are unchanged)."""
    total = parts[0] + 0  # a copy, in the parts' own library (and on their device)
    for part in parts[1:]:
        total += part
    return total


class Communicator:
    """The ranks of one job and their collective operations.

    Every rank must call the same collective operations in the same order; a rank that stops
    calling them (it crashed, it raised) leaves the others waiting, unless the job aborts:
    :meth:`abort` ends every rank.

    Attributes
    ----------
    rank : int
        This process, from 0.
    size : int
        The number of processes.
    deterministic : bool
        Whether :meth:`allreduce_sum` adds the ranks' buffers in rank order
        (:func:`sum_in_rank_order`): the same bits whatever the all-reduce algorithm, the
        network and the message sizes, for some extra cost. Without it the library's
        all-reduce decides the order; its result is still the same on every rank.
    name : str
        What carries the data (``'mpi'``, ``'mpi, cuda-aware'``, ``'nccl'``...).
    """

    name = "communicator"
    rank: int = 0
    size: int = 1
    deterministic: bool = False

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, size)``: what a :class:`~anynet.data.DataLoader` takes as ``shard``."""
        return self.rank, self.size

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def allreduce_sum(self, buffer: Array) -> Array:
        """The elementwise sum of every rank's ``buffer`` (a contiguous 1-d array of the same
        size and dtype on every rank), the same bits on every rank. The result replaces
        ``buffer``'s values where the library can write them in place; use the array
        returned, which is ``buffer`` itself then."""
        raise NotImplementedError

    def allgather_numbers(self, values: Sequence[float]) -> np.ndarray:
        """Every rank's ``values`` (the same count on every rank), as a float64 host array of
        shape ``(size, len(values))``, row r from rank r."""
        raise NotImplementedError

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (anything picklable), in rank order."""
        raise NotImplementedError

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``obj`` (anything picklable), on every rank."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Return once every rank has called it."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> NoReturn:
        """End every rank of the job now, with exit status ``code``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        how = ", deterministic" if self.deterministic else ""
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}{how})"
