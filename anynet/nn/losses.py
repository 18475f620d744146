"""Losses. Each returns ``(loss, dpred)``: the loss as a 0-d array on the device, and its
gradient with respect to the prediction it was given.

Returning the gradient with the value means no loss ever needs an autograd, and the fused
form (``softmax - target`` for cross-entropy from logits) is the one used, not the chain of a
softmax backward and a log backward.

Targets are integer class labels of shape ``(N,)``, or a ``(N, K)`` array (one-hot or
probabilities) of the prediction's dtype. ``reduction='mean'`` averages over the ``N`` samples
(over all elements for :func:`mean_squared_error`), ``'sum'`` adds them up (the from-scratch
seed's gradients are sums over the batch).

``sample_weight``, a ``(N,)`` array of the prediction's dtype, multiplies each sample's loss
(and gradient) before the reduction, so ``'mean'`` still divides by ``N``. A weighted average
(scikit-learn's ``sum(w * loss) / sum(w)``) is the mean with weights scaled to average 1 over
the batch, which is what a :class:`~anynet.data.DataLoader` given ``sample_weight`` hands out.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from anynet.nn import functional as F

__all__ = [
    "LOSSES",
    "half_squared_error",
    "mean_squared_error",
    "nll_loss",
    "poisson_loss",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
]

Array = Any


def _targets(pred: Array, targets: Array, xp: Any) -> Array:
    """Targets as a ``(N, K)`` array of ``pred``'s dtype."""
    if targets.ndim == 1:
        return F.one_hot(targets, pred.shape[-1], dtype=pred.dtype, xp=xp)
    if tuple(targets.shape) != tuple(pred.shape):
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not fit predictions of shape "
            f"{tuple(pred.shape)}: pass class labels of shape ({pred.shape[0]},) or an array "
            "of the predictions' shape"
        )
    return targets


def _weighted(values: Array, sample_weight: Array | None, xp: Any) -> Array:
    """Per-sample ``values`` of shape ``(N, K)`` times the sample weights, if any."""
    if sample_weight is None:
        return values
    if tuple(sample_weight.shape) != (values.shape[0],):
        raise ValueError(
            f"sample_weight of shape {tuple(sample_weight.shape)} does not fit a batch of "
            f"{values.shape[0]} samples: pass one weight per sample, shape ({values.shape[0]},)"
        )
    return values * xp.reshape(sample_weight, (-1, 1))


def _scale(reduction: str, n: int) -> float:
    if reduction == "mean":
        return 1.0 / n
    if reduction == "sum":
        return 1.0
    raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")


def softmax_cross_entropy(
    logits: Array,
    targets: Array,
    /,
    *,
    reduction: str = "mean",
    xp: Any = None,
    sample_weight: Array | None = None,
) -> tuple[Array, Array]:
    """Cross-entropy of ``softmax(logits)`` against ``targets``, from logits.

    Computed with a max-shifted log-sum-exp, so logits of +-1e4 in float32 give a finite loss.
    The gradient is ``softmax(logits) * sum(targets) - targets`` (``softmax - one_hot`` for
    labels), scaled by the reduction.
    """
    xp = array_namespace(logits) if xp is None else xp
    scale = _scale(reduction, logits.shape[0])
    T = _targets(logits, targets, xp)
    logp = F.log_softmax(logits, xp=xp)
    loss = -xp.sum(_weighted(T * logp, sample_weight, xp)) * scale
    if targets.ndim == 1:
        dlogits = xp.exp(logp) - T
    else:
        dlogits = xp.exp(logp) * xp.sum(T, axis=-1, keepdims=True) - T
    return loss, _weighted(dlogits, sample_weight, xp) * scale


def nll_loss(
    log_probs: Array,
    targets: Array,
    /,
    *,
    reduction: str = "mean",
    xp: Any = None,
    sample_weight: Array | None = None,
) -> tuple[Array, Array]:
    """Negative log-likelihood of log-probabilities (the output of a
    :class:`~anynet.nn.LogSoftmax` layer), as PyTorch's ``nll_loss``."""
    xp = array_namespace(log_probs) if xp is None else xp
    scale = _scale(reduction, log_probs.shape[0])
    T = _targets(log_probs, targets, xp)
    T = _weighted(T, sample_weight, xp)
    return -xp.sum(T * log_probs) * scale, T * (-scale)


