"""The fused step's image stages are twins of the generic engine's Conv2D, pools, Flatten and
BatchNorm.

Each image operation of :class:`anynet.fast.ops.Ops` runs in every family on NumPy arrays
(NumPy passes, numba kernels, the CUDA kernels built for the host) channels last, and is
compared with the engine's layer on the same values channels first. Then fused training runs
of small convolutional networks are compared with the generic step's, and models the stages do
not cover are shown to keep the generic step.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import selected_backends

import anynet
from anynet import nn
from anynet.fast import activations as A
from anynet.fast import fused_step
from anynet.fast.cuda.host import HostLauncher, host_compiler
from anynet.fast.cuda.ops import CudaOps
from anynet.fast.numba_kernels import load as load_numba
from anynet.fast.numba_ops import NumbaOps
from anynet.fast.numpy_ops import NumpyOps
from anynet.fast.ops import Ops
from anynet.fast.stages import plan
from anynet.training import select_step

rng = np.random.default_rng(2025)
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-11, atol=1e-12)}
RELU = A.activation_of(nn.ReLU())
TANH = A.activation_of(nn.Tanh())


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="module")
def host_launcher(tmp_path_factory):
    if host_compiler() is None:
        pytest.skip("no C++ compiler to build the CUDA kernels for the host")
    return HostLauncher(tmp_path_factory.mktemp("cuda-host"))


@pytest.fixture(params=["numpy", "numba", "cuda-host"])
def ops(request):
    """A family's operations on NumPy arrays: the CUDA kernels built for the host (no GPU
    here: the arithmetic and the launch layer are checked, not the GPU's threads)."""
    if "numpy" not in selected_backends(request.config):
        pytest.skip("CPU kernel families: run in the numpy session")
    if request.param == "numpy":
        return NumpyOps()
    if request.param == "cuda-host":
        return CudaOps(np, request.getfixturevalue("host_launcher"))
    kernels, why = load_numba()
    if kernels is None:
        pytest.skip(f"no numba kernels: {why}")
    return NumbaOps(kernels)


def nhwc(X):
    return np.ascontiguousarray(X.transpose(0, 2, 3, 1))


def nchw(X):
    return np.ascontiguousarray(X.transpose(0, 3, 1, 2))


def generic(layer, params, X, dY, **kw):
    """The engine layer's output, input gradient and parameter gradients (float64 NumPy)."""
    Y, backprop = layer.forward(params, X, train=True, **kw)
    dX, grads = backprop(dY)
    return Y, dX, grads


# --- each operation against the generic layer --------------------------------------------------

CONVS = [
    pytest.param(dict(kernel_size=3), (2, 2, 7, 6), id="k3"),
    pytest.param(dict(kernel_size=3, padding=1), (2, 3, 6, 6), id="k3-pad1"),
    pytest.param(dict(kernel_size=5, padding="same"), (2, 2, 7, 8), id="k5-same"),
    pytest.param(dict(kernel_size=4, padding="same"), (2, 2, 7, 6), id="k4-same-even"),
    pytest.param(dict(kernel_size=3, stride=2), (2, 2, 8, 7), id="k3-stride2"),
    pytest.param(dict(kernel_size=3, stride=2, padding=1), (2, 1, 7, 7), id="k3-stride2-pad1"),
    pytest.param(dict(kernel_size=5, stride=2, padding=2), (1, 2, 9, 9), id="k5-stride2-pad2"),
    pytest.param(dict(kernel_size=(3, 2), stride=(1, 2), padding=(2, 0)), (3, 1, 5, 7), id="rect"),
]


