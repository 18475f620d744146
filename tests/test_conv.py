"""Conv2D and the pools: values and gradients against PyTorch, finite differences on every
backend, the max-pool tie rule, shapes, refusals, training, step selection and model files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.fast import stages
from anynet.nn.layers import layer_from_config
from anynet.testing import check_gradients
from anynet.training import select_step

rng = np.random.default_rng(2024)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def distinct(shape, scale=1.0):
    """Values at least ``scale / size`` apart, shuffled: no ties, so max-pool is smooth."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) - size / 2) * (scale / size)


def on(backend, host):
    return backend.asarray(np.asarray(host, dtype=np.float64), dtype="float64")


def run(layer, backend, params, X, R):
    """``layer``'s output and its gradients for upstream gradient ``R``, all on the host."""
    Y, backprop = layer.forward({k: on(backend, v) for k, v in params.items()}, on(backend, X))
    dX, grads = backprop(on(backend, R))
    return (
        backend.to_numpy(Y),
        backend.to_numpy(dX),
        {k: backend.to_numpy(g) for k, g in grads.items()},
    )


def conv_params(layer):
    return {k: rng.normal(size=shape) for k, shape in layer.param_shapes().items()}


CONVS = [
    pytest.param(nn.Conv2D(2, 3, 3), (2, 2, 7, 6), id="3x3"),
    pytest.param(nn.Conv2D(2, 3, 3, padding="same"), (2, 2, 7, 6), id="3x3-same"),
    pytest.param(nn.Conv2D(2, 3, 4, padding="same"), (2, 2, 7, 6), id="4x4-same-even"),
    pytest.param(nn.Conv2D(2, 3, (2, 3), padding="same"), (2, 2, 5, 6), id="2x3-same"),
    pytest.param(nn.Conv2D(2, 3, 3, stride=2), (2, 2, 8, 7), id="3x3-stride2"),
    pytest.param(nn.Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7), id="3x3-stride2-pad1"),
    pytest.param(nn.Conv2D(1, 2, (3, 2), stride=(1, 2), padding=(2, 0)), (3, 1, 5, 7), id="rect"),
    pytest.param(nn.Conv2D(3, 2, 1, bias=False), (2, 3, 4, 4), id="1x1-nobias"),
]


def torch_conv(torch, layer):
    """The same convolution in PyTorch: its padding argument, from ours."""
    pad = layer.padding if isinstance(layer.padding, str) else tuple(layer.padding)

    def f(X, W, b=None):
        return torch.nn.functional.conv2d(X, W, b, stride=layer.stride, padding=pad)

    return f


