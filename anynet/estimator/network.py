"""From an estimator's hyper-parameters to the engine's objects: network, loss, optimizer.

scikit-learn's names (``activation='logistic'``, ``solver='adam'``) meet anynet's layers and
optimizers here, once, for the estimator, its files and the command line.
"""

from __future__ import annotations

import itertools
from typing import Any

from anynet import nn

__all__ = [
    "ACTIVATIONS",
    "NETWORKS",
    "OUTPUTS",
    "SCALINGS",
    "SCHEDULES",
    "SGD_SCHEDULES",
    "SOLVERS",
    "build_network",
    "build_optimizer",
    "default_cnn",
    "dense_layers",
    "log_probabilities",
    "validator",
    "weight_layers",
]

#: ``activation=`` names: anynet's hidden-layer activations by their keys, scikit-learn's
#: ``'identity'``, and ``'sigmoid'`` for ``'logistic'``.
ACTIVATIONS: dict[str, type | None] = {
    "identity": None,
    "sigmoid": nn.Sigmoid,
    **nn.ACTIVATIONS,
}
#: ``output=``: (layer after the last Dense, loss, what turns the network's output into
#: log-probabilities for ``predict_proba``).
OUTPUTS = {
    "softmax": (None, "softmax_cross_entropy", "softmax"),
    "log_softmax": (nn.LogSoftmax, "nll", "exp"),
    "sigmoid": (None, "sigmoid_binary_cross_entropy", "sigmoid"),
}
#: ``standardize=``: the data loader's ``normalize``.
SCALINGS = {
    False: None,
    None: None,
    True: "standardize",
    "standardize": "standardize",
    "unit": "unit",
    "symmetric": "symmetric",
}
SOLVERS = ("sgd", "adam", "adamw")


#: ``network=`` names: the multi-layer perceptron of ``hidden_layer_sizes`` (``None``) and
#: the default convolutional network (:func:`default_cnn`).
NETWORKS = (None, "cnn")


