"""The same seed and data give the same network on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import anynet
from anynet import nn

pytestmark = pytest.mark.every_session  # compares the backends each session has installed

BACKENDS = [b for b in anynet.available_backends() if b != "cupy"] + (
    ["cupy"] if "cupy" in anynet.available_backends() else []
)


def make_model():
    return nn.Sequential(
        nn.Dense(20, 16, init="he_normal"),
        nn.ReLU(),
        nn.Dense(16, 12),
        nn.Tanh(),
        nn.Dense(12, 8, init="uniform"),
        nn.Sigmoid(),
        nn.Dense(8, 5),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_gives_bit_identical_initial_weights(dtype):
    model = make_model()
    reference = None
    for name in BACKENDS:
        be = anynet.get_backend(name)
        params = model.init_params(rng=be.host_generator(42), backend=be, dtype=dtype)
        host = {k: be.to_numpy(v) for k, v in params.items()}
        assert all(v.dtype == np.dtype(dtype) for v in host.values()), name
        if reference is None:
            reference = host
            continue
        for k in reference:
            np.testing.assert_array_equal(host[k], reference[k], err_msg=f"{name} {k}")


def train_one_epoch(backend_name, dtype, optimizer):
    be = anynet.get_backend(backend_name)
    data = np.random.default_rng(0)
    X = data.normal(size=(200, 20))
    y = data.integers(0, 5, size=200)
    order = data.permutation(200)  # the same shuffle everywhere: drawn on the host
    model = make_model()
    params = model.init_params(rng=be.host_generator(7), backend=be, dtype=dtype)
    state = optimizer.init(params)
    Xd, yd = be.asarray(X[order], dtype=dtype), be.asarray(y[order], dtype="int64")
    for start in range(0, 200, 32):
        stop = min(start + 32, 200)  # the Array API leaves out-of-range slice stops undefined
        params, state, _ = nn.train_step(
            model, optimizer, params, state, Xd[start:stop, ...], yd[start:stop], l2=1e-3
        )
    return {k: be.to_numpy(v) for k, v in params.items()}


OPTIMIZERS = {
    "adam": lambda: nn.adam(0.01),
    "adamw": lambda: nn.adamw(0.01, weight_decay=0.05),
    "sgd-nesterov": lambda: nn.sgd(0.1, momentum=0.9, nesterov=True),
}


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends to compare")
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize(("dtype", "atol"), [("float64", 1e-10), ("float32", 1e-4)])
def test_one_epoch_gives_the_same_weights_on_every_backend(opt, dtype, atol):
    reference = train_one_epoch("numpy", dtype, OPTIMIZERS[opt]())
    for name in BACKENDS[1:]:
        got = train_one_epoch(name, dtype, OPTIMIZERS[opt]())
        for k in reference:
            assert got[k].dtype == np.dtype(dtype)
            np.testing.assert_allclose(
                got[k], reference[k], rtol=0, atol=atol, err_msg=f"{name} {k}"
            )


def test_float32_logits_of_1e4_stay_finite(backend):
    xp = backend.xp
    logits = backend.asarray(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype="float32"
    )
    labels = backend.asarray([1, 0, 2], dtype="int64")
    probs = backend.to_numpy(nn.functional.softmax(logits))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert np.isfinite(backend.to_numpy(nn.functional.log_softmax(logits))).all()
    for loss in (nn.softmax_cross_entropy, nn.sigmoid_binary_cross_entropy):
        value, grad = loss(logits, labels)
        assert np.isfinite(float(backend.to_numpy(value))), loss.__name__
        assert np.isfinite(backend.to_numpy(grad)).all(), loss.__name__
        assert value.dtype == xp.float32
    # Each true class sits 2e4 below the row's best (the last row's best is tied): the mean
    # loss is 2e4 + log(2) / 3, large but finite.
    value, _ = nn.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(float(backend.to_numpy(value)), 2e4 + np.log(2) / 3, rtol=1e-6)
    sig = backend.to_numpy(nn.functional.sigmoid(logits))
    assert set(np.unique(sig)) <= {0.0, 0.5, 1.0}