def sigmoid_binary_cross_entropy(
    logits: Array,
    targets: Array,
    /,
    *,
    reduction: str = "mean",
    xp: Any = None,
    sample_weight: Array | None = None,
) -> tuple[Array, Array]:
    """Per-class sigmoid with binary cross-entropy, from logits, summed over classes.

    The from-scratch seed's output layer: one independent sigmoid per class. Written as
    ``max(z, 0) - z * t + log1p(exp(-|z|))``, which never takes the log of 0; the gradient is
    ``sigmoid(z) - t``.
    """
    xp = array_namespace(logits) if xp is None else xp
    scale = _scale(reduction, logits.shape[0])
    T = _targets(logits, targets, xp)
    per_element = xp.where(logits > 0, logits, 0.0) - logits * T
    per_element = per_element + xp.log1p(xp.exp(-xp.abs(logits)))
    loss = xp.sum(_weighted(per_element, sample_weight, xp)) * scale
    return loss, _weighted(F.sigmoid(logits, xp=xp) - T, sample_weight, xp) * scale


def mean_squared_error(
    pred: Array,
    targets: Array,
    /,
    *,
    reduction: str = "mean",
    xp: Any = None,
    sample_weight: Array | None = None,
) -> tuple[Array, Array]:
    """Squared error ``(pred - targets)**2``, averaged over all elements (as PyTorch's
    ``mse_loss``) or summed."""
    xp = array_namespace(pred) if xp is None else xp
    T = _targets(pred, targets, xp)
    scale = _scale(reduction, math.prod(tuple(pred.shape)))
    diff = pred - T
    weighted = _weighted(diff, sample_weight, xp)
    return xp.sum(weighted * diff) * scale, weighted * (2.0 * scale)


def _values(pred: Array, targets: Array) -> Array:
    """Regression targets: an array of the prediction's shape."""
    if tuple(targets.shape) != tuple(pred.shape):
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not fit predictions of shape "
            f"{tuple(pred.shape)}: a regression loss takes one target per output"
        )
    return targets


def half_squared_error(
    pred: Array,
    targets: Array,
    /,
    *,
    reduction: str = "mean",
    xp: Any = None,
    sample_weight: Array | None = None,
) -> tuple[Array, Array]:
    """Half the squared error, summed over the outputs, averaged (or summed) over the samples:
    the loss whose gradient, ``pred - targets``, scikit-learn's ``MLPRegressor`` trains on
    (its reported loss also divides by the number of outputs)."""
    xp = array_namespace(pred) if xp is None else xp
    scale = _scale(reduction, pred.shape[0])
    diff = pred - _values(pred, targets)
    weighted = _weighted(diff, sample_weight, xp)
    return xp.sum(weighted * diff) * (0.5 * scale), weighted * scale


def poisson_loss(
    log_rate: Array,
    targets: Array,
    /,
    *,
    reduction: str = "mean",
    xp: Any = None,
    sample_weight: Array | None = None,
) -> tuple[Array, Array]:
    """Half the Poisson deviance of ``exp(log_rate)`` against counts ``targets`` >= 0, from the
    log-rate: ``exp(z) - t * z + t * log(t) - t``, 0 at ``exp(z) = t``, summed over the outputs
    and averaged (or summed) over the samples; its gradient is ``exp(z) - t``. scikit-learn's
    ``MLPRegressor(loss='poisson')``, whose output activation is ``exp``."""
    xp = array_namespace(log_rate) if xp is None else xp
    scale = _scale(reduction, log_rate.shape[0])
    T = _values(log_rate, targets)
    rate = xp.exp(log_rate)
    t_log_t = T * xp.log(xp.where(T > 0, T, xp.ones_like(T)))  # 0 log 0 = 0
    per_element = _weighted(rate - T * log_rate + t_log_t - T, sample_weight, xp)
    return xp.sum(per_element) * scale, _weighted(rate - T, sample_weight, xp) * scale


#: Losses by name, for the estimator and model files.
LOSSES = {
    "softmax_cross_entropy": softmax_cross_entropy,
    "nll": nll_loss,
    "sigmoid_binary_cross_entropy": sigmoid_binary_cross_entropy,
    "mse": mean_squared_error,
    "half_squared_error": half_squared_error,
    "poisson": poisson_loss,
}
