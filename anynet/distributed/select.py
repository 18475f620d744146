"""Which communicator carries a backend's gradients, and what ``distributed=`` means.

CuPy arrays on NVIDIA GPUs go through NCCL when cupy has it (the GPUs talk directly, over
NVLink or the network, and nothing waits on the host); every other backend through MPI.
"""

from __future__ import annotations

from typing import Any

from anynet.distributed.communicator import Communicator

__all__ = ["communicator_for", "from_setting", "transport"]


def transport(backend: Any, *, nccl: bool | None = None) -> str:
    """``'nccl'`` or ``'mpi'``: what carries ``backend``'s gradients. NCCL for a backend
    whose arrays are CuPy's on a CUDA GPU (``backend.kernels == 'cuda'``) when ``nccl``
    (default: cupy's NCCL bindings are available), MPI otherwise."""
    if backend is None or getattr(backend, "kernels", None) != "cuda":
        return "mpi"
    if nccl is None:
        nccl = _cupy_has_nccl()
    return "nccl" if nccl else "mpi"


def _cupy_has_nccl() -> bool:
    try:
        from cupy.cuda import nccl
    except Exception:  # an ImportError, or cupy's own error without its CUDA libraries
        return False
    return bool(getattr(nccl, "available", True))


def communicator_for(
    backend: Any = None, *, deterministic: bool = False, nccl: bool | None = None, comm=None
) -> Communicator:
    """The communicator of the MPI world (or ``comm``, an mpi4py communicator) for
    ``backend``'s arrays: :class:`~anynet.distributed.NCCLCommunicator` or
    :class:`~anynet.distributed.MPICommunicator`, as :func:`transport` chooses."""
    from anynet.distributed.mpi import MPICommunicator

    mpi = MPICommunicator(comm, deterministic=deterministic)
    if transport(backend, nccl=nccl) == "nccl":
        from anynet.distributed.nccl import NCCLCommunicator

        return NCCLCommunicator(mpi, backend=backend, deterministic=deterministic)
    return mpi


def from_setting(setting: Any, backend: Any) -> Communicator | None:
    """What an estimator's ``distributed`` asks for: ``False``/``None``, no communicator;
    ``True``, the MPI world's; ``'deterministic'``, the same summing in rank order; a
    :class:`Communicator`, itself.

    Raises
    ------
    ArgumentError
        Any other value.
    """
    from anynet.checks import fail

    if setting is None or setting is False:
        return None
    if isinstance(setting, Communicator):
        return setting
    deterministic = isinstance(setting, str) and setting == "deterministic"
    if setting is True or deterministic:
        from anynet.distributed.launch import world

        return world(deterministic=deterministic, backend=backend)
    raise fail(
        "distributed",
        "False, True, 'deterministic' or an anynet.distributed.Communicator",
        setting,
        "True trains data-parallel on the ranks mpiexec started (see the README's "
        "'Distributed training')",
    )
