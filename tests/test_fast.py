"""Every kernel family of the fused step is the twin of the generic engine.

Each operation of :class:`anynet.fast.ops.Ops` runs in every family — NumPy passes, NumPy with
numba kernels, the CUDA kernels built as host C++ (every machine with a C++ compiler, so CI
checks the kernels without a GPU), and CuPy on a GPU (skipped without one) — and is compared
with the generic engine code it replaces. Then whole training runs of the fused step are
compared with the generic step's.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import selected_backends

import anynet
from anynet import nn
from anynet.fast import activations as A
from anynet.fast import fused_step, ops_for
from anynet.fast.cuda.host import HostLauncher, host_compiler
from anynet.fast.cuda.ops import CudaOps
from anynet.fast.numba_kernels import load as load_numba
from anynet.fast.numba_ops import NumbaOps
from anynet.fast.numpy_ops import NumpyOps
from anynet.fast.ops import SGDHyper, optimizer_hyper
from anynet.training import TrainState, select_step, train

# Every session: the cupy one runs the "cupy" family; the CPU families run once (numpy's).
pytestmark = pytest.mark.every_session
rng = np.random.default_rng(2024)
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}
FAMILIES = ["numpy", "numba", "cuda-host", "cupy"]


def rand(*shape, dtype="float64", scale=3.0):
    return (rng.normal(size=shape) * scale).astype(dtype)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="module")
def host_launcher(tmp_path_factory):
    if host_compiler() is None:
        pytest.skip("no C++ compiler to build the CUDA kernels for the host")
    return HostLauncher(tmp_path_factory.mktemp("cuda-host"))


def _gpu():
    try:
        return anynet.get_backend("cupy")
    except anynet.errors.AnynetError as exc:
        pytest.skip(f"no CuPy GPU: {str(exc).split('. ')[0]}")


def make_ops(family, request):
    """``(ops, to_device, to_host)`` for a family, or a skip saying why it cannot run here."""
    if family != "cupy" and "numpy" not in selected_backends(request.config):
        pytest.skip("CPU kernel families: run in the numpy session")
    if family == "numpy":
        return NumpyOps(), np.array, np.asarray
    if family == "numba":
        kernels, why = load_numba()
        if kernels is None:
            pytest.skip(f"no numba kernels: {why}")
        return NumbaOps(kernels), np.array, np.asarray
    if family == "cuda-host":
        return CudaOps(np, request.getfixturevalue("host_launcher")), np.array, np.asarray
    be = _gpu()
    return ops_for(be), be.library.asarray, be.library.asnumpy


@pytest.fixture(params=FAMILIES)
def family(request):
    return make_ops(request.param, request)


# --- each operation against the generic engine ---------------------------------------------

ROWS = {row.name: row for row in A.TABLE}
LAYER = {row.name: (row.layer(0.2) if row.param else row.layer()) for row in A.TABLE[1:]}


def generic_forward(name, Z):
    return Z if name == "AN_IDENTITY" else LAYER[name].forward({}, Z)[0]


def generic_backward(name, Z, dY):
    if name == "AN_IDENTITY":
        return dY
    _, backprop = LAYER[name].forward({}, Z)
    return backprop(dY)[0]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", list(ROWS))
def test_bias_and_activation(family, dtype, name, bias):
    ops, dev, host = family
    row = ROWS[name]
    Z, b = rand(17, 9, dtype=dtype), rand(9, dtype=dtype)
    Z[0, :3] = [-200.0, 0.0, 200.0]  # saturation and the kink
    with np.errstate(over="ignore"):
        want_z = Z + b if bias else Z
        want = generic_forward(name, want_z)
    got_z = dev(Z)
    got_a = got_z if row.saved == "a" else dev(np.empty_like(Z))
    with ops.context():
        ops.bias_act(got_z, dev(b) if bias else None, row, 0.2, got_a)
    np.testing.assert_allclose(host(got_a), want, **TOL[dtype])
    if row.saved == "z":  # the input is kept for the derivative
        np.testing.assert_allclose(host(got_z), want_z, **TOL[dtype])


def test_relu_maps_nan_to_zero_as_the_generic_relu(family):
    ops, dev, host = family
    Z = np.array([[np.nan, -1.0, 0.0, 2.0]], dtype="float32")
    got = dev(Z)
    with ops.context():
        ops.bias_act(got, dev(np.zeros(4, "float32")), ROWS["AN_RELU"], 0.0, got)
    np.testing.assert_array_equal(host(got), nn.functional.relu(Z))


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("name", list(ROWS))
def test_activation_backward_with_dropout(family, dtype, name, p):
    ops, dev, host = family
    row = ROWS[name]
    Z, dA = rand(13, 7, dtype=dtype), rand(13, 7, dtype=dtype)
    keep = rng.random((13, 7)) >= p
    d = (dA * keep * (1.0 / (1.0 - p))).astype(dtype) if p else dA
    want = generic_backward(name, Z, d)
    saved = generic_forward(name, Z) if row.saved == "a" else Z
    got = dev(dA)
    with ops.context():
        ops.act_backward(got, dev(saved), row, 0.2, dev(keep) if p else None, p)
    np.testing.assert_allclose(host(got), want, **TOL[dtype])


def test_dropout_draws_as_the_generic_layer(family, dtype):
    ops, dev, host = family
    layer, p = nn.Dropout(0.25), 0.25
    Z = rand(11, 6, dtype=dtype)
    be = anynet.get_backend("numpy")
    want, _ = layer.forward({}, Z, train=True, rng=be.generator(5))
    u = be.generator(5).uniform(Z.shape, dtype)  # the draw the layer made
    out, keep = dev(np.empty_like(Z)), dev(np.empty(Z.shape, bool))
    with ops.context():
        ops.dropout(dev(Z), dev(u), p, out, keep)
    np.testing.assert_array_equal(host(out), want)
    np.testing.assert_array_equal(host(keep), u >= p)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    ("name", "generic"),
    [
        ("softmax_cross_entropy", nn.softmax_cross_entropy),
        ("sigmoid_cross_entropy", nn.sigmoid_binary_cross_entropy),
    ],
)
def test_losses(family, dtype, reduction, name, generic):
    ops, dev, host = family
    Z = rand(19, 6, dtype=dtype, scale=10.0)
    Z[0, 0] = 1e4 if dtype == "float32" else 1e6  # the stable forms must survive this
    y = rng.integers(0, 6, size=19)
    want_loss, want_grad = generic(Z.copy(), y, reduction=reduction)
    got = dev(Z)
    with ops.context():
        loss = getattr(ops, name)(got, dev(y), 1 / 19 if reduction == "mean" else 1.0)
    np.testing.assert_allclose(float(host(loss)), float(want_loss), **TOL[dtype])
    np.testing.assert_allclose(host(got), want_grad, **TOL[dtype])


def test_a_nan_logit_makes_the_loss_nan(family):
    ops, dev, host = family
    Z = rand(5, 4, dtype="float32")
    Z[3, 2] = np.nan
    with ops.context():
        assert np.isnan(float(host(ops.softmax_cross_entropy(dev(Z), dev(np.arange(5) % 4), 1.0))))


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_penalties(family, dtype, kind):
    ops, dev, host = family
    W, g = rand(40, dtype=dtype), rand(40, dtype=dtype)
    penalty = nn.l1_penalty if kind == "l1" else nn.l2_penalty
    want_value, want_grad = penalty({"W": W}, 0.01)
    got_g = dev(g)
    with ops.context():
        value = getattr(ops, f"{kind}_penalty")(dev(W), got_g, 0.01)
    np.testing.assert_allclose(float(host(value)), float(want_value), **TOL[dtype])
    np.testing.assert_allclose(host(got_g), g + want_grad["W"], **TOL[dtype])


OPTIMIZERS = {
    "adam": lambda: nn.adam(0.01),
    "adam-l2": lambda: nn.adam(0.01, weight_decay=0.1),
    "adamw": lambda: nn.adamw(0.01, weight_decay=0.1),
    "sgd": lambda: nn.sgd(0.1),
    "momentum-l2": lambda: nn.sgd(0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda: nn.sgd(0.1, momentum=0.9, nesterov=True),
}


def optimizer_steps(ops, dev, opt, theta, grads):
    """``grads`` applied in turn through ``ops`` as a fused step's optimizer would."""
    hyper = optimizer_hyper(opt.spec)
    theta = dev(theta)
    m, v, trace = (dev(np.zeros_like(grads[0])) for _ in range(3))
    with ops.context():
        for count, g in enumerate(grads, start=1):
            if isinstance(hyper, SGDHyper):
                ops.sgd(theta, dev(g), trace if hyper.momentum else None, hyper)
            else:
                ops.adam(theta, dev(g), m, v, count, hyper)
    return theta, m, v, trace


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizers(family, dtype, name):
    ops, dev, host = family
    opt = OPTIMIZERS[name]()
    theta = rand(50, dtype=dtype, scale=1.0)
    grads = [rand(50, dtype=dtype, scale=1.0) for _ in range(6)]
    params, state = {"p": theta.copy()}, opt.init({"p": theta.copy()})
    for g in grads:
        updates, state = opt.update({"p": g.copy()}, state, params)
        params = nn.apply_updates(params, updates)
    got = optimizer_steps(ops, dev, opt, theta, grads)[0]
    np.testing.assert_allclose(host(got), params["p"], **TOL[dtype])


