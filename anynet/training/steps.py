"""Choosing a training step: the fastest one that computes what the generic engine does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anynet.backends import Backend
from anynet.nn.step import GenericStep, Step

__all__ = ["select_step"]


def select_step(
    model: Any,
    optimizer: Any,
    params: Mapping[str, Any],
    opt_state: Any = None,
    *,
    backend: Backend,
    loss: Any = "softmax_cross_entropy",
    reduction: str = "mean",
    fast: bool = True,
    ops: Any = None,
) -> Step:
    """A training step for ``model`` on ``backend``: a fused one (:mod:`anynet.fast`) where
    one applies, else the engine's :class:`~anynet.nn.GenericStep`.

    Parameters
    ----------
    model, optimizer
        The network and its optimizer.
    params, opt_state
        Where to start; ``opt_state`` defaults to ``optimizer.init(params)``.
    backend : Backend
        Where the arrays live; its ``kernels`` say which family of fused operations applies.
    loss, reduction
        As for :func:`anynet.nn.loss_and_grads`.
    fast : bool
        ``False`` always gives the generic step (for comparison or debugging).
    ops : anynet.fast.ops.Ops, optional
        The fused operations to use instead of the backend's own (a wrapper that counts or
        traces calls, a family built another way).

    Returns
    -------
    anynet.nn.Step
        Its ``name`` says which step it is.
    """
    if fast:
        from anynet import fast as fast_paths

        ops = ops if ops is not None else fast_paths.ops_for(backend)
        if ops is not None:
            step = fast_paths.fused_step(
                model, optimizer, params, opt_state, ops=ops, loss=loss, reduction=reduction
            )
            if step is not None:
                return step
    return GenericStep(
        model, optimizer, params, opt_state, loss=loss, reduction=reduction, xp=backend.xp
    )