@pytest.mark.parametrize(("kw", "shape"), CONVS)
def test_im2col_product_and_col2im_are_the_generic_convolution(ops, dtype, kw, shape):
    """Forward: im2col and one product with the permuted weight; backward: the product with
    its transpose, then col2im. Read channels first through a view, as the first stage does."""
    N, C, H, W = shape
    layer = nn.Conv2D(C, 4, **kw)
    Wt = rng.normal(size=layer.param_shapes()["W"])
    X = rng.normal(size=shape)
    Y, backprop = layer.forward({"W": Wt, "b": np.zeros(4)}, X)
    dY = rng.normal(size=Y.shape)
    dX, grads = backprop(dY)
    (kh, kw_), stride, pads = layer.kernel_size, layer.stride, layer._pads()
    Ho, Wo = Y.shape[2:]
    cols = np.empty((N, Ho, Wo, kh, kw_, C), dtype)
    with ops.context():
        ops.im2col(X.astype(dtype).transpose(0, 2, 3, 1), pads, (kh, kw_), stride, cols)
        Wm = np.ascontiguousarray(Wt.transpose(2, 3, 1, 0).reshape(-1, 4), dtype=dtype)
        Z = np.empty((N * Ho * Wo, 4), dtype)
        ops.matmul(cols.reshape(N * Ho * Wo, -1), Wm, Z)
        dcols = np.empty_like(cols)
        ops.matmul(nhwc(dY).astype(dtype).reshape(-1, 4), Wm.T, dcols.reshape(N * Ho * Wo, -1))
        got_dX = np.empty((N, H, W, C), dtype)
        got_dX[...] = np.nan  # every position is written
        ops.col2im(dcols, pads, (kh, kw_), stride, got_dX)
    np.testing.assert_allclose(nchw(Z.reshape(N, Ho, Wo, 4)), Y, **TOL[dtype])
    np.testing.assert_allclose(nchw(got_dX), dX, **TOL[dtype])
    dW = cols.reshape(N * Ho * Wo, -1).T @ nhwc(dY).astype(dtype).reshape(-1, 4)
    np.testing.assert_allclose(
        dW.reshape(kh, kw_, C, 4).transpose(3, 2, 0, 1), grads["W"], **TOL[dtype]
    )


POOLS = [
    pytest.param((2, 2), None, (2, 3, 8, 8), id="2x2"),
    pytest.param((2, 2), None, (2, 3, 7, 5), id="2x2-odd"),
    pytest.param((3, 3), (2, 2), (2, 2, 7, 7), id="3x3-stride2-overlap"),
    pytest.param((3, 2), (1, 2), (1, 2, 6, 7), id="3x2-stride1x2"),
    pytest.param((2, 2), (3, 3), (1, 2, 8, 8), id="2x2-stride3-gaps"),
]