@pytest.mark.parametrize("name", ["adam", "momentum-l2"])
def test_optimizer_state_is_flushed_once_subnormal_and_nan_is_kept(family, dtype, name):
    """A parameter whose gradient stays zero (a dead ReLU unit's weight) has its moments decay
    into the subnormal range, where x86 arithmetic is ~100x slower: every family flushes them
    to zero, and keeps a NaN (it must still surface)."""
    ops, dev, host = family
    tiny = np.finfo(dtype).tiny
    opt = OPTIMIZERS[name]()
    g0 = np.array([3 * tiny, -3 * tiny, 0.5, np.nan, 0.0], dtype)
    grads = [g0] + [np.zeros(5, dtype)] * 60
    _, m, _, trace = optimizer_steps(ops, dev, opt, np.ones(5, dtype), grads)
    state = host(trace) if name.startswith("momentum") else host(m)
    assert not np.any((state != 0) & (np.abs(state) < tiny)), state
    assert np.isnan(state[3]) and state[2] != 0
    # Unflushed, the decay would sit in the subnormal range for good.
    decayed = np.float64(3 * tiny) * 0.9**60
    assert 0 < decayed < tiny


@pytest.mark.parametrize("normalize", ["unit", "symmetric", "standardize", None])
def test_gather_gives_the_loaders_batches_bit_for_bit(family, dtype, normalize):
    from anynet.fast.gather import batch_gather

    ops, dev, host = family
    X = rng.integers(0, 256, size=(40, 4, 5), dtype=np.uint8)
    be = anynet.get_backend("numpy") if ops.xp is np else _gpu()
    loader = anynet.data.DataLoader(
        X, np.arange(40) % 3, 8, backend=be, dtype=dtype, normalize=normalize
    )
    resident = loader._X  # as the loader keeps it (flattened: 20 features)
    gather = batch_gather(ops, resident, dtype, loader._convert, loader._mean, loader._inv_std)
    rows = rng.permutation(40)[:13]
    got = host(gather(dev(rows)))
    want = host(loader._convert(resident[dev(rows)]))
    assert got.shape == (13, 20) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)