# PyTorch warns that it copies the input for an even kernel with padding='same'.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize(("layer", "shape"), CONVS)
def test_conv_matches_torch_values_and_autograd(backend, torch, layer, shape):
    X, params = rng.normal(size=shape), conv_params(layer)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in {"X": X, **params}.items()}
    want = torch_conv(torch, layer)(t["X"], t["W"], t.get("b"))
    R = rng.normal(size=tuple(want.shape))
    (want * torch.tensor(R)).sum().backward()
    Y, dX, grads = run(layer, backend, params, X, R)
    np.testing.assert_allclose(Y, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dX, t["X"].grad.numpy(), rtol=1e-10, atol=1e-12)
    assert set(grads) == set(params)
    for k in params:
        np.testing.assert_allclose(grads[k], t[k].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


POOLS = [
    pytest.param(nn.MaxPool2D(2), "max", (2, 3, 6, 5), id="max-2"),
    pytest.param(nn.MaxPool2D(3, stride=2), "max", (2, 2, 7, 7), id="max-3-stride2-overlap"),
    pytest.param(nn.MaxPool2D((2, 3), stride=1), "max", (1, 2, 4, 5), id="max-2x3-stride1"),
    pytest.param(nn.AvgPool2D(2), "avg", (2, 3, 6, 5), id="avg-2"),
    pytest.param(nn.AvgPool2D(3, stride=2), "avg", (2, 2, 7, 7), id="avg-3-stride2-overlap"),
    pytest.param(nn.AvgPool2D((3, 2), stride=(1, 2)), "avg", (1, 2, 5, 6), id="avg-3x2"),
    pytest.param(nn.GlobalAvgPool2D(), "global", (3, 4, 5, 6), id="global"),
]


def torch_pool(torch, layer, kind):
    F = torch.nn.functional
    if kind == "global":
        return lambda X: F.adaptive_avg_pool2d(X, 1).flatten(1)
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    return lambda X: pool(X, layer.kernel_size, layer.stride)


@pytest.mark.parametrize(("layer", "kind", "shape"), POOLS)
def test_pools_match_torch_values_and_autograd(backend, torch, layer, kind, shape):
    X = distinct(shape)
    tX = torch.tensor(X, requires_grad=True)
    want = torch_pool(torch, layer, kind)(tX)
    R = rng.normal(size=tuple(want.shape))
    (want * torch.tensor(R)).sum().backward()
    Y, dX, grads = run(layer, backend, {}, X, R)
    np.testing.assert_allclose(Y, want.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dX, tX.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert grads == {}


def objective(layer, backend, R):
    """``sum(layer(X) * R)`` and its gradients from backprop(R)."""

    def f(X, **params):
        Y, backprop = layer.forward(params, X)
        Rd = on(backend, R)
        dX, grads = backprop(Rd)
        return backend.xp.sum(Y * Rd), {"X": dX, **grads}

    return f


GRADIENT_CASES = [
    pytest.param(nn.Conv2D(2, 3, 3), (2, 2, 5, 4), id="conv"),
    pytest.param(nn.Conv2D(2, 2, 2, padding="same", bias=False), (1, 2, 4, 5), id="conv-same-even"),
    pytest.param(nn.Conv2D(1, 2, 3, stride=2, padding=1), (2, 1, 6, 5), id="conv-stride2-pad1"),
    pytest.param(nn.MaxPool2D(2), (2, 2, 4, 5), id="maxpool"),
    pytest.param(nn.MaxPool2D(3, stride=2), (1, 2, 5, 5), id="maxpool-overlap"),
    pytest.param(nn.AvgPool2D(2, stride=1), (2, 2, 3, 4), id="avgpool-overlap"),
    pytest.param(nn.GlobalAvgPool2D(), (2, 3, 3, 2), id="global-avgpool"),
]


@pytest.mark.parametrize(("layer", "shape"), GRADIENT_CASES)
def test_gradients_against_finite_differences(backend, layer, shape):
    X = distinct(shape, scale=4.0)  # ties or near-ties would put max-pool on a kink
    params = conv_params(layer)
    Y, _ = layer.forward({k: on(backend, v) for k, v in params.items()}, on(backend, X))
    R = rng.normal(size=tuple(Y.shape))
    check_gradients(objective(layer, backend, R), {"X": X, **params}, backend)


def test_conv_first_layer_skips_the_input_gradient(backend):
    layer = nn.Conv2D(1, 2, 3)
    params = layer.init_params(rng=np.random.default_rng(0), backend=backend, dtype="float64")
    Y, backprop = layer.forward(
        params, on(backend, rng.normal(size=(2, 1, 5, 5))), input_grad=False
    )
    dX, grads = backprop(backend.xp.ones_like(Y))
    assert dX is None and set(grads) == {"W", "b"}


def test_max_pool_ties_send_the_gradient_to_the_first_maximum(backend):
    # Window 1 (top left): all equal -> offset (0, 0). Window 2: maxima at (0, 1) and (1, 0)
    # -> (0, 1), the first in row-major order. Windows 3 and 4: one maximum each.
    X = np.array([[[[5.0, 5.0, 1.0, 7.0], [5.0, 5.0, 7.0, 2.0], [0, 1, 2, 3], [4, 9, 6, 5]]]])
    Y, dX, _ = run(nn.MaxPool2D(2), backend, {}, X, np.full((1, 1, 2, 2), 10.0))
    np.testing.assert_array_equal(Y[0, 0], [[5.0, 7.0], [9.0, 6.0]])
    want = np.zeros((4, 4))
    want[0, 0] = want[0, 3] = want[3, 1] = want[3, 2] = 10.0
    np.testing.assert_array_equal(dX[0, 0], want)
    # Overlapping windows: each window routes to its own first maximum, and they add up.
    Y, dX, _ = run(
        nn.MaxPool2D(2, stride=1), backend, {}, np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    )
    np.testing.assert_array_equal(dX[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_max_pool_ties_agree_with_torch_cpu(torch):
    X = np.round(rng.normal(size=(2, 3, 6, 6)))  # many ties
    tX = torch.tensor(X, requires_grad=True)
    torch.nn.functional.max_pool2d(tX, 2).sum().backward()
    _, dX, _ = run(nn.MaxPool2D(2), anynet.get_backend("numpy"), {}, X, np.ones((2, 3, 3, 3)))
    np.testing.assert_array_equal(dX, tX.grad.numpy())


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, (2, 5)])
def test_same_padding_keeps_height_and_width(backend, kernel):
    layer = nn.Conv2D(2, 3, kernel, padding="same")
    params = layer.init_params(rng=np.random.default_rng(0), backend=backend)
    X = backend.asarray(rng.normal(size=(2, 2, 7, 6)), dtype="float32")
    assert tuple(layer.forward(params, X)[0].shape) == (2, 3, 7, 6)


@pytest.mark.parametrize(
    ("layer", "shape", "out"),
    [
        (nn.Conv2D(1, 4, 3, stride=2), (2, 1, 28, 28), (2, 4, 13, 13)),
        (nn.Conv2D(1, 4, 3, stride=2, padding=1), (2, 1, 28, 28), (2, 4, 14, 14)),
        (nn.Conv2D(1, 4, 3, padding="valid"), (2, 1, 28, 28), (2, 4, 26, 26)),
        (nn.MaxPool2D(2), (2, 3, 7, 7), (2, 3, 3, 3)),  # the last row and column dropped
        (nn.AvgPool2D(3, stride=2), (2, 3, 8, 8), (2, 3, 3, 3)),
        (nn.GlobalAvgPool2D(), (2, 3, 8, 5), (2, 3)),
    ],
)
def test_output_shapes(backend, layer, shape, out):
    params = layer.init_params(rng=np.random.default_rng(0), backend=backend)
    Y, backprop = layer.forward(params, backend.asarray(rng.normal(size=shape), dtype="float32"))
    assert tuple(Y.shape) == out
    assert tuple(backprop(Y)[0].shape) == shape


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nn.Conv2D(0, 3, 3), "c_in must be an integer >= 1; got 0"),
        (lambda: nn.Conv2D(1, 3, 0), "kernel_size must be an integer >= 1"),
        (lambda: nn.Conv2D(1, 3, (3, 3, 3)), "kernel_size must be an integer >= 1 or a pair"),
        (lambda: nn.Conv2D(1, 3, 3, stride=True), "stride must be an integer >= 1; got True"),
        (lambda: nn.Conv2D(1, 3, 3, padding=-1), "padding must be an integer >= 0"),
        (lambda: nn.Conv2D(1, 3, 3, padding="full"), "padding must be .*'same' or 'valid'"),
        (lambda: nn.Conv2D(1, 3, 3, stride=2, padding="same"), "padding='same' needs stride=1"),
        (lambda: nn.Conv2D(1, 3, 3, init="nope"), "init='nope' is not an initializer"),
        (lambda: nn.MaxPool2D(2.5), "kernel_size must be an integer"),
        (lambda: nn.AvgPool2D(2, stride=0), "stride must be an integer >= 1; got 0"),
    ],
)
def test_bad_arguments_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("layer", "shape", "match"),
    [
        (
            nn.Conv2D(1, 4, 3),
            (8, 784),
            r"Conv2D\(c_in=1.*expects images of shape \(batch, 1, height",
        ),
        (
            nn.Conv2D(3, 4, 3),
            (2, 1, 8, 8),
            r"Conv2D\(c_in=3.*\(batch, 3, height, width\); got \(2, 1, 8, 8\)",
        ),
        (
            nn.Conv2D(1, 4, 5),
            (2, 1, 4, 8),
            r"input's 4x8 \(padding included\) is smaller than the 5x5",
        ),
        (
            nn.MaxPool2D(2),
            (2, 8, 8),
            r"MaxPool2D.*\(batch, channels, height, width\); got \(2, 8, 8\)",
        ),
        (
            nn.AvgPool2D(3),
            (1, 1, 2, 9),
            r"AvgPool2D.*2x9 \(padding included\) is smaller than the 3x3",
        ),
        (nn.GlobalAvgPool2D(), (4, 10), r"GlobalAvgPool2D\(\) expects images"),
    ],
)
def test_bad_inputs_are_refused_naming_the_layer(backend, layer, shape, match):
    params = layer.init_params(rng=np.random.default_rng(0), backend=backend)
    with pytest.raises(ValueError, match=match):
        layer.forward(params, backend.asarray(np.zeros(shape), dtype="float32"))


