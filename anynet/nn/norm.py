"""Batch normalization: a layer whose parameters include statistics that training estimates.

:class:`BatchNorm` normalizes each feature (a dense layer's column, a convolution's channel)
with the batch's mean and variance while training, and with running estimates of them in
evaluation. The running estimates are parameters like any other as far as model files,
checkpoints and the flat buffer go (PyTorch keeps them in its ``state_dict`` and Keras among a
layer's weights for the same reason: a model is not complete without them), but they are not
trained: :meth:`~anynet.nn.Layer.statistics` names them, they get no gradient, and a training
forward pass reports their new values in ``updates`` for the step to write after its optimizer
update.

The numbers are PyTorch's: the batch variance normalizes with ``1/m`` (biased), the running
variance accumulates the unbiased ``1/(m-1)`` one, ``momentum`` is the weight of the new batch
(0.1) and ``eps`` 1e-5.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from anynet.checks import check_int, check_number
from anynet.nn.layers import Layer

__all__ = ["BatchNorm"]

Array = Any


class BatchNorm(Layer):
    """Batch normalization over the features of ``(N, C)`` or the channels of ``(N, C, H, W)``.

    ``Y = gamma * (X - mean) / sqrt(var + eps) + beta``, with the batch's statistics in
    training and the running ones (``mean``, ``var``) in evaluation.

    Parameters
    ----------
    n_features : int
        ``C``: features of a dense input, or channels of images.
    momentum : float
        Weight of each new batch in the running statistics, in (0, 1].
    eps : float
        Added to the variance before its square root.

    Examples
    --------
    >>> import anynet
    >>> from anynet.nn import BatchNorm
    >>> be = anynet.get_backend("numpy")
    >>> bn = BatchNorm(2)
    >>> params = bn.init_params(rng=be.host_generator(0), backend=be)
    >>> sorted(params), bn.statistics()
    (['beta', 'gamma', 'mean', 'var'], ('mean', 'var'))
    >>> X = be.asarray([[1.0, 10.0], [3.0, 30.0]], dtype="float32")
    >>> updates = {}
    >>> Y, _ = bn.forward(params, X, train=True, updates=updates)
    >>> Y.round(2).tolist(), [round(m, 3) for m in updates["mean"].tolist()]
    ([[-1.0, -1.0], [1.0, 1.0]], [0.2, 2.0])
    """

    has_params = True

    def __init__(self, n_features: int, *, momentum: float = 0.1, eps: float = 1e-5):
        self.n_features = check_int("n_features", n_features, minimum=1)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0, low_open=True)
        self.eps = check_number("eps", eps, low=0.0, low_open=True)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        C = (self.n_features,)
        return {"gamma": C, "beta": C, "mean": C, "var": C}

    def statistics(self) -> tuple[str, ...]:
        return ("mean", "var")

    def init_params(self, *, rng, backend, dtype="float32"):
        xp, kind, dev = backend.xp, backend.dtype(dtype), backend.device
        C = (self.n_features,)
        return {
            "gamma": xp.ones(C, dtype=kind, device=dev),
            "beta": xp.zeros(C, dtype=kind, device=dev),
            "mean": xp.zeros(C, dtype=kind, device=dev),
            "var": xp.ones(C, dtype=kind, device=dev),
        }

    def _shape_of(self, X: Array) -> tuple[int, ...]:
        """How a per-feature vector broadcasts against ``X``."""
        if X.ndim not in (2, 4) or X.shape[1] != self.n_features:
            raise ValueError(
                f"{self!r} expects input of shape (batch, {self.n_features}) or (batch, "
                f"{self.n_features}, height, width); got {tuple(X.shape)}"
            )
        return (1, self.n_features) if X.ndim == 2 else (1, self.n_features, 1, 1)

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True, updates=None):
        xp = array_namespace(X) if xp is None else xp
        shape = self._shape_of(X)
        axes = (0,) if X.ndim == 2 else (0, 2, 3)
        m = X.shape[0] if X.ndim == 2 else X.shape[0] * X.shape[2] * X.shape[3]
        gamma = xp.reshape(params["gamma"], shape)
        if train:
            mean = xp.mean(X, axis=axes, keepdims=True)
            centred = X - mean
            var = xp.mean(centred * centred, axis=axes, keepdims=True)
            if updates is not None:
                keep, new = 1.0 - self.momentum, self.momentum
                unbiased = m / (m - 1) if m > 1 else 1.0
                updates["mean"] = params["mean"] * keep + xp.reshape(mean, (-1,)) * new
                updates["var"] = params["var"] * keep + xp.reshape(var, (-1,)) * (new * unbiased)
        else:
            centred = X - xp.reshape(params["mean"], shape)
            var = xp.reshape(params["var"], shape)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        Xhat = centred * inv_std
        Y = Xhat * gamma + xp.reshape(params["beta"], shape)

        def backprop(dY):
            dbeta = xp.sum(dY, axis=axes)
            dgamma = xp.sum(dY * Xhat, axis=axes)
            grads = {"gamma": dgamma, "beta": dbeta}
            if not input_grad:
                return None, grads
            if not train:  # the statistics are constants
                return dY * (gamma * inv_std), grads
            # The batch's mean and variance depend on every sample; chainer's closed form
            # of the chain rule through them.
            mix = Xhat * xp.reshape(dgamma, shape) + xp.reshape(dbeta, shape)
            return (gamma * inv_std) * (dY - mix / m), grads

        return Y, backprop

    def get_config(self):
        return {"n_features": self.n_features, "momentum": self.momentum, "eps": self.eps}
