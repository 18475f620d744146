"""Residual: finite differences on every backend, values and gradients against PyTorch, the
first-layer case, a small ResNet that trains, parameter names, configs, model files and the
shape check."""

from __future__ import annotations

import json

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.nn.layers import layer_from_config
from anynet.testing import check_gradients

rng = np.random.default_rng(1234)


def on(backend, host):
    return backend.asarray(np.asarray(host, dtype=np.float64), dtype="float64")


def random_params(layer):
    return {k: rng.normal(scale=0.5, size=shape) for k, shape in layer.param_shapes().items()}


def conv_block():
    return nn.Residual(
        nn.Conv2D(4, 4, 3, padding="same"), nn.ReLU(), nn.Conv2D(4, 4, 3, padding="same")
    )


def objective(layer, backend, R):
    """``sum(layer(X) * R)`` and its gradients from backprop(R)."""

    def f(X, **params):
        Y, backprop = layer.forward(params, X)
        Rd = on(backend, R)
        dX, grads = backprop(Rd)
        return backend.xp.sum(Y * Rd), {"X": dX, **grads}

    return f


GRADIENT_CASES = [
    # Tanh, not ReLU: finite differences must not straddle a kink.
    pytest.param(
        nn.Residual(nn.Conv2D(2, 2, 3, padding="same"), nn.Tanh(), nn.Conv2D(2, 2, 1)),
        (2, 2, 4, 3),
        id="conv-tanh-conv",
    ),
    pytest.param(nn.Residual(nn.Dense(3, 3), nn.Tanh()), (4, 3), id="dense"),
    pytest.param(nn.Residual(nn.Tanh()), (2, 5), id="no-params"),
    pytest.param(
        nn.Residual(nn.Residual(nn.Dense(3, 3)), nn.Sigmoid(), nn.Dense(3, 3, bias=False)),
        (2, 3),
        id="nested",
    ),
]


@pytest.mark.parametrize(("layer", "shape"), GRADIENT_CASES)
def test_gradients_against_finite_differences(backend, layer, shape):
    X, params = rng.normal(size=shape), random_params(layer)
    Y, _ = layer.forward({k: on(backend, v) for k, v in params.items()}, on(backend, X))
    assert tuple(Y.shape) == shape
    R = rng.normal(size=shape)
    check_gradients(objective(layer, backend, R), {"X": X, **params}, backend)


def test_gradients_inside_a_sequential(backend):
    model = nn.Sequential(
        nn.Conv2D(1, 3, 3, padding="same"),
        nn.Tanh(),
        nn.Residual(nn.Conv2D(3, 3, 3, padding="same"), nn.Tanh()),
        nn.GlobalAvgPool2D(),
        nn.Dense(3, 2),
    )
    X, params = rng.normal(size=(2, 1, 4, 4)), random_params(model)
    assert {"2.0.W", "2.0.b"} <= set(params)
    R = rng.normal(size=(2, 2))
    check_gradients(objective(model, backend, R), {"X": X, **params}, backend)


def test_matches_torch_values_and_autograd(backend):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = conv_block()
    X, params = rng.normal(size=(2, 4, 5, 6)), random_params(layer)
    assert set(params) == {"0.W", "0.b", "2.W", "2.b"}
    t = {k: torch.tensor(v, requires_grad=True) for k, v in {"X": X, **params}.items()}
    hidden = F.relu(F.conv2d(t["X"], t["0.W"], t["0.b"], padding="same"))
    want = t["X"] + F.conv2d(hidden, t["2.W"], t["2.b"], padding="same")
    R = rng.normal(size=tuple(want.shape))
    (want * torch.tensor(R)).sum().backward()

    Y, backprop = layer.forward({k: on(backend, v) for k, v in params.items()}, on(backend, X))
    dX, grads = backprop(on(backend, R))
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(backend.to_numpy(Y), want.detach().numpy(), **tol)
    np.testing.assert_allclose(backend.to_numpy(dX), t["X"].grad.numpy(), **tol)
    assert set(grads) == set(params)
    for k in params:
        np.testing.assert_allclose(backend.to_numpy(grads[k]), t[k].grad.numpy(), **tol, err_msg=k)


def test_without_an_input_gradient_the_parameter_gradients_are_unchanged(backend):
    layer = conv_block()
    params = {k: on(backend, v) for k, v in random_params(layer).items()}
    X = on(backend, rng.normal(size=(2, 4, 4, 4)))
    R = on(backend, rng.normal(size=(2, 4, 4, 4)))
    Y, backprop = layer.forward(params, X)
    _, want = backprop(R)
    Y2, backprop2 = layer.forward(params, X, input_grad=False)
    dX, grads = backprop2(R)
    assert dX is None and set(grads) == set(want)
    np.testing.assert_array_equal(backend.to_numpy(Y2), backend.to_numpy(Y))
    for k in want:
        np.testing.assert_allclose(
            backend.to_numpy(grads[k]), backend.to_numpy(want[k]), rtol=1e-12, err_msg=k
        )


