"""One fused training step, for any kernel family: the stages of a plan over flat buffers.

The generic engine (:mod:`anynet.nn`) allocates a new array for every operation, which is what
lets it run on any Array API library. At these sizes the allocations and the passes over memory
they imply cost as much as the arithmetic (on a GPU: the launches), so :class:`FusedStep` runs
the same step with

- all parameters in one flat buffer (weights first, so a penalty is one operation over one
  region; statistics such as batch norm's running mean last, so the trained parameters are
  one prefix), their gradients in another, the optimizer's state in one or two more: an
  optimizer update is one operation over all trained parameters;
- every intermediate preallocated by its stage (:mod:`anynet.fast.stages`);
- every operation one call of an :class:`~anynet.fast.ops.Ops`, whose family (NumPy, numba,
  CUDA) decides how it runs.

Results equal the generic step's up to floating-point rounding (the order of operations
differs), not bit for bit: ``tests/test_fast.py`` trains both and compares.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from anynet.fast.ops import AdamHyper, Ops, SGDHyper, optimizer_hyper
from anynet.fast.stages import Plan
from anynet.nn.optim import AdamState, LearningRateState, TraceState
from anynet.nn.params import ParamLayout
from anynet.nn.penalties import penalized
from anynet.nn.step import Step, get_loss

__all__ = ["FusedStep"]

Array = Any


class FusedStep(Step):
    """A training step fused over flat buffers, through ``ops``.

    ``params``, ``grads`` and ``opt_state`` present the buffers in the generic engine's
    structures (dicts of views, the optimizer's NamedTuples), so checkpoints, callbacks and the
    estimator see the same whichever step ran.

    Parameters
    ----------
    model : Layer
        The network, as :func:`~anynet.fast.stages.plan` read it into ``plan``.
    plan : Plan
    optimizer : GradientTransformation
        A built-in SGD, Adam or AdamW (its ``spec`` names it).
    params : mapping of str to array
        Where to start (copied into the flat buffer).
    opt_state : optional
        The optimizer's state in the generic structure (copied in); fresh when omitted.
    ops : Ops
    loss : str or callable
        The loss the plan's head computes, in the engine's terms (for :meth:`evaluate`).
    reduction : {'mean', 'sum'}
    dtype : str
        ``'float32'`` or ``'float64'``.
    """

    def __init__(
        self,
        model: Any,
        plan: Plan,
        optimizer: Any,
        params: Mapping[str, Array],
        opt_state: Any = None,
        *,
        ops: Ops,
        loss: Any = "softmax_cross_entropy",
        reduction: str,
        dtype: str,
    ):
        self.model, self.plan, self.ops = model, plan, ops
        self.loss = get_loss(loss)
        self.reduction = reduction
        self.dtype = dtype
        self.name = f"fused {ops.name}"
        self.needs_rng = plan.needs_rng
        shapes = model.param_shapes()
        statistics = {name for stage in plan.stages for name in stage.statistics}
        trained = {n: s for n, s in shapes.items() if n not in statistics}
        weights = penalized(trained)
        # Weights first: the penalties apply to one contiguous region; the statistics last:
        # the optimizer runs over one contiguous prefix, the trained parameters.
        order = [*weights, *(n for n in trained if n not in weights), *sorted(statistics)]
        self.layout = ParamLayout({n: shapes[n] for n in order})
        self.trained = ParamLayout({n: shapes[n] for n in order if n in trained})
        self.n_weights = sum(math.prod(shapes[n]) for n in weights)
        trained_params = {n: params[n] for n in self.trained.shapes}
        template = optimizer.init(trained_params) if opt_state is None else opt_state
        with ops.context():
            xp, size = ops.xp, self.trained.size
            self.theta = xp.empty(self.layout.size, dtype=dtype)
            self.grad = xp.zeros(size, dtype=dtype)
            self.rule = _rule(optimizer, xp, size, dtype)
        self._params = self.layout.unflatten(self.theta)
        self._grads = self.trained.unflatten(self.grad)
        self._template = template
        self._estimators = [stage for stage in plan.stages if stage.statistics]
        # The model's layers the stages run: all but the final LogSoftmax of an 'nll' loss,
        # which the head computes with the loss in training and predict() runs itself.
        self._covered = len(model.layers) - (loss == "nll")
        self.capacity, self.sample_shape = 0, None
        self.load(params, opt_state)

    # --- the engine's view of the buffers ---------------------------------------------------

    @property
    def params(self) -> dict[str, Array]:
        return self._params

    @property
    def grads(self) -> dict[str, Array]:
        return self._grads

    @property
    def opt_state(self) -> Any:
        return self.rule.state(self._template, self.trained)

    def load(self, params: Mapping[str, Array], opt_state: Any = None) -> None:
        """Copy parameters (and an optimizer state in the generic structure) into the
        buffers."""
        with self.ops.context():
            for name, view in self._params.items():
                view[...] = self.ops.xp.asarray(params[name])
            if opt_state is not None:
                self.rule.load(opt_state, self.trained, self.ops.xp)

    # --- the step ---------------------------------------------------------------------------

    def _allocate(self, batch: int, sample_shape: tuple) -> None:
        xp, shape = self.ops.xp, sample_shape
        for i, stage in enumerate(self.plan.stages):
            shape = stage.allocate(xp, batch, shape, self.dtype, input_grad=i > 0)
        self.capacity, self.sample_shape = batch, sample_shape

    def compute_grads(self, X, y, *, l1=0.0, l2=0.0, rng=None, sample_weight=None):
        ops, xp = self.ops, self.ops.xp
        with ops.context():
            B, sample_shape = X.shape[0], tuple(X.shape[1:])
            if B > self.capacity or sample_shape != self.sample_shape:
                self._allocate(max(B, self.capacity), sample_shape)
            if X.dtype != self.theta.dtype or not X.flags.c_contiguous:
                X = xp.ascontiguousarray(X, dtype=self.dtype)
            labels = self.plan.head.labels  # else regression targets, cast by the head
            if labels and (y.dtype != xp.int64 or not y.flags.c_contiguous):  # str(dtype): 13 us
                y = xp.ascontiguousarray(y, dtype=xp.int64)
            stages, params, grads = self.plan.stages, self._params, self._grads
            h = X
            for stage in stages:
                h = stage.forward(ops, h, params, rng)
            scale = 1.0 / B if self.reduction == "mean" else 1.0
            # h, the logits, becomes dlogits
            value = self.plan.head.loss(ops, h, y, scale, sample_weight)
            for stage in reversed(stages):
                h = stage.backward(ops, h, params, grads)
            W, gW = self.theta[: self.n_weights], self.grad[: self.n_weights]
            if l2:
                value = value + ops.l2_penalty(W, gW, float(l2))
            if l1:
                value = value + ops.l1_penalty(W, gW, float(l1))
            return xp.asarray(value, dtype=self.dtype)

    def predict(self, X, params=None):
        """The model's output on ``X`` in evaluation mode, through the stages when ``params``
        are the step's own (the generic engine's otherwise), in slices of at most the training
        batch: the stages' buffers serve, and nothing new of the batch's size is allocated
        but the output. Neither the parameters nor the gradients of the last
        :meth:`compute_grads` change."""
        if params is not None and params is not self._params:
            return super().predict(X, params)
        ops, xp = self.ops, self.ops.xp
        with ops.context():
            B, sample_shape = X.shape[0], tuple(X.shape[1:])
            if not self.capacity or sample_shape != self.sample_shape:
                self._allocate(max(self.capacity, min(B, 256)), sample_shape)
            if X.dtype != self.theta.dtype or not X.flags.c_contiguous:
                X = xp.ascontiguousarray(X, dtype=self.dtype)
            out = None
            for start in range(0, B, self.capacity):
                h = X[start : start + self.capacity]
                for stage in self.plan.stages:
                    h = stage.infer(ops, h, self._params)
                if out is None:
                    out = xp.empty((B, *h.shape[1:]), dtype=self.dtype)
                out[start : start + h.shape[0]] = h
            if len(self.model.layers) > self._covered:  # the LogSoftmax an 'nll' plan leaves
                out, _ = self.model.layers[-1].forward({}, out, train=False, input_grad=False)
            return out

    def apply_grads(self) -> None:
        with self.ops.context():
            self.rule.apply(self.ops, self.theta[: self.trained.size], self.grad)
            for stage in self._estimators:  # after the update, as the generic step does
                stage.commit(self.ops, self._params)


# --- optimizers over the flat buffers -------------------------------------------------------


def _rule(optimizer: Any, xp: Any, size: int, dtype: str) -> Any:
    kind, settings = optimizer.spec
    rate = settings["learning_rate"]
    schedule = rate if callable(rate) else None
    hyper = optimizer_hyper((kind, {**settings, "learning_rate": 0.0 if schedule else rate}))
    rule = (_SGD if isinstance(hyper, SGDHyper) else _Adam)(hyper, xp, size, dtype)
    rule.schedule = schedule
    return rule


def _at(rule: Any) -> Any:
    """The rule's hyper-parameters for its step ``count`` (1 on the first update): the
    schedule's rate at the count the generic update would read, ``count - 1``."""
    if rule.schedule is None:
        return rule.hyper
    return dataclasses.replace(rule.hyper, learning_rate=float(rule.schedule(rule.count - 1)))


