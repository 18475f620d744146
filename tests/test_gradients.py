"""Every hand-written backward pass against float64 central differences, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from anynet import nn
from anynet.nn import functional as F
from anynet.testing import check_gradients

rng = np.random.default_rng(1234)


def away_from_zero(a: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Move entries off the kink of ReLU-like functions, where the derivative jumps."""
    return np.where(np.abs(a) < margin, np.sign(a + 1e-12) * margin, a)


def layer_objective(layer, backend, R, *, train=False, seed=None):
    """``sum(layer(X) * R)``: its gradient w.r.t. the output is ``R``, so backprop(R) must give
    the gradients of this scalar."""

    def f(X, **params):
        gen = backend.generator(seed) if seed is not None else None  # same mask every call
        Y, backprop = layer.forward(params, X, train=train, rng=gen)
        Rd = backend.asarray(R, dtype="float64")
        dX, grads = backprop(Rd)
        return backend.xp.sum(Y * Rd), {"X": dX, **grads}

    return f


LAYERS = [
    pytest.param(nn.Dense(5, 4), (6, 5), id="dense"),
    pytest.param(nn.Dense(5, 4, bias=False), (6, 5), id="dense-nobias"),
    # Every hidden-layer activation anynet has, as it registers them: a new one is checked here
    # without this list changing.
    *(pytest.param(cls(), (6, 5), id=key) for key, cls in sorted(nn.ACTIVATIONS.items())),
    pytest.param(nn.LeakyReLU(0.1), (6, 5), id="leaky_relu-0.1"),
    pytest.param(nn.Softmax(), (6, 5), id="softmax"),
    pytest.param(nn.LogSoftmax(), (6, 5), id="log_softmax"),
    pytest.param(nn.Flatten(), (3, 2, 4), id="flatten"),
]


@pytest.mark.parametrize(("layer", "shape"), LAYERS)
def test_layer_gradients(backend, layer, shape):
    X = away_from_zero(rng.normal(size=shape))
    params_be = layer.init_params(rng=np.random.default_rng(0), backend=backend, dtype="float64")
    params = {k: backend.to_numpy(v) + rng.normal(size=v.shape) * 0.1 for k, v in params_be.items()}
    Y, _ = layer.forward(params_be, backend.asarray(X, dtype="float64"))
    R = rng.normal(size=tuple(Y.shape))
    check_gradients(layer_objective(layer, backend, R), {"X": X, **params}, backend)


def test_dropout_gradient_with_a_fixed_mask(backend):
    layer = nn.Dropout(0.3)
    X = rng.normal(size=(8, 6))
    R = rng.normal(size=(8, 6))
    f = layer_objective(layer, backend, R, train=True, seed=7)
    check_gradients(f, {"X": X}, backend)


LOSSES = [
    pytest.param(nn.softmax_cross_entropy, "labels", id="softmax_cross_entropy"),
    pytest.param(nn.softmax_cross_entropy, "probabilities", id="softmax_ce-soft-targets"),
    pytest.param(nn.nll_loss, "labels", id="nll"),
    pytest.param(nn.sigmoid_binary_cross_entropy, "labels", id="sigmoid_bce"),
    pytest.param(nn.sigmoid_binary_cross_entropy, "probabilities", id="sigmoid_bce-soft"),
    pytest.param(nn.mean_squared_error, "probabilities", id="mse"),
    pytest.param(nn.half_squared_error, "probabilities", id="half_squared_error"),
    pytest.param(nn.poisson_loss, "probabilities", id="poisson"),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("loss", "target_kind"), LOSSES)
def test_loss_gradients(backend, loss, target_kind, reduction, weighted):
    pred = rng.normal(size=(7, 4)) * 3
    if loss is nn.poisson_loss:  # log-rates: exp(+-9) would drown the finite differences
        pred = pred / 3
    if target_kind == "labels":
        targets = backend.asarray(rng.integers(0, 4, size=7), dtype="int64")
    else:
        targets = backend.asarray(rng.dirichlet(np.ones(4), size=7), dtype="float64")
    how = {"reduction": reduction}
    if weighted:  # one sample left out, one counted 2.5 times
        w = np.array([1.0, 0.0, 2.5, 1.0, 0.5, 1.0, 3.0])
        how["sample_weight"] = backend.asarray(w, dtype="float64")

    def f(pred):
        value, dpred = loss(pred, targets, **how)
        return value, {"pred": dpred}

    check_gradients(f, {"pred": pred}, backend)


