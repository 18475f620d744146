"""The fused MLP step for a GPU array library (CuPy): the fewest kernel launches per step.

The same flat buffers and preallocated workspaces as :class:`~anynet.fast.numpy_mlp.FusedMLPStep`
(it inherits them, and the conversions to and from the generic engine's structures), with the
element-wise chains run as the CUDA kernels of :mod:`anynet.fast.cuda`. A step of the
benchmark's 784-256-128-64-10 MLP with Adam is 25 launches: per layer a matrix product and
one bias + activation kernel forward (8); the loss and its gradient in one, and its sum (2);
per layer a weight gradient product and a bias gradient sum, and below the top layer a product
and one activation backward kernel (14); one Adam kernel for all parameters. The generic
engine issues about 300 operations for the same step.

Nothing here reads a device value on the host: the loss comes back as a 0-d device array, so
an epoch runs without synchronizing (the training loop reads the losses once per epoch).

The class takes its array library and kernels as arguments, which is how the test suite runs
it on the CPU: with NumPy arrays and the kernels' source built as host C++ with one thread
(``tests/test_cuda_kernels.py``), against the generic engine.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from anynet.fast.cuda import ACTIVATIONS, Kernels
from anynet.fast.numpy_mlp import FusedMLPStep, adam_scalars

__all__ = ["DeviceMLPStep"]


class DeviceMLPStep(FusedMLPStep):
    """:class:`FusedMLPStep` on ``xp`` (e.g. ``cupy``), its element-wise work in ``kernels``.

    ``device`` is a context manager that makes the buffers' device current (a CuPy
    ``Device``), or ``None``.
    """

    def __init__(
        self,
        model: Any,
        plan: Any,
        optimizer: Any,
        template_state: Any,
        params: Any,
        dtype: Any,
        loss: str,
        reduction: str,
        *,
        xp: Any,
        kernels: Kernels,
        device: Any = None,
        name: str = "fused cupy",
    ) -> None:
        self.xp = xp
        self._device = device if device is not None else contextlib.nullcontext()
        with self._device:
            super().__init__(model, plan, optimizer, template_state, params, dtype, loss, reduction)
            # A Dense layer without a bias still takes the bias + activation kernel.
            self._no_bias = [
                None if names[1:] else xp.zeros(d.n_out, self.dtype)
                for (d, _, _), names in zip(plan, self._dense_names, strict=True)
            ]
        self.kernels = kernels
        self.name = name
        self._tiny = float(np.finfo(self.dtype).tiny)  # below it, optimizer state is flushed
        self._kinds = [
            (ACTIVATIONS[type(act).__name__ if act is not None else None], _slope(act))
            for _, act, _ in plan
        ]

    def _allocate(self, batch: int) -> None:
        super()._allocate(batch)
        self.rowloss = self.xp.empty(batch, self.dtype)

    def __call__(self, X: Any, y: Any, *, l1: float, l2: float, rng: Any) -> Any:
        """One step on batch ``X, y`` (arrays of ``xp`` on the device); returns the loss as a
        0-d array on the device."""
        with self._device:
            B = X.shape[0]
            if B > self._buffers_for:
                self._allocate(B)
            if X.dtype != self.dtype:
                X = X.astype(self.dtype)
            if not X.flags.c_contiguous:
                X = self.xp.ascontiguousarray(X)
            y = self.xp.ascontiguousarray(y, dtype=self.xp.int64)
            return self._step(X, y, B, float(l1), float(l2), rng)

    def _step(self, X, y, B, l1, l2, rng):
        xp, K = self.xp, self.kernels
        mm = xp.matmul
        inputs = [X]
        n = len(self.plan)
        # forward
        for i, (dense, act, p) in enumerate(self.plan):
            names = self._dense_names[i]
            Z = self.Z[i][:B]
            mm(inputs[-1], self.views[names[0]], out=Z)
            kind, slope = self._kinds[i]
            if dense.bias or act is not None:
                bias = self.views[names[1]] if dense.bias else self._no_bias[i]
                K.bias_act(Z, bias, kind, slope)
            out = Z
            if p:
                # The same draw as the generic Dropout: uniform of the batch's shape, >= p.
                out = self.D[i][:B]
                K.dropout(Z, rng.uniform(Z.shape, self.dtype.name), p, out, self.keep[i][:B])
            inputs.append(out)
        # loss: the logits buffer becomes dlogits
        logits, rowloss = self.Z[-1][:B], self.rowloss[:B]
        scale = 1.0 / B if self.reduction == "mean" else 1.0
        if self.loss == "sigmoid_binary_cross_entropy":
            K.sigmoid_cross_entropy(logits, y, rowloss, scale)
        else:
            K.softmax_cross_entropy(logits, y, rowloss, scale)
        value = xp.sum(rowloss)
        # backward
        dZ = logits
        for i in range(n - 1, -1, -1):
            dense, _, _ = self.plan[i]
            names = self._dense_names[i]
            mm(inputs[i].T, dZ, out=self.grad_views[names[0]])
            if dense.bias:
                xp.sum(dZ, axis=0, out=self.grad_views[names[1]])
            if i == 0:
                break  # nobody wants the gradient of the data
            _, prev_act, prev_p = self.plan[i - 1]
            dA = self.dA[i - 1][:B]
            mm(dZ, self.views[names[0]].T, out=dA)
            if prev_act is not None or prev_p:
                kind, slope = self._kinds[i - 1]
                keep = self.keep[i - 1][:B] if prev_p else None
                K.act_backward(dA, self.Z[i - 1][:B], kind, slope, keep, prev_p)
            dZ = dA
        # penalties on the weights (one region of the flat buffers); rare, so plain operations
        W, gW, tW = (a[: self.n_weights] for a in (self.theta, self.grad, self.tmp))
        if l2:
            value = value + 0.5 * l2 * xp.dot(W, W)
            xp.multiply(W, l2, out=tW)
            xp.add(gW, tW, out=gW)
        if l1:
            value = value + l1 * xp.sum(xp.abs(W))
            xp.sign(W, out=tW)
            xp.multiply(tW, l1, out=tW)
            xp.add(gW, tW, out=gW)
        # optimizer: one kernel over all parameters
        self.count += 1
        h = self.hyper
        if self.kind == "sgd":
            K.sgd(
                self.theta,
                self.grad,
                self.trace,
                learning_rate=h["learning_rate"],
                momentum=h["momentum"],
                nesterov=h["nesterov"],
                weight_decay=h["weight_decay"],
                tiny=self._tiny,
            )
        else:
            lr, wd = h["learning_rate"], h["weight_decay"]
            decoupled = self.kind == "adamw"
            K.adam(
                self.theta,
                self.grad,
                self.m,
                self.v,
                *adam_scalars(h, self.count),
                tiny=self._tiny,
                weight_decay=0.0 if decoupled else wd,
                decay=1.0 - lr * wd if decoupled else 1.0,
            )
        return value


def _slope(act: Any) -> float:
    return float(getattr(act, "negative_slope", 0.0))
