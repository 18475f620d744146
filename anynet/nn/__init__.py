"""The engine: layers, losses, penalties and optimizers, written once against the Array API.

Nothing in this package imports NumPy, CuPy or PyTorch (a test proves it, and ruff's
banned-import rule guards it): arrays come in from a :class:`~anynet.backends.Backend`, and the
namespace ``xp`` is taken from them or passed down.
"""

from anynet.nn import (
    blocks,
    conv,
    functional,
    init,
    layers,
    losses,
    norm,
    optim,
    penalties,
    schedules,
)
from anynet.nn.blocks import *  # noqa: F403 (Residual, as anynet.nn.blocks lists it)
from anynet.nn.conv import *  # noqa: F403 (Conv2D and the pools, as anynet.nn.conv lists them)
from anynet.nn.layers import *  # noqa: F403 (every layer class, as anynet.nn.layers lists them)
from anynet.nn.losses import (
    half_squared_error,
    mean_squared_error,
    nll_loss,
    poisson_loss,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from anynet.nn.norm import BatchNorm
from anynet.nn.optim import adam, adamw, apply_updates, sgd
from anynet.nn.params import ParamLayout
from anynet.nn.penalties import l1_penalty, l2_penalty
from anynet.nn.step import GenericStep, Step, loss_and_grads, train_step, trainable

__all__ = [
    *layers.__all__,
    *blocks.__all__,
    *conv.__all__,
    "BatchNorm",
    "GenericStep",
    "ParamLayout",
    "Step",
    "adam",
    "adamw",
    "apply_updates",
    "functional",
    "half_squared_error",
    "init",
    "l1_penalty",
    "l2_penalty",
    "loss_and_grads",
    "losses",
    "mean_squared_error",
    "nll_loss",
    "optim",
    "norm",
    "penalties",
    "poisson_loss",
    "schedules",
    "sgd",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "train_step",
    "trainable",
]
