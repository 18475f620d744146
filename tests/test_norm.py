"""BatchNorm: gradients against finite differences on every backend and against PyTorch, its
running statistics as PyTorch keeps them, and statistics as parameters that are never trained:
no gradient, no optimizer update, kept by model files and by an exact resume."""

from __future__ import annotations

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.errors import ArgumentError
from anynet.testing import check_gradients

rng = np.random.default_rng(7)


def on(backend, host):
    return backend.asarray(np.asarray(host, dtype=np.float64), dtype="float64")


def bn_params(layer, prefix=""):
    C = layer.n_features
    return {
        f"{prefix}gamma": rng.normal(1.0, 0.3, size=C),
        f"{prefix}beta": rng.normal(size=C),
        f"{prefix}mean": rng.normal(size=C),
        f"{prefix}var": rng.uniform(0.5, 2.0, size=C),
    }


def objective(layer, backend, R, *, train):
    """``sum(layer(X) * R)`` and the gradients backprop gives for it."""

    def f(X, **params):
        Y, backprop = layer.forward(params, X, train=train)
        Rd = on(backend, R)
        dX, grads = backprop(Rd)
        return backend.xp.sum(Y * Rd), {"X": dX, **grads}

    return f


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4, 3)], ids=["dense", "images"])
def test_gradients_against_finite_differences(backend, shape, train):
    layer = nn.BatchNorm(shape[1])
    X, R = rng.normal(size=shape), rng.normal(size=shape)
    check_gradients(
        objective(layer, backend, R, train=train), {"X": X, **bn_params(layer)}, backend
    )


def test_gradients_inside_a_conv_network(backend):
    model = nn.Sequential(
        nn.Conv2D(1, 3, 3, padding="same"),
        nn.BatchNorm(3),
        nn.Tanh(),
        nn.GlobalAvgPool2D(),
        nn.Dense(3, 4),
        nn.BatchNorm(4),
        nn.Dense(4, 2),
    )
    params = {k: rng.normal(scale=0.5, size=s) for k, s in model.param_shapes().items()}
    params |= bn_params(model[1], "1.") | bn_params(model[5], "5.")
    R = rng.normal(size=(4, 2))
    check_gradients(
        objective(model, backend, R, train=True),
        {"X": rng.normal(size=(4, 1, 4, 4)), **params},
        backend,
    )


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)], ids=["dense", "images"])
def test_matches_torch_in_training_and_evaluation(backend, shape):
    torch = pytest.importorskip("torch")
    layer = nn.BatchNorm(shape[1], momentum=0.2, eps=1e-3)
    ref = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        shape[1], momentum=0.2, eps=1e-3, dtype=torch.float64
    )
    params = {k: on(backend, v) for k, v in bn_params(layer).items()}
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(backend.to_numpy(params["gamma"])))
        ref.bias.copy_(torch.tensor(backend.to_numpy(params["beta"])))
        ref.running_mean.copy_(torch.tensor(backend.to_numpy(params["mean"])))
        ref.running_var.copy_(torch.tensor(backend.to_numpy(params["var"])))
    tol = {"rtol": 1e-10, "atol": 1e-12}
    for train in (True, True, False):  # two steps of statistics, then evaluation
        ref.train(train)
        X, R = rng.normal(2.0, 3.0, size=shape), rng.normal(size=shape)
        Xt = torch.tensor(X, requires_grad=True)
        want = ref(Xt)
        (want * torch.tensor(R)).sum().backward()
        updates = {}
        Y, backprop = layer.forward(params, on(backend, X), train=train, updates=updates)
        dX, grads = backprop(on(backend, R))
        np.testing.assert_allclose(backend.to_numpy(Y), want.detach().numpy(), **tol)
        np.testing.assert_allclose(backend.to_numpy(dX), Xt.grad.numpy(), **tol)
        np.testing.assert_allclose(backend.to_numpy(grads["gamma"]), ref.weight.grad, **tol)
        np.testing.assert_allclose(backend.to_numpy(grads["beta"]), ref.bias.grad, **tol)
        assert set(grads) == {"gamma", "beta"}  # statistics get no gradient
        ref.weight.grad = ref.bias.grad = None
        assert set(updates) == ({"mean", "var"} if train else set())
        params |= updates
        np.testing.assert_allclose(backend.to_numpy(params["mean"]), ref.running_mean, **tol)
        np.testing.assert_allclose(backend.to_numpy(params["var"]), ref.running_var, **tol)


