"""Backend fast paths: the same math as :mod:`anynet.nn`, fused for one library.

A fast path is chosen automatically when it applies and never changes what is computed, only
how: each is the twin of generic code and tested equal to it (``tests/test_fast.py``). The
generic path always exists and is what array-api-strict, PyTorch and any unmatched model run.
Set ``ANYNET_FAST=0`` to run the generic path everywhere (for comparison or debugging).

- NumPy: :class:`~anynet.fast.numpy_mlp.FusedMLPStep`, a training step for Dense/activation/
  dropout stacks with SGD or Adam over flat, preallocated buffers.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["fused_step"]


def fused_step(
    model: Any,
    optimizer: Any,
    backend: Any,
    params: Any,
    opt_state: Any,
    *,
    loss: Any,
    reduction: str,
) -> Any:
    """A fused training step for this combination, or ``None`` where only the generic one fits.

    The returned callable is ``step(X, y, *, l1, l2, rng) -> loss`` and exposes ``params`` and
    ``opt_state`` in the generic engine's structures.
    """
    if os.environ.get("ANYNET_FAST", "1") == "0":
        return None
    if backend.name != "numpy" or optimizer.spec is None or not isinstance(loss, str):
        return None
    if reduction not in ("mean", "sum"):
        return None
    from anynet.fast.numpy_mlp import FusedMLPStep, parse_mlp

    plan = parse_mlp(model, loss)
    if plan is None:
        return None
    dtypes = {str(p.dtype) for p in params.values()}
    if len(dtypes) != 1 or dtypes & {"float32", "float64"} != dtypes:
        return None
    return FusedMLPStep(model, plan, optimizer, opt_state, params, dtypes.pop(), loss, reduction)