@pytest.mark.parametrize(("kernel", "stride", "shape"), POOLS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools_are_the_generic_pools(ops, dtype, kind, kernel, stride, shape):
    layer = (nn.MaxPool2D if kind == "max" else nn.AvgPool2D)(kernel, stride)
    # After a ReLU many values tie at zero: the gradient must go to the first of them.
    X = np.maximum(rng.normal(size=shape), 0.0).astype(dtype).astype(np.float64)
    X[0, 0, :2, :2] = 1.5  # a tie of maxima inside one window
    Y, backprop = layer.forward({}, X)
    dY = rng.normal(size=Y.shape)
    dX, _ = backprop(dY)
    got_Y = np.empty(nhwc(Y).shape, dtype)
    got_dX = np.full(nhwc(X).shape, np.nan, dtype)
    with ops.context():
        if kind == "max":
            arg = np.empty(got_Y.shape, np.uint8)
            ops.max_pool(nhwc(X).astype(dtype), layer.kernel_size, layer.stride, got_Y, arg)
            ops.max_pool_backward(
                nhwc(dY).astype(dtype), arg, layer.kernel_size, layer.stride, got_dX
            )
        else:
            ops.avg_pool(nhwc(X).astype(dtype), layer.kernel_size, layer.stride, got_Y)
            ops.avg_pool_backward(nhwc(dY).astype(dtype), layer.kernel_size, layer.stride, got_dX)
    np.testing.assert_allclose(nchw(got_Y), Y, **TOL[dtype])
    np.testing.assert_allclose(nchw(got_dX), dX, **TOL[dtype])


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("act", ["identity", "relu", "tanh"])
@pytest.mark.parametrize("shape", [(13, 5), (3, 4, 5, 6)], ids=["flat", "images"])
def test_batch_norm_is_the_generic_batch_norm(ops, dtype, shape, act, input_grad):
    C = shape[1]
    layer = nn.BatchNorm(C, momentum=0.3)
    row = {"identity": A.IDENTITY, "relu": RELU, "tanh": TANH}[act]
    params = {
        "gamma": rng.normal(size=C),
        "beta": rng.normal(size=C),
        "mean": rng.normal(size=C),
        "var": rng.uniform(0.5, 2, size=C),
    }
    X = rng.normal(loc=2.0, size=shape)
    updates = {}
    Z, backprop = layer.forward(params, X, train=True, updates=updates, input_grad=input_grad)
    after = {"identity": lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[act]
    Y = after(Z)
    dY = rng.normal(size=shape)
    dA = {"identity": dY, "relu": np.where(Y > 0, dY, 0), "tanh": dY * (1 - Y * Y)}[act]
    dX, grads = backprop(dA)

    def rows(a):  # channels last, then one row per pixel
        return np.ascontiguousarray((a if a.ndim == 2 else nhwc(a)).reshape(-1, C), dtype=dtype)

    def back(a):
        return a.reshape(shape) if len(shape) == 2 else nchw(a.reshape(nhwc(X).shape))

    p = {k: v.astype(dtype) for k, v in params.items()}
    Zr = rows(X)
    Xhat, Yr, stats = np.empty_like(Zr), np.empty_like(Zr), np.empty((3, C), dtype)
    Ar = Yr if row.saved == "a" else np.empty_like(Zr)
    got_dA, got_dX = rows(dY), np.empty_like(Zr) if input_grad else None
    dgamma, dbeta, new = np.empty(C, dtype), np.empty(C, dtype), np.empty((2, C), dtype)
    m = Zr.shape[0]
    with ops.context():
        ops.batch_norm(Zr, p["gamma"], p["beta"], 1e-5, row, 0.0, Xhat, Yr, Ar, stats)
        saved = Ar if row.saved == "a" else Yr
        ops.batch_norm_backward(
            got_dA, saved, row, 0.0, Xhat, p["gamma"], stats, dgamma, dbeta, got_dX
        )
        ops.running_average(p["mean"], stats[0], 0.3, 1.0, new[0])
        ops.running_average(p["var"], stats[1], 0.3, m / (m - 1), new[1])
    np.testing.assert_allclose(back(Ar), Y, **TOL[dtype])
    np.testing.assert_allclose(dgamma, grads["gamma"], **TOL[dtype])
    np.testing.assert_allclose(dbeta, grads["beta"], **TOL[dtype])
    if input_grad:
        np.testing.assert_allclose(back(got_dX), dX, **TOL[dtype])
    np.testing.assert_allclose(new[0], updates["mean"], **TOL[dtype])
    np.testing.assert_allclose(new[1], updates["var"], **TOL[dtype])


def test_copy_changes_the_layout(ops):
    X = rng.normal(size=(2, 3, 4, 5))
    out = np.empty((2, 4, 5, 3))
    ops.copy(X.transpose(0, 2, 3, 1), out)
    np.testing.assert_array_equal(out, nhwc(X))


# --- whole training runs against the generic step -----------------------------------------------

MODELS = {
    # Stride 1 and 2, padding 0, 1 and 'same', kernels 3 and 5, both pools, Flatten, Dropout.
    "conv-pools": lambda: nn.Sequential(
        nn.Conv2D(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Conv2D(4, 6, 5, padding="same"),
        nn.Tanh(),
        nn.AvgPool2D(2),
        nn.Conv2D(6, 5, 3, stride=2),
        nn.LeakyReLU(0.1),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Dense(5, 4),
    ),
    "conv-stride2-pad1-global": lambda: nn.Sequential(
        nn.Conv2D(2, 4, 3, stride=2, padding=1),
        nn.SiLU(),
        nn.MaxPool2D(3, stride=2),
        nn.Conv2D(4, 6, 3, padding="same", bias=False),
        nn.ReLU(),
        nn.GlobalAvgPool2D(),
        nn.Dense(6, 5),
        nn.ReLU(),
        nn.Dense(5, 4),
    ),
    # Batch norm after convolutions without bias (a bias there has a zero gradient, made of
    # rounding alone, which Adam would blow up to full steps) and after a dense layer.
    "batch-norm": lambda: nn.Sequential(
        nn.Conv2D(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm(4),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Conv2D(4, 6, 3, padding=1, bias=False),
        nn.BatchNorm(6, momentum=0.3),
        nn.Tanh(),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(24, 8, bias=False),
        nn.BatchNorm(8),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Dense(8, 4),
    ),
    "log_softmax": lambda: nn.Sequential(
        nn.Conv2D(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Dense(3 * 6 * 6, 4), nn.LogSoftmax()
    ),
}
CHANNELS = {"conv-stride2-pad1-global": 2}
SIZE = {"conv-pools": 16}
OPTIMIZERS = {
    "adam": lambda: nn.adam(0.01),
    "sgd-momentum": lambda: nn.sgd(0.05, momentum=0.9, weight_decay=1e-3),
}


def train_both(model_name, opt_name, dtype, ops, *, steps=4, **kw):
    """``steps`` steps of the fused and the generic step on the same batches and draws."""
    be = anynet.get_backend("numpy")
    data = np.random.default_rng(7)
    model = MODELS[model_name]()
    params = model.init_params(rng=be.host_generator(3), backend=be, dtype=dtype)
    loss = "nll" if model_name == "log_softmax" else "softmax_cross_entropy"
    steppers = [
        select_step(model, OPTIMIZERS[opt_name](), params, backend=be, loss=loss, **kw, ops=ops),
        select_step(model, OPTIMIZERS[opt_name](), params, backend=be, loss=loss, fast=False),
    ]
    losses = [[], []]
    for s in range(steps):
        B = 6 if s % 2 else 9  # a smaller batch after a larger one: the buffers' prefix
        side = SIZE.get(model_name, 8)
        X = data.normal(size=(B, CHANNELS.get(model_name, 1), side, side)).astype(dtype)
        y = data.integers(0, 4, size=B)
        for step, record in zip(steppers, losses, strict=True):
            record.append(float(step(X, y, l2=1e-3, rng=be.generator(s))))
    return *steppers, losses


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_fused_training_equals_generic_training(ops, dtype, model_name, opt_name):
    fast, slow, (fast_losses, slow_losses) = train_both(model_name, opt_name, dtype, ops)
    assert fast.name == f"fused {ops.name}" and slow.name == "generic"
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(fast_losses, slow_losses, **tol)
    assert sorted(fast.params) == sorted(slow.params)
    for k in slow.params:
        np.testing.assert_allclose(fast.params[k], slow.params[k], **tol, err_msg=k)


def test_statistics_are_estimated_not_trained(ops):
    """The running statistics lie after the trained parameters; the optimizer's state and the
    gradients name the trained ones only, as the generic step's do; compute_grads leaves them
    and apply_grads writes them."""
    fast, slow, _ = train_both("batch-norm", "adam", "float64", ops, steps=2)
    model = MODELS["batch-norm"]()
    statistics = set(model.statistics())
    assert statistics == {"1.mean", "1.var", "5.mean", "5.var", "10.mean", "10.var"}
    offsets = fast.layout.offsets
    assert min(offsets[n][0] for n in statistics) == fast.trained.size
    assert sorted(fast.grads) == sorted(slow.grads) == sorted(set(slow.params) - statistics)
    assert sorted(fast.opt_state[1].mu) == sorted(slow.opt_state[1].mu)
    before = {k: v.copy() for k, v in fast.params.items()}
    X = np.random.default_rng(0).normal(size=(5, 1, 8, 8))
    fast.compute_grads(X, np.arange(5) % 4, rng=anynet.get_backend("numpy").generator(0))
    for k in before:
        np.testing.assert_array_equal(fast.params[k], before[k])
    fast.apply_grads()
    assert not np.array_equal(fast.params["1.mean"], before["1.mean"])


def test_a_fused_cnn_trains_through_the_loop():
    be = anynet.get_backend("numpy")
    model = MODELS["batch-norm"]()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    data = np.random.default_rng(1)
    X = data.normal(size=(40, 1, 8, 8)).astype("float32")
    y = data.integers(0, 4, size=40)
    X[np.arange(40), 0, y, y] += 3.0  # the class is where a bright pixel is
    results = []
    for fast in (True, False):
        step = select_step(model, nn.adam(0.01), params, backend=be, fast=fast)
        loader = anynet.data.DataLoader(X, y, 16, backend=be, seed=5, normalize=None, flatten=False)
        results.append(anynet.training.train(step, loader, epochs=3, seed=11))
    fast, slow = results
    assert fast.path.startswith("fused") and slow.path == "generic"
    np.testing.assert_allclose(fast.history["loss"], slow.history["loss"], rtol=1e-4)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_fused_predict_is_the_generic_evaluation_forward(ops, dtype, model_name):
    """After training (batch norm's running statistics moved away from 0 and 1), the fused
    step's output in evaluation mode equals the engine's, over a batch larger than the
    training batches (slices), and changes nothing: the parameters and the gradients of the
    last compute_grads stay as they were, so the update after it is the generic one."""
    fast, slow, _ = train_both(model_name, "adam", dtype, ops, steps=3)
    assert fast.name.startswith("fused")
    side, channels = SIZE.get(model_name, 8), CHANNELS.get(model_name, 1)
    X = np.random.default_rng(9).normal(size=(23, channels, side, side)).astype(dtype)
    y = np.arange(6) % 4
    for step in (fast, slow):
        step.compute_grads(X[:6], y, rng=anynet.get_backend("numpy").generator(8))
    params = {k: v.copy() for k, v in fast.params.items()}
    grads = {k: v.copy() for k, v in fast.grads.items()}
    want = slow.predict(X)
    got = fast.predict(X)
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    assert got.shape == want.shape == (23, 4)
    np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(
        fast.evaluate(X, np.arange(23) % 4), slow.evaluate(X, np.arange(23) % 4), **tol
    )
    for k in params:
        np.testing.assert_array_equal(fast.params[k], params[k], err_msg=k)
    for k in grads:
        np.testing.assert_array_equal(fast.grads[k], grads[k], err_msg=k)
    fast.apply_grads()
    slow.apply_grads()
    for k in slow.params:
        np.testing.assert_allclose(fast.params[k], slow.params[k], **tol, err_msg=k)


def test_fused_predict_with_other_parameters_runs_the_engine():
    """Parameters that are not the step's own (the best epoch's, kept aside) are scored as
    given, not with the step's buffers."""
    fast, slow, _ = train_both("batch-norm", "adam", "float64", NumpyOps(), steps=2)
    X = np.random.default_rng(3).normal(size=(5, 1, 8, 8))
    other = {k: v * 0.5 for k, v in fast.params.items()}
    np.testing.assert_allclose(fast.predict(X, other), slow.predict(X, other), rtol=1e-12)
    assert not np.allclose(fast.predict(X, other), fast.predict(X))


def test_inputs_of_the_wrong_shape_are_refused_naming_the_layer():
    be = anynet.get_backend("numpy")
    model = MODELS["conv-pools"]()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    step = select_step(model, nn.adam(), params, backend=be)
    assert step.name.startswith("fused")
    with pytest.raises(ValueError, match=r"Conv2D\(1, 4.*expects 1 input channels; got 3"):
        step.compute_grads(np.zeros((2, 3, 16, 16), "float32"), np.zeros(2, "int64"))
    with pytest.raises(ValueError, match=r"Conv2D\(1, 4.*expects images"):
        step.compute_grads(np.zeros((2, 64), "float32"), np.zeros(2, "int64"))


# --- what the stages do not cover keeps the generic step ----------------------------------------

NOT_COVERED = {
    "residual": lambda: nn.Sequential(
        nn.Conv2D(1, 2, 3, padding=1),
        nn.Residual(nn.Conv2D(2, 2, 3, padding=1)),
        nn.Flatten(),
        nn.Dense(2 * 8 * 8, 4),
    ),
    "activation-after-pool": lambda: nn.Sequential(
        nn.Conv2D(1, 2, 3), nn.MaxPool2D(2), nn.ReLU(), nn.Flatten(), nn.Dense(18, 4)
    ),
    "dropout-on-images": lambda: nn.Sequential(
        nn.Conv2D(1, 2, 3), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(), nn.Dense(72, 4)
    ),
    "pool-first": lambda: nn.Sequential(nn.MaxPool2D(2), nn.Flatten(), nn.Dense(16, 4)),
    "batch-norm-first": lambda: nn.Sequential(nn.BatchNorm(4), nn.Dense(4, 4)),
    "conv-after-dense": lambda: nn.Sequential(nn.Dense(4, 4), nn.Conv2D(1, 1, 1)),
    "dense-on-images": lambda: nn.Sequential(nn.Conv2D(1, 2, 3), nn.Dense(6, 4)),
    "flatten-first": lambda: nn.Sequential(nn.Flatten(), nn.Dense(64, 4)),
    "conv-last": lambda: nn.Sequential(nn.Conv2D(1, 4, 8)),
    "batch-norm-last": lambda: nn.Sequential(nn.Dense(4, 4), nn.BatchNorm(4)),
}


@pytest.mark.parametrize("name", sorted(NOT_COVERED))
def test_what_the_stages_do_not_cover_keeps_the_generic_step(name):
    be = anynet.get_backend("numpy")
    model = NOT_COVERED[name]()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    assert plan(model, "softmax_cross_entropy") is None
    opt = nn.adam()
    assert fused_step(model, opt, params, ops=NumpyOps(), loss="softmax_cross_entropy",
                      reduction="mean") is None  # fmt: skip
    assert select_step(model, opt, params, backend=be).name == "generic"


def test_a_family_without_the_image_operations_keeps_the_generic_step():
    """A family that has not implemented a stage's operations (a new one, say) trains
    convolutional models with the generic step, not a crash."""

    class DenseOnly(NumpyOps):
        im2col = Ops.im2col

    be = anynet.get_backend("numpy")
    model = MODELS["conv-pools"]()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    assert select_step(model, nn.adam(), params, backend=be, ops=DenseOnly()).name == "generic"
    assert select_step(model, nn.adam(), params, backend=be, ops=NumpyOps()).name == "fused cpu"