def test_statistics_nest_with_their_containers():
    model = nn.Sequential(
        nn.Dense(3, 3), nn.Residual(nn.Dense(3, 3), nn.BatchNorm(3)), nn.BatchNorm(3)
    )
    assert model.statistics() == ("1.1.mean", "1.1.var", "2.mean", "2.var")
    assert set(model.statistics()) < set(model.param_shapes())
    assert nn.Dense(2, 2).statistics() == ()


@pytest.mark.parametrize(
    "optimizer",
    [nn.sgd(0.1, momentum=0.9), nn.adamw(0.01, weight_decay=0.5)],
    ids=["sgd-momentum", "adamw"],
)
def test_a_step_writes_the_statistics_and_never_optimizes_them(backend, optimizer):
    model = nn.Sequential(nn.Dense(4, 3), nn.BatchNorm(3), nn.ReLU(), nn.Dense(3, 2))
    params = model.init_params(rng=backend.host_generator(0), backend=backend)
    step = nn.GenericStep(model, optimizer, params, loss="softmax_cross_entropy", xp=backend.xp)
    X = backend.asarray(rng.normal(size=(8, 4)), dtype="float32")
    y = backend.asarray(rng.integers(0, 2, size=8))
    step.compute_grads(X, y, l2=1.0)
    assert "1.mean" not in step.grads and "1.gamma" in step.grads
    # compute_grads leaves the parameters alone (a data-parallel step reduces in between)
    np.testing.assert_array_equal(backend.to_numpy(step.params["1.mean"]), np.zeros(3))
    step.apply_grads()
    batch = backend.to_numpy(X) @ backend.to_numpy(params["0.W"]) + backend.to_numpy(params["0.b"])
    np.testing.assert_allclose(
        backend.to_numpy(step.params["1.mean"]), 0.1 * batch.mean(axis=0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        backend.to_numpy(step.params["1.var"]),
        0.9 + 0.1 * batch.var(axis=0, ddof=1),
        rtol=1e-5,
        atol=1e-6,
    )
    # weight decay and momentum apply to what is trained, not to the statistics
    assert "1.mean" not in repr(step.opt_state)
    assert list(step.params) == list(params)  # same names, same order


def test_the_functional_step_keeps_the_statistics(backend):
    model = nn.Sequential(nn.Dense(2, 2), nn.BatchNorm(2))
    params = model.init_params(rng=backend.host_generator(0), backend=backend)
    optimizer = nn.sgd(0.1)
    state = optimizer.init(nn.trainable(model, params))
    X = backend.asarray([[1.0, 2.0], [3.0, 5.0]], dtype="float32")
    y = backend.asarray([0, 1])
    new, _, _ = nn.train_step(model, optimizer, params, state, X, y)
    assert set(new) == set(params)
    assert float(backend.to_numpy(new["1.var"])[0]) != 1.0


def test_evaluation_uses_the_running_statistics(backend):
    layer = nn.BatchNorm(2)
    params = {
        "gamma": on(backend, [2.0, 1.0]),
        "beta": on(backend, [0.5, 0.0]),
        "mean": on(backend, [1.0, -1.0]),
        "var": on(backend, [4.0 - 1e-5, 1.0 - 1e-5]),
    }
    Y, _ = layer.forward(params, on(backend, [[3.0, 0.0]]))
    np.testing.assert_allclose(backend.to_numpy(Y), [[2.5, 1.0]])


def test_a_network_with_batch_norm_trains_and_saves(tmp_path):
    be = anynet.get_backend("numpy")
    model = nn.Sequential(
        nn.Conv2D(1, 4, 3, padding="same"),
        nn.BatchNorm(4),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(16, 2),
    )
    params = model.init_params(rng=be.host_generator(0), backend=be)
    X = be.asarray(rng.normal(size=(16, 1, 4, 4)), dtype="float32")
    X[8:] += 1.0
    y = be.asarray(np.repeat([0, 1], 8))
    step = nn.GenericStep(model, nn.adam(0.05), params)
    first = float(step(X, y))
    for _ in range(30):
        last = float(step(X, y))
    assert last < first / 4
    path = anynet.io.save_network(tmp_path / "bn", model, step.params)
    loaded, loaded_params, _ = anynet.io.load_network(path, backend=be)
    assert loaded == model
    np.testing.assert_array_equal(loaded_params["1.mean"], step.params["1.mean"])
    np.testing.assert_array_equal(be.to_numpy(loaded(loaded_params, X)), model(step.params, X))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_features": 0}, "n_features must be an integer >= 1; got 0"),
        ({"n_features": 2, "momentum": 0.0}, r"momentum must be .*\(0\.0, 1\.0\]; got 0\.0"),
        ({"n_features": 2, "eps": -1.0}, "eps must be a number > 0.0; got -1.0"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        nn.BatchNorm(**kwargs)


def test_the_wrong_number_of_features_is_refused_naming_the_layer():
    be = anynet.get_backend("numpy")
    layer = nn.BatchNorm(3)
    params = layer.init_params(rng=be.host_generator(0), backend=be)
    with pytest.raises(ValueError, match=r"BatchNorm\(n_features=3.*\) expects input of shape"):
        layer.forward(params, be.asarray(np.zeros((2, 4)), dtype="float32"))


def bn_checkpoint(tmp_path):
    be = anynet.get_backend("numpy")
    model = nn.Sequential(nn.Dense(2, 2), nn.BatchNorm(2))
    params = model.init_params(rng=be.host_generator(0), backend=be)
    state = nn.adam(0.1).init(nn.trainable(model, params))
    path = anynet.io.save_checkpoint(
        tmp_path / "ckpt",
        params=params,
        opt_state=state,
        epoch=0,
        step=0,
        statistics=model.statistics(),
    )
    return model, path


def test_a_checkpoint_keeps_which_parameters_are_statistics(tmp_path):
    model, path = bn_checkpoint(tmp_path)
    ckpt = anynet.io.load_checkpoint(path)
    assert ckpt.statistics == ("1.mean", "1.var")
    assert set(ckpt.opt_state[1].mu) == {"0.W", "0.b", "1.gamma", "1.beta"}
    # an optimizer state for the statistics too is not what the step expects
    with pytest.raises(ValueError, match=r"AdamState.mu holds .*; its parameters are"):
        anynet.io.save_checkpoint(
            tmp_path / "bad", params=ckpt.params, opt_state=nn.adam(0.1).init(ckpt.params),
            epoch=0, step=0, statistics=model.statistics(),
        )  # fmt: skip


@pytest.mark.parametrize(
    ("statistics", "match"),
    [
        ("1.mean", r"its statistics are '1.mean'; expected a list of parameter names"),
        (["1.var", "1.mean"], r"are not distinct names of its parameters .*, sorted"),
        (["1.mean", "1.var", "9.mean"], r"are not distinct names of its parameters"),
        (["1.mean"], r"AdamState.mu holds"),
    ],
)
def test_a_checkpoint_with_edited_statistics_is_refused(tmp_path, statistics, match):
    _, path = bn_checkpoint(tmp_path)
    arrays, meta = anynet.io.read_arrays(path)
    meta["statistics"] = statistics
    anynet.io.write_arrays(path, arrays, meta)
    with pytest.raises(anynet.errors.ModelFileError, match=match):
        anynet.io.load_checkpoint(path)


def test_resuming_a_checkpoint_of_other_statistics_is_refused(tmp_path):
    from anynet.training import read_checkpoint

    model, path = bn_checkpoint(tmp_path)
    with pytest.raises(anynet.errors.ModelFileError, match=r"the checkpoint's statistics .* are"):
        read_checkpoint(
            path, backend=anynet.get_backend("numpy"), param_shapes=model.param_shapes()
        )
