"""On a GPU: training with the CuPy fast path equals the generic engine on CuPy.

Skipped without a CUDA device (the same step runs on the host build of its kernels in
tests/test_fast.py on every machine).
"""

from __future__ import annotations

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.training import TrainState, train

pytestmark = pytest.mark.every_session  # the cupy session is where CuPy is


@pytest.fixture(scope="module")
def gpu():
    try:
        return anynet.get_backend("cupy")
    except anynet.errors.AnynetError as exc:
        pytest.skip(f"no CuPy GPU: {str(exc).split('. ')[0]}")


MODELS = {
    "relu": lambda: nn.Sequential(
        nn.Dense(12, 16), nn.ReLU(), nn.Dense(16, 8), nn.ReLU(), nn.Dense(8, 5)
    ),
    "tanh-leaky-dropout": lambda: nn.Sequential(
        nn.Dense(12, 10), nn.Tanh(), nn.Dense(10, 7), nn.LeakyReLU(0.2), nn.Dropout(0.1),
        nn.Dense(7, 5),
    ),
}  # fmt: skip


def run(be, model_name, dtype, *, fast, opt):
    data = np.random.default_rng(7)
    X = data.integers(0, 256, size=(103, 12), dtype=np.uint8)
    y = data.integers(0, 5, size=103)
    model = MODELS[model_name]()
    params = model.init_params(rng=be.host_generator(3), backend=be, dtype=dtype)
    state = TrainState(params=params, opt_state=opt.init(params))
    loader = anynet.data.DataLoader(X, y, 16, backend=be, seed=5, dtype=dtype)
    train(model, opt, state, loader, epochs=3, backend=be, seed=11, l2=1e-3, fast=fast)
    return state


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("make", [lambda: nn.adam(0.01), lambda: nn.sgd(0.05, momentum=0.9)])
def test_cupy_fast_path_equals_generic(gpu, dtype, model_name, make):
    fast = run(gpu, model_name, dtype, fast=True, opt=make())
    slow = run(gpu, model_name, dtype, fast=False, opt=make())
    assert fast.path == "fused cupy" and slow.path == "generic"
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-9, atol=1e-11)
    for k in slow.params:
        np.testing.assert_allclose(
            gpu.to_numpy(fast.params[k]), gpu.to_numpy(slow.params[k]), **tol, err_msg=k
        )
    np.testing.assert_allclose(fast.history["loss"], slow.history["loss"], **tol)