def small_cnn():
    return nn.Sequential(
        nn.Conv2D(1, 4, 3, padding="same", init="he_uniform"),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Conv2D(4, 8, 3, init="he_uniform"),
        nn.ReLU(),
        nn.GlobalAvgPool2D(),
        nn.Dense(8, 3),
    )


def test_a_small_cnn_trains(backend):
    model = small_cnn()
    params = model.init_params(rng=np.random.default_rng(0), backend=backend)
    shapes = {"0.W": (4, 1, 3, 3), "0.b": (4,), "3.W": (8, 4, 3, 3), "3.b": (8,), "6.W": (8, 3)}
    assert {k: tuple(v.shape) for k, v in params.items()} == {**shapes, "6.b": (3,)}
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


def test_select_step_fuses_conv_models_and_falls_back_for_what_it_cannot():
    be = anynet.get_backend("numpy")
    model = small_cnn()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    assert stages.plan(model, "softmax_cross_entropy") is not None
    assert select_step(model, nn.adam(0.01), params, backend=be).name.startswith("fused")
    # A Dense first, then a layer that takes images: no plan, no crash.
    assert stages.plan(nn.Sequential(nn.Dense(4, 4), nn.GlobalAvgPool2D()), "nll") is None
    assert (
        stages.plan(nn.Sequential(nn.Dense(4, 4), nn.MaxPool2D(2)), "softmax_cross_entropy") is None
    )


