"""Backend fast paths: the same math as :mod:`anynet.nn`, fused for one family of kernels.

A fast path never changes what is computed, only how: one :class:`~anynet.fast.fused.FusedStep`
runs the stages of a network (:mod:`anynet.fast.stages`) through one interface of operations
(:mod:`anynet.fast.ops`), which each kernel family implements and tests equal to the generic
engine:

- ``cpu``: :class:`~anynet.fast.numpy_ops.NumpyOps`, NumPy passes over preallocated buffers,
  with the numba kernels of :class:`~anynet.fast.numba_ops.NumbaOps` where numba is installed;
- ``cuda``: :class:`~anynet.fast.cuda.CudaOps`, CUDA kernels launched with CuPy.

The activations every family runs are one table (:mod:`anynet.fast.activations`). The
generic step always exists and is what array-api-strict, PyTorch and any model or optimizer the
stages do not cover run. ``ANYNET_FAST=0`` turns every fast path off; ``ANYNET_NUMBA=0`` keeps
the CPU's to NumPy.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

__all__ = ["cpu_ops", "cpu_path", "fused_step", "ops_for"]

_CUDA_LAUNCHERS: dict[int, Any] = {}  # compiled once per device


def cpu_ops() -> Any:
    """The CPU family: NumPy with numba kernels where numba is installed, else NumPy alone."""
    from anynet.fast.numba_kernels import load

    kernels, _ = load()
    if kernels is None:
        from anynet.fast.numpy_ops import NumpyOps

        return NumpyOps()
    from anynet.fast.numba_ops import NumbaOps

    return NumbaOps(kernels)


def cpu_path() -> tuple[str, str]:
    """Which step trains on NumPy arrays here, and why: what ``anynet info`` prints."""
    if os.environ.get("ANYNET_FAST", "1") == "0":
        return "generic", "ANYNET_FAST=0 turns the fused step off"
    from anynet.fast.numba_kernels import load

    kernels, note = load()
    if kernels is None:
        return "fused cpu", f"NumPy passes only: {note}"
    return "fused cpu + numba", f"{note} kernels"


def _cuda_ops(backend: Any) -> Any:
    key = backend.device.id
    if key not in _CUDA_LAUNCHERS:
        from anynet.fast.cuda.launch import CupyLauncher

        try:
            _CUDA_LAUNCHERS[key] = CupyLauncher(backend.library, backend.device)
        except Exception as exc:  # a compiler or driver error: the generic path still works
            warnings.warn(
                f"anynet's CUDA kernels did not compile on {backend}: {exc!r}; training runs "
                "the generic path (slower). Set ANYNET_FAST=0 to skip the attempt.",
                RuntimeWarning,
                stacklevel=4,
            )
            _CUDA_LAUNCHERS[key] = None
    launcher = _CUDA_LAUNCHERS[key]
    if launcher is None:
        return None
    from anynet.fast.cuda.ops import CudaOps

    return CudaOps(backend.library, launcher, backend.device)


_FAMILIES = {"cpu": lambda backend: cpu_ops(), "cuda": _cuda_ops}


def ops_for(backend: Any) -> Any:
    """The fused operations for ``backend``'s arrays (a new object: it keeps scratch buffers),
    or ``None`` where only the generic engine runs (``backend.kernels`` is None, or
    ``ANYNET_FAST=0``)."""
    if os.environ.get("ANYNET_FAST", "1") == "0" or backend.kernels is None:
        return None
    return _FAMILIES[backend.kernels](backend)


def _implements(ops: Any, name: str) -> bool:
    """Whether ``ops``'s family implements operation ``name`` of the interface."""
    from anynet.fast.ops import Ops

    return getattr(type(ops), name, None) is not getattr(Ops, name)


def fused_step(
    model: Any,
    optimizer: Any,
    params: Any,
    opt_state: Any = None,
    *,
    ops: Any,
    loss: Any,
    reduction: str,
) -> Any:
    """A :class:`~anynet.fast.fused.FusedStep` through ``ops``, or ``None`` where it does not
    apply: a model the stages do not cover (or whose stages ``ops``'s family does not
    implement), a loss other than cross-entropy, half squared error and Poisson, an optimizer
    other than the built-in SGD, Adam and AdamW with a constant learning rate, or parameters
    that are not all float32 or all float64."""
    from anynet.fast.fused import FusedStep
    from anynet.fast.stages import plan

    if optimizer.spec is None or reduction not in ("mean", "sum"):
        return None
    stages = plan(model, loss)
    dtypes = {str(p.dtype).rsplit(".", 1)[-1] for p in params.values()}
    if stages is None or len(dtypes) != 1 or not dtypes <= {"float32", "float64"}:
        return None
    if not all(_implements(ops, name) for stage in stages.stages for name in stage.uses):
        return None  # a family that lacks one of a stage's operations
    return FusedStep(
        model,
        stages,
        optimizer,
        params,
        opt_state,
        ops=ops,
        loss=loss,
        reduction=reduction,
        dtype=dtypes.pop(),
    )