# --- whole training runs: the fused step against the generic one -----------------------------

MODELS = {
    "relu": lambda: nn.Sequential(
        nn.Dense(12, 16), nn.ReLU(), nn.Dense(16, 8), nn.ReLU(), nn.Dense(8, 5)
    ),
    "sigmoid-dropout": lambda: nn.Sequential(
        nn.Dense(12, 16), nn.Sigmoid(), nn.Dropout(0.3), nn.Dense(16, 5)
    ),
    "tanh-leaky": lambda: nn.Sequential(
        nn.Dense(12, 10),
        nn.Tanh(),
        nn.Dense(10, 7),
        nn.LeakyReLU(0.2),
        nn.Dropout(0.1),
        nn.Dense(7, 5),
    ),
    "seed-nobias": lambda: nn.Sequential(
        nn.Dense(12, 9, bias=False, init="uniform"), nn.Sigmoid(), nn.Dense(9, 5, bias=False)
    ),
    "log_softmax": lambda: nn.Sequential(
        nn.Dense(12, 16), nn.ReLU(), nn.Dense(16, 5), nn.LogSoftmax()
    ),
    # The derivative reads the activation's input: the stage keeps it beside the output.
    "silu-dropout": lambda: nn.Sequential(
        nn.Dense(12, 16), nn.SiLU(), nn.Dropout(0.2), nn.Dense(16, 5)
    ),
}
LOSS_FOR = {"log_softmax": "nll", "seed-nobias": "sigmoid_binary_cross_entropy"}
TRAINING_OPTIMIZERS = {
    "adam": lambda: nn.adam(0.01),
    "adamw": lambda: nn.adamw(0.01, weight_decay=0.05),
    "sgd-nesterov": lambda: nn.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
}