def _walk(state: Any):
    """Every NamedTuple of an optimizer state (chains are plain tuples of states)."""
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        for s in state:
            yield from _walk(s)
    else:
        yield state


def _rebuild(state: Any, replace: Any) -> Any:
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        return tuple(_rebuild(s, replace) for s in state)
    return replace(state)


class _Adam:
    """Adam (or AdamW) over the flat buffers: moments ``m`` and ``v``, and the step count."""

    def __init__(self, hyper: AdamHyper, xp: Any, size: int, dtype: str):
        self.hyper = hyper
        self.m = xp.zeros(size, dtype=dtype)
        self.v = xp.zeros(size, dtype=dtype)
        self.count = 0
        self.schedule = None  # or a function of the step count (see _rule)

    def apply(self, ops: Ops, theta: Array, grad: Array) -> None:
        self.count += 1
        ops.adam(theta, grad, self.m, self.v, self.count, _at(self))

    def state(self, template: Any, layout: ParamLayout) -> Any:
        mu, nu = layout.unflatten(self.m), layout.unflatten(self.v)

        def replace(s):
            if isinstance(s, AdamState):
                return AdamState(count=self.count, mu=mu, nu=nu)
            if isinstance(s, LearningRateState):
                return LearningRateState(self.count)
            return s

        return _rebuild(template, replace)

    def load(self, opt_state: Any, layout: ParamLayout, xp: Any) -> None:
        mu, nu = layout.unflatten(self.m), layout.unflatten(self.v)
        for s in _walk(opt_state):
            if isinstance(s, AdamState):
                self.count = int(s.count)
                for name in mu:
                    mu[name][...] = xp.asarray(s.mu[name])
                    nu[name][...] = xp.asarray(s.nu[name])


