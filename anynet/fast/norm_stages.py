"""The batch-normalization stage: :class:`~anynet.nn.BatchNorm` and the activation after it.

It works on the ``(M, C)`` matrix of its input, whether flat features (``M`` = the batch) or
channels-last images (``M`` = batch x height x width): both normalize each column. Its running
statistics are parameters the optimizer never touches; a training forward computes their new
values and :meth:`BatchNorm.commit` writes them once the optimizer has run, as the generic step
does in its ``apply_grads``.
"""

from __future__ import annotations

import math
from typing import Any

from anynet.fast.activations import IDENTITY
from anynet.fast.ops import Ops
from anynet.fast.stages import Epilogue

__all__ = ["BatchNorm"]

Array = Any


class BatchNorm:
    """Batch normalization in training mode, then ``epilogue``'s activation and dropout.

    Parameters
    ----------
    names : dict
        The flat names of the layer's ``gamma``, ``beta``, ``mean`` and ``var``.
    n_features : int
    momentum, eps : float
        The layer's.
    epilogue : Epilogue
        Activation and dropout (no bias: ``beta`` is the bias).
    """

    uses = ("batch_norm", "batch_norm_backward", "running_average", "copy")

    def __init__(self, names: dict, n_features: int, momentum: float, eps: float, epilogue):
        self.names = names
        self.n_features = n_features
        self.momentum, self.eps = momentum, eps
        self.epilogue: Epilogue = epilogue
        self.statistics = (names["mean"], names["var"])
        self.m = 0  # rows of the last batch: 0 until a forward has run

    @property
    def needs_rng(self) -> bool:
        return bool(self.epilogue.dropout)

    def allocate(self, xp: Any, batch: int, shape: tuple, dtype: Any, *, input_grad: bool):
        C = shape[-1]
        if C != self.n_features:
            raise ValueError(f"BatchNorm({self.n_features}) got {C} features or channels")
        self.shape = shape
        rows = batch * math.prod(shape[:-1])
        self.Xhat = xp.empty((rows, C), dtype)
        self.Y = xp.empty((rows, C), dtype)
        self.A = self.Y if self.epilogue.activation.saved == "a" else xp.empty_like(self.Y)
        self.D = xp.empty((rows, C), dtype) if self.epilogue.dropout else None
        self.keep = xp.empty((rows, C), bool) if self.epilogue.dropout else None
        self.dX = xp.empty((rows, C), dtype) if input_grad else None
        self.stats = xp.empty((3, C), dtype)
        self.new_stats = xp.empty((2, C), dtype)
        return shape

    def forward(self, ops: Ops, X: Array, params: dict, rng: Any) -> Array:
        e, n = self.epilogue, self.names
        B, C = X.shape[0], self.n_features
        Z = X.reshape(-1, C)  # contiguous: another stage's own buffer
        m = self.m = Z.shape[0]
        Y = self.Y[:m]
        A = Y if self.A is self.Y else self.A[:m]
        ops.batch_norm(
            Z, params[n["gamma"]], params[n["beta"]], self.eps, e.activation, e.slope,
            self.Xhat[:m], Y, A, self.stats,
        )  # fmt: skip
        unbiased = m / (m - 1) if m > 1 else 1.0
        old_mean, old_var = params[n["mean"]], params[n["var"]]
        ops.running_average(old_mean, self.stats[0], self.momentum, 1.0, self.new_stats[0])
        ops.running_average(old_var, self.stats[1], self.momentum, unbiased, self.new_stats[1])
        out = A
        if e.dropout:
            u = rng.uniform((B, C), str(A.dtype))  # flat features only (see plan)
            ops.dropout(A, u, e.dropout, self.D[:m], self.keep[:m])
            out = self.D[:m]
        return out.reshape(B, *self.shape)

    def infer(self, ops: Ops, X: Array, params: dict) -> Array:
        """Evaluation mode: the running statistics normalize, and neither they nor the last
        training forward's batch statistics change (no dropout)."""
        e, n = self.epilogue, self.names
        B, C = X.shape[0], self.n_features
        Z = X.reshape(-1, C)
        m = Z.shape[0]
        Y = self.Y[:m]
        A = Y if self.A is self.Y else self.A[:m]
        ops.batch_norm_inference(
            Z, params[n["gamma"]], params[n["beta"]], params[n["mean"]], params[n["var"]],
            self.eps, e.activation, e.slope, Y, A,
        )  # fmt: skip
        return A.reshape(B, *self.shape)

    def backward(self, ops: Ops, dY: Array, params: dict, grads: dict) -> Array | None:
        e, n, m = self.epilogue, self.names, self.m
        dA = dY.reshape(m, self.n_features)
        if e.dropout:
            # The identity never reads `saved`, but a kernel is passed it: a valid array.
            ops.act_backward(dA, dA, IDENTITY, 0.0, self.keep[:m], e.dropout)
        saved = self.A[:m] if e.activation.saved == "a" else self.Y[:m]
        dX = None if self.dX is None else self.dX[:m]
        ops.batch_norm_backward(
            dA, saved, e.activation, e.slope, self.Xhat[:m], params[n["gamma"]], self.stats,
            grads[n["gamma"]], grads[n["beta"]], dX,
        )  # fmt: skip
        return None if dX is None else dX.reshape(dY.shape[0], *self.shape)

    def commit(self, ops: Ops, params: dict) -> None:
        """Write the running statistics of the last training forward into ``params``."""
        if self.m:
            ops.copy(self.new_stats[0], params[self.names["mean"]])
            ops.copy(self.new_stats[1], params[self.names["var"]])