def run(be, model_name, opt_name, dtype, *, ops=None, fast=True, epochs=3, **kw):
    """Train a model for a few epochs; the fused step through ``ops``, or the generic one."""
    data = np.random.default_rng(7)
    X = data.normal(size=(103, 12)).astype(dtype)
    y = data.integers(0, 5, size=103)
    model = MODELS[model_name]()
    params = model.init_params(rng=be.host_generator(3), backend=be, dtype=dtype)
    reduction = kw.pop("reduction", "mean")
    loss = LOSS_FOR.get(model_name, "softmax_cross_entropy")
    step = select_step(
        model,
        TRAINING_OPTIMIZERS[opt_name](),
        params,
        backend=be,
        loss=loss,
        reduction=reduction,
        fast=fast,
        ops=ops,
    )
    loader = anynet.data.DataLoader(X, y, 16, backend=be, seed=5, dtype=dtype, normalize=None)
    return train(step, loader, epochs=epochs, seed=11, **kw)


@pytest.mark.parametrize("opt_name", sorted(TRAINING_OPTIMIZERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_fused_training_equals_generic_training(family, dtype, model_name, opt_name):
    ops, _, host = family
    be = anynet.get_backend("numpy") if ops.xp is np else _gpu()
    kw = dict(l1=1e-4, l2=1e-3) if model_name == "relu" else {}
    if model_name == "seed-nobias":
        kw = dict(reduction="sum", l2=0.5)
    fast = run(be, model_name, opt_name, dtype, ops=ops, **kw)
    slow = run(be, model_name, opt_name, dtype, fast=False, **kw)
    assert fast.path == f"fused {ops.name}" and slow.path == "generic"
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    for k in slow.params:
        np.testing.assert_allclose(host(fast.params[k]), host(slow.params[k]), **tol, err_msg=k)
    np.testing.assert_allclose(fast.history["loss"], slow.history["loss"], **tol)
    assert fast.step == slow.step


# --- the fused step's structures, and when it applies --------------------------------------


@pytest.fixture
def numpy_backend(request):
    if "numpy" not in selected_backends(request.config):
        pytest.skip("runs in the numpy session")
    return anynet.get_backend("numpy")


def test_fused_state_has_the_generic_structure(numpy_backend):
    fast = run(numpy_backend, "relu", "adam", "float64")
    slow = run(numpy_backend, "relu", "adam", "float64", fast=False)
    assert type(fast.opt_state) is type(slow.opt_state)
    for a, b in zip(fast.opt_state, slow.opt_state, strict=True):
        assert type(a) is type(b)
    adam_fast, adam_slow = fast.opt_state[1], slow.opt_state[1]
    assert adam_fast.count == adam_slow.count
    for k in adam_slow.mu:
        np.testing.assert_allclose(adam_fast.mu[k], adam_slow.mu[k], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(adam_fast.nu[k], adam_slow.nu[k], rtol=1e-10, atol=1e-14)
    assert sorted(fast.train_step.grads) == sorted(slow.params)


def test_a_generic_state_continues_in_the_fused_step(numpy_backend):
    """A state from the generic step (say, a checkpoint's) continues in the fused one."""
    be = numpy_backend
    straight = run(be, "relu", "adam", "float64", fast=False, epochs=4)
    halfway = run(be, "relu", "adam", "float64", fast=False, epochs=2)
    model = MODELS["relu"]()
    step = select_step(
        model, TRAINING_OPTIMIZERS["adam"](), halfway.params, halfway.opt_state, backend=be
    )
    assert step.name.startswith("fused")
    data = np.random.default_rng(7)
    X, y = data.normal(size=(103, 12)), data.integers(0, 5, size=103)
    loader = anynet.data.DataLoader(X, y, 16, backend=be, seed=5, dtype="float64", normalize=None)
    halfway.history = {}
    state = train(step, loader, epochs=4, seed=11, state=halfway)
    for k in straight.params:
        np.testing.assert_allclose(state.params[k], straight.params[k], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    ("model", "loss", "opt"),
    [
        (nn.Sequential(nn.Dense(4, 3), nn.Softmax()), "softmax_cross_entropy", nn.adam()),
        (nn.Sequential(nn.Dense(4, 3)), "mse", nn.adam()),
        (
            nn.Sequential(nn.Dense(4, 3)),
            "softmax_cross_entropy",
            nn.optim.chain(nn.optim.scale_by_adam(), nn.optim.scale_by_learning_rate(0.1)),
        ),
        (nn.Sequential(nn.Dense(4, 3), nn.ReLU()), "softmax_cross_entropy", nn.adam()),
        (nn.Sequential(nn.ReLU(), nn.Dense(4, 3)), "softmax_cross_entropy", nn.adam()),
        (nn.Sequential(nn.Dense(4, 3), nn.Dropout(0.1)), "softmax_cross_entropy", nn.adam()),
    ],
    ids=[
        "softmax-layer",
        "mse",
        "own-optimizer",  # no spec: a learning-rate schedule is fused (test_schedules.py)
        "activation-last",
        "starts-with-relu",
        "dropout-last",
    ],
)
def test_what_the_stages_do_not_cover_keeps_the_generic_step(numpy_backend, model, loss, opt):
    be = numpy_backend
    params = model.init_params(rng=be.host_generator(0), backend=be)
    assert fused_step(model, opt, params, ops=NumpyOps(), loss=loss, reduction="mean") is None
    assert select_step(model, opt, params, backend=be, loss=loss).name == "generic"


@pytest.mark.parametrize("name", ["array_api_strict", "torch"])
def test_backends_without_kernels_get_the_generic_step(name):
    try:
        be = anynet.get_backend(name)
    except anynet.errors.BackendUnavailableError as exc:
        pytest.skip(str(exc).split(". ")[0])
    model = MODELS["relu"]()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    assert be.kernels is None and ops_for(be) is None
    assert select_step(model, nn.adam(), params, backend=be).name == "generic"


def test_environment_switches(numpy_backend, monkeypatch):
    be = numpy_backend
    model = MODELS["relu"]()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    monkeypatch.setenv("ANYNET_NUMBA", "0")
    assert select_step(model, nn.adam(), params, backend=be).name == "fused cpu"
    monkeypatch.setenv("ANYNET_FAST", "0")
    assert select_step(model, nn.adam(), params, backend=be).name == "generic"
    assert anynet.fast.cpu_path()[0] == "generic"


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_labels_beyond_the_models_outputs_are_refused_before_any_step(numpy_backend, fast):
    """The fused steps index the logits by label (out of range: a write outside them, a
    crash); the generic loss would train on a zero one-hot row. Both refuse it first."""
    be = numpy_backend
    X = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    model, opt = nn.Sequential(nn.Dense(4, 3)), nn.adam()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    before = {k: v.copy() for k, v in params.items()}
    step = select_step(model, opt, params, backend=be, fast=fast)
    loader = anynet.data.DataLoader(X, np.arange(20) % 9, 8, backend=be, normalize=None)
    state = TrainState()
    with pytest.raises(anynet.errors.DataError, match=r"0 to 8 \(9 classes\), but the model has 3"):
        train(step, loader, epochs=1, state=state)
    assert state.step == 0
    for k in before:
        np.testing.assert_array_equal(step.params[k], before[k])