class _SGD:
    """SGD over the flat buffers, with a momentum trace if it has momentum."""

    def __init__(self, hyper: SGDHyper, xp: Any, size: int, dtype: str):
        self.hyper = hyper
        self.trace = xp.zeros(size, dtype=dtype) if hyper.momentum else None
        self.count = 0
        self.schedule = None  # or a function of the step count (see _rule)

    def apply(self, ops: Ops, theta: Array, grad: Array) -> None:
        self.count += 1
        ops.sgd(theta, grad, self.trace, _at(self))

    def state(self, template: Any, layout: ParamLayout) -> Any:
        trace = layout.unflatten(self.trace) if self.trace is not None else None

        def replace(s):
            if isinstance(s, TraceState) and trace is not None:
                return TraceState(trace)
            if isinstance(s, LearningRateState):
                return LearningRateState(self.count)
            return s

        return _rebuild(template, replace)

    def load(self, opt_state: Any, layout: ParamLayout, xp: Any) -> None:
        for s in _walk(opt_state):
            if isinstance(s, LearningRateState):
                self.count = int(s.count)
            elif isinstance(s, TraceState) and s.trace and self.trace is not None:
                trace = layout.unflatten(self.trace)
                for name in trace:
                    trace[name][...] = xp.asarray(s.trace[name])
