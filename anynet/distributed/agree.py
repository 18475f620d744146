"""Checks that every rank is about to train the same run.

A data-parallel run goes wrong quietly when the ranks start from different places: data
loaded from another file on one node, another seed, another setting. Each rank then takes
its part of a different batch, and the sum of their gradients means nothing. What defines a
run (a checkpoint's run record: settings, seed, a fingerprint of the data) is compared once,
before the first step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anynet.distributed.communicator import Communicator, DistributedError

__all__ = ["check_same_run"]


def check_same_run(comm: Communicator, run: Mapping[str, Any]) -> None:
    """Raise unless ``run`` (a JSON-like record) is the same on every rank.

    Raises
    ------
    DistributedError
        Naming the first rank that differs from rank 0 and the entries that differ.
    """
    records = comm.allgather(dict(run))
    first = records[0]
    for rank, record in enumerate(records[1:], start=1):
        if record != first:
            keys = sorted(k for k in set(first) | set(record) if first.get(k) != record.get(k))
            raise DistributedError(
                f"rank {rank} is set up for another run than rank 0: {', '.join(keys)} "
                f"differ{'s' if len(keys) == 1 else ''}. Every rank must load the same data "
                "and use the same settings (a data set read from another file on one node, a "
                "seed of its own?)"
            )
