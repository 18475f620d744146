"""One training step: forward, loss, penalties, backprop, optimizer update.

These functions are the whole of "training" that the engine knows; epochs, batches, progress
and checkpoints belong to the training loop built on them.

:class:`Step` is the seam between the two: an object that holds the parameters and optimizer
state and takes a step in two halves, :meth:`~Step.compute_grads` then
:meth:`~Step.apply_grads`, so that something can stand between them (an all-reduce of the
gradients over processes). :class:`GenericStep` is the engine's own step, for any backend and
model; a backend's fused step (:mod:`anynet.fast`) is another, and the training loop takes
either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from array_api_compat import array_namespace

from anynet.nn.layers import Layer
from anynet.nn.losses import LOSSES
from anynet.nn.optim import GradientTransformation, apply_updates
from anynet.nn.penalties import l1_penalty, l2_penalty, penalized

__all__ = ["GenericStep", "Step", "get_loss", "loss_and_grads", "train_step", "trainable"]

Array = Any
Loss = Callable[..., tuple[Array, Array]]


def get_loss(loss: str | Loss) -> Loss:
    """A loss function by name (see :data:`anynet.nn.losses.LOSSES`); a callable passes."""
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except (KeyError, TypeError):
        raise ValueError(
            f"loss={loss!r} is not a loss anynet knows; expected one of {sorted(LOSSES)} "
            "or a callable (pred, targets, *, reduction, xp) -> (loss, dpred)"
        ) from None


def loss_and_grads(
    model: Layer,
    params: Mapping[str, Array],
    X: Array,
    y: Array,
    *,
    loss: str | Loss = "softmax_cross_entropy",
    l1: float = 0.0,
    l2: float = 0.0,
    reduction: str = "mean",
    train: bool = True,
    rng: Any = None,
    xp: Any = None,
    updates: dict[str, Array] | None = None,
    sample_weight: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """The loss on one batch and its gradient with respect to every trained parameter.

    Parameters
    ----------
    model : Layer
        Usually a :class:`~anynet.nn.Sequential`.
    params : mapping of str to array
        The model's parameters.
    X, y : array
        A batch of inputs and its targets (class labels or a target array).
    loss : str or callable
        A name from :data:`anynet.nn.losses.LOSSES` or a function returning ``(loss, dpred)``.
    l1, l2 : float
        Strengths of the L1 and L2 penalties on the weight matrices (not the biases), added to
        the loss as ``l1 * sum|W|`` and ``l2 / 2 * sum W**2``.
    reduction : {'mean', 'sum'}
        How the loss combines the samples of the batch.
    train : bool
        Training mode (dropout on).
    rng : anynet.backends.Generator, optional
        The backend generator dropout draws from.
    updates : dict, optional
        Where a training pass puts the new values of the model's statistics (a batch norm's
        running mean and variance, :meth:`~anynet.nn.Layer.statistics`); they have no
        gradient.
    sample_weight : array, optional
        One weight per sample of the batch, multiplying its loss (see
        :mod:`anynet.nn.losses`); not the penalties.

    Returns
    -------
    loss : array
        0-d array on the device: the penalised loss. Reading it is a device sync.
    grads : dict of str to array
        Same names as ``params``, less the statistics.
    """
    xp = array_namespace(X) if xp is None else xp
    kwargs = {} if updates is None or not model.statistics() else {"updates": updates}
    pred, backprop = model.forward(
        params, X, train=train, rng=rng, xp=xp, input_grad=False, **kwargs
    )
    weighted = {} if sample_weight is None else {"sample_weight": sample_weight}
    value, dpred = get_loss(loss)(pred, y, reduction=reduction, xp=xp, **weighted)
    _, grads = backprop(dpred)
    for strength, penalty in ((l1, l1_penalty), (l2, l2_penalty)):
        if strength:
            weights = {name: params[name] for name in penalized(params)}
            extra, dW = penalty(weights, strength, xp=xp)
            value = value + extra
            for name, g in dW.items():
                grads[name] = grads[name] + g
    return value, grads


def train_step(
    model: Layer,
    optimizer: GradientTransformation,
    params: Mapping[str, Array],
    opt_state: Any,
    X: Array,
    y: Array,
    **kwargs: Any,
) -> tuple[dict[str, Array], Any, Array]:
    """One optimizer step on one batch; ``kwargs`` go to :func:`loss_and_grads`.

    ``opt_state`` is the optimizer's state for the :func:`trainable` parameters. Returns the new
    parameters (statistics included), the new optimizer state and the batch loss (a 0-d device
    array: read it rarely, every read is a sync).
    """
    statistics: dict[str, Array] = {}
    value, grads = loss_and_grads(model, params, X, y, updates=statistics, **kwargs)
    trained = trainable(model, params)
    updates, opt_state = optimizer.update(grads, opt_state, trained)
    return {**params, **apply_updates(trained, updates), **statistics}, opt_state, value


def trainable(model: Layer, params: Mapping[str, Array]) -> dict[str, Array]:
    """The parameters an optimizer updates: all but the model's statistics (a batch norm's
    running mean and variance), which is also what its state is built for:
    ``optimizer.init(trainable(model, params))``."""
    statistics = set(model.statistics())
    return {name: p for name, p in params.items() if name not in statistics}


class Step:
    """A training step over parameters it holds: gradients first, then the update.

    Subclasses hold ``params`` and ``opt_state`` (in the engine's structures: a ``dict`` of
    arrays by name, the optimizer's NamedTuples) and implement :meth:`compute_grads` and
    :meth:`apply_grads`; calling the step runs both.

    Attributes
    ----------
    name : str
        Which step this is (``'generic'``, ``'fused cpu + numba'``...): what ran, for the record.
    model : Layer
        The network.
    loss : callable or None
        Its loss function (:func:`get_loss`'s result); ``None`` if it has none to share, and
        then :meth:`evaluate` cannot measure the parameters (a wrapper around another step
        passes the inner one's).
    needs_rng : bool
        Whether :meth:`compute_grads` draws random numbers (dropout) and so needs ``rng``.
    """

    name = "step"
    model: Layer
    loss: Loss | None = None
    needs_rng: bool = False

    @property
    def params(self) -> dict[str, Array]:
        """The parameters, by name."""
        raise NotImplementedError

    @property
    def opt_state(self) -> Any:
        """The optimizer state, in the optimizer's own structure."""
        raise NotImplementedError

    @property
    def grads(self) -> dict[str, Array]:
        """The gradients of the last :meth:`compute_grads`, by parameter name."""
        raise NotImplementedError

    def compute_grads(
        self,
        X: Array,
        y: Array,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
        rng: Any = None,
        sample_weight: Array | None = None,
    ) -> Array:
        """Forward, loss and backprop on one batch; returns the loss (a 0-d device array: read
        it rarely, every read is a sync) and keeps the gradients for :meth:`apply_grads`.
        ``sample_weight`` (one per sample, on the device) multiplies each sample's loss."""
        raise NotImplementedError

    def apply_grads(self) -> None:
        """One optimizer update with the gradients of the last :meth:`compute_grads`."""
        raise NotImplementedError

    def predict(self, X: Array, params: Mapping[str, Array] | None = None) -> Array:
        """The model's output on ``X`` in evaluation mode (no dropout; batch norm's running
        statistics), with ``params`` or, by default, the step's own parameters.

        A fused step computes it through its own stages when given its own parameters; any
        step may be asked about other parameters (the best epoch's, say) and then runs the
        generic engine."""
        xp = array_namespace(X)
        params = self.params if params is None else params
        dtype = next(iter(params.values())).dtype
        if X.dtype != dtype:
            X = xp.astype(X, dtype)
        pred, _ = self.model.forward(params, X, train=False, xp=xp, input_grad=False)
        return pred

    def evaluate(self, X: Array, y: Array) -> Array | None:
        """The loss of the current parameters on one batch (a 0-d device array, the mean over
        the batch), without training: no dropout, no penalties, no update; ``None`` for a step
        without a :attr:`loss`.

        The training loop checks what a checkpoint is about to hold with it: the loss a step
        returns is that of the parameters *before* its update."""
        if self.loss is None:
            return None
        value, _ = get_loss(self.loss)(self.predict(X), y, reduction="mean", xp=array_namespace(X))
        return value

    def __call__(
        self,
        X: Array,
        y: Array,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
        rng: Any = None,
        sample_weight: Array | None = None,
    ) -> Array:
        """A whole step on one batch; returns its loss."""
        loss = self.compute_grads(X, y, l1=l1, l2=l2, rng=rng, sample_weight=sample_weight)
        self.apply_grads()
        return loss

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class GenericStep(Step):
    """The engine's training step: :func:`loss_and_grads` and the optimizer's ``update``,
    in pure Array API code, on any backend and for any model and loss.

    Parameters
    ----------
    model : Layer
    optimizer : GradientTransformation
    params : mapping of str to array
        Where to start.
    opt_state : optional
        The optimizer's state; ``optimizer.init(trainable(model, params))`` when omitted.
    loss : str or callable
        As for :func:`loss_and_grads`.
    reduction : {'mean', 'sum'}
    xp : namespace, optional
        The arrays' namespace (found from ``params`` when omitted).

    Examples
    --------
    >>> import anynet
    >>> from anynet import nn
    >>> be = anynet.get_backend("numpy")
    >>> model = nn.Sequential(nn.Dense(3, 2))
    >>> params = model.init_params(rng=be.host_generator(0), backend=be)
    >>> step = nn.GenericStep(model, nn.sgd(0.1), params)
    >>> X, y = be.asarray([[1.0, 2.0, 3.0]], dtype="float32"), be.asarray([1])
    >>> bool(step(X, y) > step(X, y))  # the loss falls
    True
    """

    name = "generic"

    def __init__(
        self,
        model: Layer,
        optimizer: GradientTransformation,
        params: Mapping[str, Array],
        opt_state: Any = None,
        *,
        loss: str | Loss = "softmax_cross_entropy",
        reduction: str = "mean",
        xp: Any = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.loss = get_loss(loss)
        self.reduction = reduction
        self._params = dict(params)
        if opt_state is None:
            opt_state = optimizer.init(trainable(model, self._params))
        self._opt_state = opt_state
        self.xp = xp if xp is not None else array_namespace(*self._params.values())
        self._grads: dict[str, Array] = {}
        # New values of the model's statistics, written with the optimizer's update so that
        # compute_grads leaves the parameters as they were.
        self._statistics: dict[str, Array] | None = {} if model.statistics() else None
        # Found once: a container walks its layers to name them, every step otherwise.
        statistics = set(model.statistics())
        self._trained = [n for n in self._params if n not in statistics]
        self.needs_rng = any(getattr(layer, "p", 0.0) > 0.0 for layer in _walk_layers(model))

    @property
    def params(self) -> dict[str, Array]:
        return self._params

    @property
    def opt_state(self) -> Any:
        return self._opt_state

    @property
    def grads(self) -> dict[str, Array]:
        return self._grads

    def compute_grads(self, X, y, *, l1=0.0, l2=0.0, rng=None, sample_weight=None):
        loss, self._grads = loss_and_grads(
            self.model,
            self._params,
            X,
            y,
            loss=self.loss,
            l1=l1,
            l2=l2,
            reduction=self.reduction,
            train=True,
            rng=rng,
            xp=self.xp,
            updates=self._statistics,
            sample_weight=sample_weight,
        )
        return loss

    def apply_grads(self) -> None:
        if self._statistics is None:
            updates, self._opt_state = self.optimizer.update(
                self._grads, self._opt_state, self._params
            )
            self._params = apply_updates(self._params, updates)
            return
        trained = {name: self._params[name] for name in self._trained}
        updates, self._opt_state = self.optimizer.update(self._grads, self._opt_state, trained)
        self._params = {**self._params, **apply_updates(trained, updates), **self._statistics}
        self._statistics = {}


def _walk_layers(layer: Layer):
    """``layer`` and every layer inside it, containers (Sequential, Residual) opened."""
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from _walk_layers(inner)
