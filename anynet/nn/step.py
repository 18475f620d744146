"""One training step: forward, loss, penalties, backprop, optimizer update.

These functions are the whole of "training" that the engine knows; epochs, batches, progress
and checkpoints belong to the training loop built on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from array_api_compat import array_namespace

from anynet.nn.layers import Layer
from anynet.nn.losses import LOSSES
from anynet.nn.optim import GradientTransformation, apply_updates
from anynet.nn.penalties import l1_penalty, l2_penalty, penalized

__all__ = ["get_loss", "loss_and_grads", "train_step"]

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
) -> tuple[Array, dict[str, Array]]:
    """The loss on one batch and its gradient with respect to every parameter.

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

    Returns
    -------
    loss : array
        0-d array on the device: the penalised loss. Reading it is a device sync.
    grads : dict of str to array
        Same names as ``params``.
    """
    xp = array_namespace(X) if xp is None else xp
    pred, backprop = model.forward(params, X, train=train, rng=rng, xp=xp, input_grad=False)
    value, dpred = get_loss(loss)(pred, y, reduction=reduction, xp=xp)
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

    Returns the new parameters, the new optimizer state and the batch loss (a 0-d device array:
    read it rarely, every read is a sync).
    """
    value, grads = loss_and_grads(model, params, X, y, **kwargs)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return apply_updates(params, updates), opt_state, value
