"""Data-parallel training: :class:`DataParallelStep` wraps any training step.

Every rank holds the same parameters and takes its part of each batch (a
:class:`~anynet.data.DataLoader` with ``shard=(rank, size)``). A step is then

1. the wrapped step's :meth:`~anynet.nn.Step.compute_grads` on the rank's part (the mean
   gradient of its ``n_r`` samples);
2. an all-gather of two numbers per rank, ``n_r`` and its loss: the batch's ``n = sum n_r``
   and its loss, ``sum (n_r / n) * loss_r``, the same on every rank;
3. the gradient scaled by ``n_r / n`` and summed over the ranks: one all-reduce of one flat
   buffer (a fused step's own gradient buffer, in place; a generic step's gradients
   flattened into one). The result is the mean gradient over the whole batch, as one process
   would compute it on that batch, up to rounding;
4. the wrapped step's :meth:`~anynet.nn.Step.apply_grads`: the same update on every rank.

Weighting by ``n_r`` keeps the mean right when the ranks' parts differ in size (a batch that
does not divide evenly) and lets a rank with an empty part (the last batch smaller than the
number of ranks) join the sum with nothing.

**Batch-norm statistics.** A batch norm normalizes with the statistics of the rank's own part
of the batch, as PyTorch's DistributedDataParallel does without SyncBatchNorm. The running
mean and variance it keeps are then averaged over the ranks (weighted as the gradients), one
more small all-reduce after the update, so the parameters stay the same on every rank. The
running mean is then the whole batch's; the running variance the mean of the parts'
(it leaves out how much the parts' means differ, a small bias at the batch sizes people use).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from anynet.distributed.communicator import Communicator, DistributedError
from anynet.nn.step import Step, trainable

__all__ = ["DataParallelStep"]

Array = Any


class DataParallelStep(Step):
    """A training step run by every rank of ``comm`` on its part of each batch, with the
    gradients summed between the two halves of the step (see the module's notes).

    Parameters
    ----------
    step : anynet.nn.Step
        Any step (:func:`~anynet.training.select_step`'s): a fused one, whose gradients are
        one flat buffer (``step.grad``) and whose ``params`` are views into its buffers, is
        reduced in place; any other has its ``grads`` and ``params`` dicts' entries replaced
        (the dicts its ``apply_grads`` reads, as :class:`~anynet.nn.GenericStep`'s are).
        Every rank starts it from the same parameters.
    comm : Communicator
        The ranks; its ``deterministic`` says how the sum is ordered.

    Notes
    -----
    The loss :meth:`compute_grads` returns is the whole batch's, the same on every rank, so
    every rank takes the same decisions (divergence, early stopping). :meth:`evaluate` is the
    rank's own (no communication: a callback that runs on rank 0 alone may call it), and
    ``None`` for an empty part.
    """

    def __init__(self, step: Step, comm: Communicator):
        reduction = getattr(step, "reduction", "mean")
        if reduction != "mean":
            raise DistributedError(
                f"a data-parallel step averages the ranks' mean gradients; the step's "
                f"reduction is {reduction!r}. Build the step with reduction='mean'."
            )
        self.step, self.comm = step, comm
        self.model, self.loss, self.reduction = step.model, step.loss, reduction
        self.needs_rng = step.needs_rng
        self.name = f"{step.name}, data-parallel on {comm.size} ranks ({comm.name})"
        # A fused step's flat buffers; None for a step of dicts.
        self._flat = getattr(step, "grad", None)
        statistics = self.model.statistics()
        self._statistics = [n for n in step.params if n in set(statistics)]
        self._trained = list(trainable(self.model, step.params))
        self._weight = 1.0

    # --- the wrapped step's state -----------------------------------------------------------

    @property
    def params(self) -> dict[str, Array]:
        return self.step.params

    @property
    def opt_state(self) -> Any:
        return self.step.opt_state

    @property
    def grads(self) -> dict[str, Array]:
        return self.step.grads

    def predict(self, X, params=None):
        return self.step.predict(X, params)

    def evaluate(self, X, y):
        if int(X.shape[0]) == 0:
            return None
        return self.step.evaluate(X, y)

    # --- the step ---------------------------------------------------------------------------

    def compute_grads(self, X, y, *, l1=0.0, l2=0.0, rng=None, sample_weight=None):
        # Weights scaled to average 1 over the global batch (a DataLoader's) keep the
        # n_r-weighted mean below the batch's weighted average.
        n = int(X.shape[0])
        how = {"l1": l1, "l2": l2, "rng": rng, "sample_weight": sample_weight}
        local = self.step.compute_grads(X, y, **how) if n else None
        table = self.comm.allgather_numbers([n, float(local) if n else 0.0])
        total = float(sum(table[:, 0]))
        if total == 0:
            raise DistributedError("a batch was empty on every rank: is the data set empty?")
        weights = [float(count) / total for count in table[:, 0]]
        loss = 0.0
        for weight, value in zip(weights, table[:, 1], strict=True):
            loss += weight * float(value)
        self._weight = weights[self.comm.rank]
        self._sum_gradients(self._weight, empty=not n)
        reference = next(iter(self.step.params.values()))
        xp = array_namespace(reference)
        return xp.asarray(loss, dtype=reference.dtype, device=device_of(reference))

    def apply_grads(self) -> None:
        self.step.apply_grads()
        if self._statistics:
            self._average_statistics(self._weight)

    def _sum_gradients(self, weight: float, *, empty: bool) -> None:
        if self._flat is not None:
            flat = self._flat
            if empty:
                flat[...] = 0
            else:
                flat *= weight
            summed = self.comm.allreduce_sum(flat)
            if summed is not flat:
                flat[...] = summed
            return
        grads = self.step.grads
        self._sum_entries(grads, self._trained, weight, empty=empty, in_place=False)

    def _average_statistics(self, weight: float) -> None:
        in_place = self._flat is not None  # a fused step's params are views of its buffer
        self._sum_entries(self.step.params, self._statistics, weight, in_place=in_place)

    def _sum_entries(self, arrays: dict, names: list[str], weight: float, **how: bool) -> None:
        """Replace ``arrays[name]`` for each name by the weighted sum over the ranks, through
        one flat buffer (``empty``: this rank adds zeros)."""
        params = self.step.params
        reference = params[names[0]]
        xp = array_namespace(reference)
        shapes = [tuple(params[name].shape) for name in names]
        if how.get("empty"):
            size = sum(_count(shape) for shape in shapes)
            flat = xp.zeros((size,), dtype=reference.dtype, device=device_of(reference))
        else:
            flat = xp.concat([xp.reshape(arrays[name], (-1,)) for name in names]) * weight
        flat = self.comm.allreduce_sum(flat)
        at = 0
        for name, shape in zip(names, shapes, strict=True):
            part = xp.reshape(flat[at : at + _count(shape)], shape)
            at += _count(shape)
            if how.get("in_place"):
                arrays[name][...] = part
            else:
                arrays[name] = part


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