def build_network(
    n_in: int,
    hidden: tuple[int, ...],
    n_out: int,
    *,
    activation: str,
    output: str | None,
    dropout: float,
    init: str,
    network: str | nn.Layer | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> tuple[nn.Sequential, str, str]:
    """The network, its loss name and its output link (see :data:`OUTPUTS`).

    ``network`` ``None`` is the MLP of ``hidden`` and ``activation``; ``'cnn'`` is
    :func:`default_cnn` for images of ``image_shape``; an anynet layer is used as given (it
    must map a batch to ``n_out`` logits). The output layer of ``output`` follows each;
    ``output=None`` adds none (a regressor's outputs: then the loss and link are None).
    """
    last, loss, link = OUTPUTS[output] if output is not None else (None, None, None)
    if isinstance(network, nn.Layer):
        layers = list(network.layers) if type(network) is nn.Sequential else [network]
    elif network == "cnn":
        layers = default_cnn(image_shape, n_out, dropout=dropout, init=init)
    else:
        layers = _mlp(n_in, hidden, n_out, activation=activation, dropout=dropout, init=init)
    if last is not None:
        layers.append(last())
    return nn.Sequential(*layers), loss, link


def _mlp(n_in, hidden, n_out, *, activation, dropout, init) -> list[nn.Layer]:
    act = ACTIVATIONS[activation]
    layers: list[nn.Layer] = []
    sizes = (n_in, *hidden)
    for a, b in itertools.pairwise(sizes):
        layers.append(_dense(a, b, init))
        if act is not None:
            layers.append(act())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(_dense(sizes[-1], n_out, init))
    return layers


def _dense(a: int, b: int, init: str) -> nn.Dense:
    if init == "pytorch":  # torch.nn.Linear's default, biases included
        return nn.Dense(a, b, init="pytorch_uniform", bias_init="pytorch_uniform")
    return nn.Dense(a, b, init=init)


def default_cnn(
    image_shape: tuple[int, int, int], n_out: int, *, dropout: float = 0.0, init: str = "he_normal"
) -> list[nn.Layer]:
    """The default convolutional network (``network='cnn'``, ``anynet train --model cnn``).

    Three blocks of a 3x3 convolution (32, 64 and 128 channels, ``'same'`` padding, no bias:
    the batch norm's shift is one), batch norm, ReLU and 2x2 max-pooling, then dropout, a
    hidden Dense layer of 256 ReLU units and the Dense layer to the logits. For 1x28x28 images:
    28 -> 14 -> 7 -> 3, 1,152 features and 390,634 trained parameters (three quarters of them
    in the hidden layer, which costs 4% of the arithmetic: without it the network underfit);
    images must be 8x8 or larger.
    """
    C, H, W = image_shape
    if H < 8 or W < 8:
        raise ValueError(
            f"network='cnn' pools three times by 2 and needs images of 8x8 or more; these are "
            f"{H}x{W}. Pass an anynet network of your own as network= for smaller images."
        )
    conv_init = "pytorch_uniform" if init == "pytorch" else init
    layers: list[nn.Layer] = []
    for c_in, c_out in ((C, 32), (32, 64), (64, 128)):
        layers += [
            nn.Conv2D(c_in, c_out, 3, padding="same", bias=False, init=conv_init),
            nn.BatchNorm(c_out),
            nn.ReLU(),
            nn.MaxPool2D(2),
        ]
    layers.append(nn.Flatten())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [_dense(128 * (H // 8) * (W // 8), 256, init), nn.ReLU(), _dense(256, n_out, init)]
    return layers


def weight_layers(model: nn.Layer) -> int:
    """How many Dense and Conv2D layers ``model`` has, inside its blocks too."""
    if isinstance(model, nn.Dense | nn.Conv2D):
        return 1
    return sum(weight_layers(layer) for layer in getattr(model, "layers", ()))


def dense_layers(model: nn.Sequential) -> list[dict[str, str]]:
    """Per Dense layer of ``model``, in order, its parameters' names: ``{'W': ..., 'b': ...}``
    (``coefs_`` and ``intercepts_`` are these, in this order)."""
    return [
        model.param_names(i) for i, layer in enumerate(model.layers) if isinstance(layer, nn.Dense)
    ]


#: ``learning_rate=`` names: scikit-learn's ``'constant'``, ``'invscaling'`` and ``'adaptive'``,
#: and ``'cosine'``, anynet's: half a cosine from ``learning_rate_init`` down to 0 over the run's
#: ``max_iter`` epochs.
SCHEDULES = ("constant", "invscaling", "adaptive", "cosine")
#: The schedules scikit-learn applies with ``solver='sgd'`` only: Adam keeps a constant rate.
SGD_SCHEDULES = ("invscaling", "adaptive")


def build_optimizer(
    solver: str,
    learning_rate: float,
    *,
    momentum: float,
    nesterov: bool,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    schedule: str = "constant",
    total_steps: int = 1,
    steps_per_epoch: int = 1,
    samples_per_epoch: int = 1,
    power_t: float = 0.5,
) -> Any:
    """The optimizer ``solver`` names, with scikit-learn's hyper-parameters; its rate follows
    ``schedule`` (:data:`SCHEDULES`): ``'cosine'`` over ``total_steps`` steps; with
    ``solver='sgd'``, ``'invscaling'`` as ``learning_rate / (t + 1) ** power_t`` for ``t`` the
    samples seen before the epoch (``samples_per_epoch`` in each of its ``steps_per_epoch``
    steps), and ``'adaptive'`` as a :func:`~anynet.nn.schedules.reducible` constant, for
    :class:`~anynet.training.EarlyStopping` to divide. scikit-learn applies these two to SGD
    alone, and so does anynet: Adam and AdamW keep ``learning_rate``."""
    if schedule == "cosine":
        learning_rate = nn.schedules.cosine_decay(learning_rate, total_steps)
    elif schedule == "invscaling" and solver == "sgd":
        decay = nn.schedules.inverse_scaling(learning_rate, power_t, scale=samples_per_epoch)
        learning_rate = nn.schedules.held(decay, every=steps_per_epoch)
    elif schedule == "adaptive" and solver == "sgd":
        learning_rate = nn.schedules.reducible(learning_rate)
    if solver == "sgd":
        return nn.sgd(learning_rate, momentum=momentum, nesterov=nesterov and momentum > 0)
    make = nn.adam if solver == "adam" else nn.adamw
    return make(learning_rate, beta_1, beta_2, epsilon)


def log_probabilities(out: Any, link: str, xp: Any) -> Any:
    """Class log-probabilities from the network's output, by its ``link``
    (see :data:`OUTPUTS`)."""
    if link == "softmax":
        # log_softmax of the logits stays finite where log(softmax) would be -inf.
        return nn.functional.log_softmax(out, xp=xp)
    if link == "sigmoid":  # per-class sigmoids, normalised over the classes
        # In logs: log sigmoid(z) = -softplus(-z) stays finite where every sigmoid of a row
        # underflows to 0 (0 / 0 gave NaN rows, and predict answered class 0).
        log_sig = -(xp.where(out < 0, -out, 0.0) + xp.log1p(xp.exp(-xp.abs(out))))
        return nn.functional.log_softmax(log_sig, xp=xp)
    return out  # "exp": the network gives log-probabilities itself


def validator(step: nn.Step, loss: str, loader: Any, be: Any, sample_weight: Any = None) -> Any:
    """``validate(params) -> {'val_accuracy', 'val_loss'}`` over a loader, with one read from
    the device; ``step`` computes the outputs (a fused step through its own stages).

    With ``sample_weight`` (the samples' weights on the host, in the compute dtype and the
    loader's order: it must not shuffle) both are weighted averages, as scikit-learn scores
    a weighted validation split."""
    loss_fn = nn.step.get_loss(loss)
    xp = be.xp
    w = None if sample_weight is None else be.asarray(sample_weight)

    def validate(params) -> dict[str, float]:
        correct, total, at = [], [], 0
        for Xb, yb in loader:
            out = step.predict(Xb, params)
            hits = xp.argmax(out, axis=1) == yb
            if w is None:
                value, _ = loss_fn(out, yb, reduction="sum", xp=xp)
                correct.append(xp.sum(xp.astype(hits, xp.int64)))
            else:
                wb, at = w[at : at + int(Xb.shape[0])], at + int(Xb.shape[0])
                value, _ = loss_fn(out, yb, reduction="sum", xp=xp, sample_weight=wb)
                correct.append(xp.sum(xp.astype(hits, wb.dtype) * wb))
            total.append(value)
        host = be.to_numpy(
            xp.stack([xp.astype(xp.stack(correct), total[0].dtype), xp.stack(total)])
        )
        n = loader.n_samples if w is None else float(sample_weight.sum())
        return {"val_accuracy": float(host[0].sum()) / n, "val_loss": float(host[1].sum()) / n}

    return validate