@pytest.mark.parametrize("penalty", [nn.l1_penalty, nn.l2_penalty], ids=["l1", "l2"])
def test_penalty_gradients(backend, penalty):
    W1 = away_from_zero(rng.normal(size=(4, 3)))
    W2 = away_from_zero(rng.normal(size=(3,)))

    def f(W1, W2):
        return penalty({"W1": W1, "W2": W2}, 0.7)

    check_gradients(f, {"W1": W1, "W2": W2}, backend)


@pytest.mark.parametrize(
    ("loss", "last"),
    [
        ("softmax_cross_entropy", []),
        ("nll", [nn.LogSoftmax()]),
        ("sigmoid_binary_cross_entropy", []),
    ],
)
def test_whole_model_gradient_with_penalties(backend, loss, last):
    model = nn.Sequential(
        nn.Dense(6, 5), nn.Tanh(), nn.Dense(5, 4), nn.LeakyReLU(0.2), nn.Dense(4, 3), *last
    )
    params = model.init_params(rng=np.random.default_rng(3), backend=backend, dtype="float64")
    host = {k: away_from_zero(backend.to_numpy(v) + 0.1) for k, v in params.items()}
    X = backend.asarray(rng.normal(size=(9, 6)), dtype="float64")
    y = backend.asarray(rng.integers(0, 3, size=9), dtype="int64")

    def f(**p):
        return nn.loss_and_grads(model, p, X, y, loss=loss, l1=0.01, l2=0.05)

    check_gradients(f, host, backend)


def test_sequential_input_gradient(backend):
    """With ``input_grad=True`` the model's backprop also returns ``dX``, and it is right."""
    model = nn.Sequential(nn.Flatten(), nn.Dense(6, 4), nn.Sigmoid(), nn.Dense(4, 2))
    params = model.init_params(rng=np.random.default_rng(5), backend=backend, dtype="float64")
    R = rng.normal(size=(3, 2))

    def f(X):
        Y, backprop = model.forward(params, X)
        Rd = backend.asarray(R, dtype="float64")
        dX, _ = backprop(Rd)
        return backend.xp.sum(Y * Rd), {"X": dX}

    check_gradients(f, {"X": rng.normal(size=(3, 2, 3))}, backend)


def test_first_layer_skips_the_input_gradient(backend):
    """Training never wants dL/dX of the data: backprop returns None and skips that matmul."""
    model = nn.Sequential(nn.Dense(3, 2), nn.ReLU())
    params = model.init_params(rng=np.random.default_rng(0), backend=backend)
    Y, backprop = model.forward(
        params, backend.asarray(np.ones((2, 3)), dtype="float32"), input_grad=False
    )
    dX, grads = backprop(Y)
    assert dX is None
    assert sorted(grads) == ["0.W", "0.b"]


def test_functional_backward_twins_match_their_forward(backend):
    """Each ``f_backward(dy, f(x))`` is the derivative of ``f``: checked through the layer tests
    above; here the one-hot helper, which the losses lean on, is checked directly."""
    labels = backend.asarray(np.array([2, 0, 1]), dtype="int64")
    got = backend.to_numpy(F.one_hot(labels, 3, dtype=backend.dtype("float32")))
    np.testing.assert_array_equal(got, np.eye(3, dtype=np.float32)[[2, 0, 1]])


def test_only_anynets_public_layers_can_be_built_from_a_name():
    class Mine(nn.Layer):
        pass

    assert "Dense" in nn.LAYERS and "Sequential" in nn.LAYERS
    for name in ("Mine", "_Activation", "Layer", "os.system", None):
        with pytest.raises(ValueError, match="unknown layer type"):
            nn.layer_from_config(name, {})
    assert nn.layer_from_config("Dense", {"n_in": 2, "n_out": 3}) == nn.Dense(2, 3)


def test_silu_is_x_times_sigmoid_and_needs_its_input():
    x = np.array([-30.0, -1.0, 0.0, 1.0, 30.0])
    np.testing.assert_allclose(nn.functional.silu(x), x / (1 + np.exp(-x)), rtol=1e-15)
    # Not monotonic: two inputs share an output with different slopes, so the derivative is
    # written from the input, and the layer keeps it.
    assert nn.SiLU.derivative_from == "input"
    s = 1 / (1 + np.exp(-x))
    want = s * (1 + x * (1 - s))
    np.testing.assert_allclose(nn.functional.silu_backward(np.ones(5), x), want, rtol=1e-15)