def small_resnet():
    return nn.Sequential(
        nn.Conv2D(1, 4, 3, padding="same", init="he_uniform"),
        nn.ReLU(),
        nn.Residual(
            nn.Conv2D(4, 4, 3, padding="same", init="he_uniform"),
            nn.ReLU(),
            nn.Conv2D(4, 4, 3, padding="same", init="he_uniform"),
        ),
        nn.ReLU(),
        nn.GlobalAvgPool2D(),
        nn.Dense(4, 3),
    )


def test_parameter_names_nest_as_a_sequential_nests_them():
    shapes = small_resnet().param_shapes()
    assert shapes == {
        "0.W": (4, 1, 3, 3), "0.b": (4,),
        "2.0.W": (4, 4, 3, 3), "2.0.b": (4,), "2.2.W": (4, 4, 3, 3), "2.2.b": (4,),
        "5.W": (4, 3), "5.b": (3,),
    }  # fmt: skip
    inner = nn.Sequential(*small_resnet()[2].layers)
    nested = nn.Sequential(nn.Conv2D(1, 4, 3), nn.ReLU(), inner).param_shapes()
    assert [k for k in nested if k.startswith("2.")] == [k for k in shapes if k.startswith("2.")]


def test_a_small_resnet_trains(backend):
    model = small_resnet()
    params = model.init_params(rng=np.random.default_rng(0), backend=backend)
    # Three classes a convolution tells apart: a bright top half, left half or centre.
    y_host = rng.integers(0, 3, size=24)
    X_host = rng.normal(scale=0.1, size=(24, 1, 8, 8))
    regions = [np.s_[:4, :], np.s_[:, :4], np.s_[2:6, 2:6]]
    for n, label in enumerate(y_host):
        X_host[n, 0][regions[label]] += 1.0
    X = backend.asarray(X_host, dtype="float32")
    y = backend.asarray(y_host, dtype="int64")
    step = nn.GenericStep(model, nn.adam(0.02), params)
    losses = [float(backend.to_numpy(step(X, y))) for _ in range(30)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses


def test_config_is_json_and_rebuilds_the_same_layer():
    model = small_resnet()
    config = json.loads(json.dumps(model.get_config()))
    assert config["layers"][2][0] == "Residual"
    assert [name for name, _ in config["layers"][2][1]["layers"]] == ["Conv2D", "ReLU", "Conv2D"]
    rebuilt = layer_from_config("Sequential", config)
    assert rebuilt == model and rebuilt.param_shapes() == model.param_shapes()
    block = model[2]
    assert layer_from_config("Residual", json.loads(json.dumps(block.get_config()))) == block
    assert nn.Residual.from_config(block.get_config()) == block
    # Equality is layer by layer: another block, or the bare Sequential, is not the same.
    assert block != nn.Residual(nn.Conv2D(4, 4, 3, padding="same"))
    assert block != block.block and hash(block) == hash(nn.Residual(*block.layers))


def test_a_residual_network_saves_and_loads(tmp_path):
    be = anynet.get_backend("numpy")
    model = small_resnet()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    path = anynet.io.save_network(tmp_path / "resnet", model, params)
    loaded, loaded_params, _ = anynet.io.load_network(path, backend=be)
    assert loaded == model
    X = be.asarray(rng.normal(size=(3, 1, 8, 8)), dtype="float32")
    np.testing.assert_array_equal(
        be.to_numpy(loaded(loaded_params, X)), be.to_numpy(model(params, X))
    )


@pytest.mark.parametrize(
    ("layer", "shape", "match"),
    [
        (
            nn.Residual(nn.Conv2D(4, 8, 3, padding="same")),
            (2, 4, 5, 5),
            r"Residual\(Conv2D\(c_in=4, c_out=8.*\): its block maps input of shape "
            r"\(2, 4, 5, 5\) to \(2, 8, 5, 5\); a residual block must keep the shape",
        ),
        (
            nn.Residual(nn.Conv2D(4, 4, 3), nn.ReLU()),
            (2, 4, 5, 5),
            r"Residual\(Conv2D.*, ReLU\(\)\): its block maps .* to \(2, 4, 3, 3\)",
        ),
        (nn.Residual(nn.Dense(3, 2)), (4, 3), r"Residual\(Dense.*\(4, 3\) to \(4, 2\)"),
    ],
)
def test_a_block_that_changes_the_shape_is_refused_naming_the_layer(backend, layer, shape, match):
    params = layer.init_params(rng=np.random.default_rng(0), backend=backend)
    with pytest.raises(ValueError, match=match):
        layer.forward(params, backend.asarray(np.zeros(shape), dtype="float32"))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: nn.Residual(), ValueError, "at least one layer"),
        (lambda: nn.Residual(nn.ReLU(), 3), TypeError, "Residual item 1 is not an anynet layer"),
        (
            lambda: nn.Residual(nn.ReLU(), layers=[["ReLU", {}]]),
            TypeError,
            "positionally or as layers=, not both",
        ),
        (lambda: nn.Residual(layers=[["Nope", {}]]), ValueError, "unknown layer type 'Nope'"),
        (lambda: nn.Residual(layers=[3]), TypeError, "neither a layer nor \\[name, config\\]"),
    ],
)
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()