def test_configs_are_json_and_rebuild_the_same_layers():
    model = nn.Sequential(
        nn.Conv2D(1, 2, (3, 5), stride=(1, 2), padding=(1, 2), bias=False, init="he_normal"),
        nn.Conv2D(2, 2, 4, padding="same"),
        nn.Conv2D(2, 2, 3, padding="valid"),
        nn.MaxPool2D(3, stride=2),
        nn.AvgPool2D((2, 1)),
        nn.GlobalAvgPool2D(),
    )
    config = json.loads(json.dumps(model.get_config()))
    assert config["layers"][0] == [
        "Conv2D",
        {"c_in": 1, "c_out": 2, "kernel_size": [3, 5], "stride": [1, 2], "padding": [1, 2],
         "bias": False, "init": "he_normal", "bias_init": "zeros"},
    ]  # fmt: skip
    assert config["layers"][3] == ["MaxPool2D", {"kernel_size": 3, "stride": 2}]
    assert layer_from_config("Sequential", config) == model
    assert nn.MaxPool2D(2) == nn.MaxPool2D(2, stride=2) != nn.AvgPool2D(2)


def test_a_conv_network_saves_and_loads(tmp_path):
    be = anynet.get_backend("numpy")
    model = small_cnn()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    path = anynet.io.save_network(tmp_path / "cnn", model, params)
    loaded, loaded_params, _ = anynet.io.load_network(path, backend=be)
    assert loaded == model
    X = be.asarray(rng.normal(size=(3, 1, 8, 8)), dtype="float32")
    np.testing.assert_array_equal(
        be.to_numpy(loaded(loaded_params, X)), be.to_numpy(model(params, X))
    )


def test_weights_port_from_torch_conv2d_unchanged(torch):
    theirs = torch.nn.Conv2d(3, 5, 3, padding="same", dtype=torch.float64)
    ours = nn.Conv2D(3, 5, 3, padding="same")
    be = anynet.get_backend("numpy")
    params = {"W": theirs.weight.detach().numpy(), "b": theirs.bias.detach().numpy()}
    assert {k: v.shape for k, v in params.items()} == ours.param_shapes()
    X = rng.normal(size=(2, 3, 6, 6))
    Y, _ = ours.forward(
        {k: be.asarray(v, dtype="float64") for k, v in params.items()},
        be.asarray(X, dtype="float64"),
    )
    np.testing.assert_allclose(
        be.to_numpy(Y), theirs(torch.tensor(X)).detach().numpy(), rtol=1e-10, atol=1e-12
    )
