"""The NumPy fast path is the twin of the generic engine: equal results on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.fast import fused_step
from anynet.fast import numpy_mlp as F
from anynet.fast.cuda_host import HostKernels, host_compiler
from anynet.fast.device_mlp import DeviceMLPStep
from anynet.fast.kernels import KERNELS
from anynet.nn import functional as G
from anynet.training import TrainState, train

rng = np.random.default_rng(2024)
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def rand(*shape, dtype="float64", scale=3.0):
    return (rng.normal(size=shape) * scale).astype(dtype)


# --- each in-place function against its generic twin -----------------------------------------


@pytest.mark.parametrize(
    ("fast", "generic", "needs_tmp"),
    [(F.relu_, G.relu, False), (F.sigmoid_, G.sigmoid, True), (F.tanh_, G.tanh, False)],
)
def test_activation_twins(dtype, fast, generic, needs_tmp):
    Z = rand(17, 9, dtype=dtype)
    Z[0, :3] = [-200.0, 0.0, 200.0]  # saturation and the kink
    want = generic(Z.copy())
    got = Z.copy()
    with np.errstate(over="ignore"):
        fast(got, np.empty_like(got)) if needs_tmp else fast(got)
    np.testing.assert_allclose(got, want, **TOL[dtype])


def test_relu_twins_treat_nan_as_the_generic_relu():
    Z = np.array([[np.nan, -1.0, 0.0, 2.0]])
    got = Z.copy()
    F.relu_(got)
    np.testing.assert_array_equal(got, G.relu(Z))
    if KERNELS is not None:
        got = Z.copy()
        KERNELS.bias_relu(got, np.zeros(4))
        np.testing.assert_array_equal(got, G.relu(Z))


def test_leaky_relu_twins(dtype):
    Z, dA = rand(11, 5, dtype=dtype), rand(11, 5, dtype=dtype)
    got = Z.copy()
    F.leaky_relu_(got, 0.1, np.empty_like(got))
    np.testing.assert_allclose(got, G.leaky_relu(Z, 0.1), **TOL[dtype])
    dgot = dA.copy()
    F.leaky_relu_backward_(dgot, got, 0.1, np.empty_like(got), np.empty(got.shape, bool))
    np.testing.assert_allclose(dgot, G.leaky_relu_backward(dA, got, 0.1), **TOL[dtype])


@pytest.mark.parametrize(
    ("fast", "generic", "forward", "kind"),
    [
        (F.relu_backward_, G.relu_backward, G.relu, "mask"),
        (F.sigmoid_backward_, G.sigmoid_backward, G.sigmoid, "tmp"),
        (F.tanh_backward_, G.tanh_backward, G.tanh, "tmp"),
    ],
)
def test_activation_backward_twins(dtype, fast, generic, forward, kind):
    A = forward(rand(13, 7, dtype=dtype))
    dA = rand(13, 7, dtype=dtype)
    got = dA.copy()
    scratch = np.empty(A.shape, bool) if kind == "mask" else np.empty_like(A)
    fast(got, A, scratch)
    np.testing.assert_allclose(got, generic(dA, A), **TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    ("fast", "generic"),
    [
        (F.softmax_cross_entropy_, nn.softmax_cross_entropy),
        (F.sigmoid_cross_entropy_, nn.sigmoid_binary_cross_entropy),
    ],
)
def test_loss_twins(dtype, reduction, fast, generic):
    Z = rand(19, 6, dtype=dtype, scale=10.0)
    Z[0, 0] = 1e4 if dtype == "float32" else 1e6  # the stable forms must survive this
    y = rng.integers(0, 6, size=19)
    want_loss, want_grad = generic(Z.copy(), y, reduction=reduction)
    got = Z.copy()
    scale = 1 / 19 if reduction == "mean" else 1.0
    scratch = np.empty((19, 1), dtype) if fast is F.softmax_cross_entropy_ else np.empty_like(Z)
    loss = fast(got, y, scale, scratch)
    np.testing.assert_allclose(loss, float(want_loss), **TOL[dtype])
    np.testing.assert_allclose(got, want_grad, **TOL[dtype])


def _generic_optimizer_step(opt, theta, grads_seq):
    params = {"p": theta.copy()}
    state = opt.init(params)
    for g in grads_seq:
        updates, state = opt.update({"p": g.copy()}, state, params)
        params = nn.apply_updates(params, updates)
    return params["p"]


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: nn.adam(0.01), "adam"),
        (lambda: nn.adam(0.01, weight_decay=0.1), "adam"),
        (lambda: nn.adamw(0.01, weight_decay=0.1), "adamw"),
        (lambda: nn.sgd(0.1), "sgd"),
        (lambda: nn.sgd(0.1, momentum=0.9, weight_decay=0.01), "sgd"),
        (lambda: nn.sgd(0.1, momentum=0.9, nesterov=True), "sgd"),
    ],
)
def test_optimizer_twins(dtype, make, kind):
    opt = make()
    theta = rand(50, dtype=dtype, scale=1.0)
    grads = [rand(50, dtype=dtype, scale=1.0) for _ in range(6)]
    want = _generic_optimizer_step(opt, theta, grads)
    got, tmp, mask = theta.copy(), np.empty_like(theta), np.empty(theta.shape, bool)
    h = opt.spec[1]
    m, v, t = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for count, g in enumerate(grads, start=1):
        g = g.copy()
        if kind == "sgd":
            F.sgd_update_(
                got,
                g,
                t if h["momentum"] else None,
                tmp,
                mask,
                learning_rate=h["learning_rate"],
                momentum=h["momentum"],
                nesterov=h["nesterov"],
                weight_decay=h["weight_decay"],
            )
        else:
            F.adam_update_(
                got,
                g,
                m,
                v,
                count,
                tmp,
                mask,
                learning_rate=h["learning_rate"],
                beta1=h["beta1"],
                beta2=h["beta2"],
                eps=h["eps"],
                weight_decay=h["weight_decay"],
                decoupled=kind == "adamw",
            )
    np.testing.assert_allclose(got, want, **TOL[dtype])


def _adam_numba(theta, g, m, v, count, tmp, mask, *, learning_rate, beta1, beta2, eps):
    """The numba Adam kernel with :func:`adam_update_`'s signature."""
    h = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, eps=eps)
    scalars = (*F.adam_scalars(h, count), np.finfo(theta.dtype).tiny)
    KERNELS.adam(theta, g, m, v, *map(theta.dtype.type, scalars))


@pytest.mark.parametrize("impl", ["numpy", "numba"])
def test_adam_flushes_subnormal_moments_and_keeps_nan(dtype, impl):
    """A parameter whose gradient stays zero has its moments decay geometrically into the
    subnormal range, where x86 arithmetic is ~100x slower; the fused Adam flushes them to zero.
    """
    if impl == "numba" and KERNELS is None:
        pytest.skip("numba not installed (anynet[fast])")
    update = F.adam_update_ if impl == "numpy" else _adam_numba
    tiny = np.finfo(dtype).tiny
    n = 6
    theta = np.ones(n, dtype)
    m = np.array([100 * tiny, -100 * tiny, 0.5, 2 * tiny, np.nan, 0.0], dtype)
    v = np.array([100 * tiny, 3 * tiny, 0.25, 2 * tiny, 1.0, 0.0], dtype)
    tmp, mask = np.empty(n, dtype), np.empty(n, bool)
    generic_m = m.copy()
    for count in range(1, 200):
        g = np.zeros(n, dtype)
        update(theta, g, m, v, count, tmp, mask, learning_rate=1e-3, beta1=0.9, beta2=0.9, eps=1e-8)
        generic_m *= np.dtype(dtype).type(0.9)  # Adam's decay, unflushed
        assert not np.any((m != 0) & (np.abs(m) < tiny)), f"subnormal m at step {count}: {m}"
        assert not np.any((v != 0) & (v < tiny)), f"subnormal v at step {count}: {v}"
    # Without the flush the decayed moments would sit in the subnormal range for good.
    assert np.any((generic_m != 0) & (np.abs(generic_m) < tiny))
    assert np.isnan(m[4])
    assert m[2] != 0  # a normal moment still decays (0.5 * 0.9**199 ~ 4e-10)
    assert np.all(np.isfinite(theta[[0, 1, 2, 3, 5]]))


def test_sgd_flushes_a_subnormal_momentum_trace(dtype):
    tiny = np.finfo(dtype).tiny
    theta, trace = np.ones(3, dtype), np.array([50 * tiny, 0.5, np.nan], dtype)
    tmp, mask = np.empty(3, dtype), np.empty(3, bool)
    for _ in range(100):
        F.sgd_update_(
            theta,
            np.zeros(3, dtype),
            trace,
            tmp,
            mask,
            learning_rate=0.1,
            momentum=0.9,
            nesterov=False,
            weight_decay=0.0,
        )
        assert not (trace[0] != 0 and abs(trace[0]) < tiny)
    assert trace[0] == 0 and trace[1] > 0 and np.isnan(trace[2])


# --- numba kernels against their NumPy twins (where numba is installed) --------------------

needs_numba = pytest.mark.skipif(KERNELS is None, reason="numba not installed (anynet[fast])")


@needs_numba
def test_adam_kernel_twin(dtype):
    theta, m = rand(300, dtype=dtype, scale=1.0), rand(300, dtype=dtype, scale=0.1)
    v = np.abs(rand(300, dtype=dtype, scale=0.1))
    g = rand(300, dtype=dtype, scale=1.0)
    want = [a.copy() for a in (theta, g, m, v)]
    F.adam_update_(
        *want,
        7,
        np.empty_like(theta),
        np.empty(theta.shape, bool),
        learning_rate=0.01,
        beta1=0.9,
        beta2=0.99,
        eps=1e-6,
    )
    got = [a.copy() for a in (theta, g, m, v)]
    c1, c2 = 1 / (1 - 0.9**7), 1 / np.sqrt(1 - 0.99**7)
    t = np.dtype(dtype).type
    scalars = (1 - 0.9, 1 - 0.99, 0.01 * c1 / c2, 1e-6 / c2, np.finfo(dtype).tiny)
    KERNELS.adam(*got, *map(t, scalars))
    for a, b in zip(got[:1] + got[2:], want[:1] + want[2:], strict=True):
        np.testing.assert_allclose(a, b, **TOL[dtype])


@needs_numba
def test_relu_kernel_twins(dtype):
    Z, b, dA = rand(33, 17, dtype=dtype), rand(17, dtype=dtype), rand(33, 17, dtype=dtype)
    got = Z.copy()
    KERNELS.bias_relu(got, b)
    np.testing.assert_allclose(got, G.relu(Z + b), **TOL[dtype])
    dgot = dA.copy()
    KERNELS.relu_backward(dgot, got)
    np.testing.assert_allclose(dgot, G.relu_backward(dA, got), **TOL[dtype])


@needs_numba
def test_softmax_cross_entropy_kernel_twin(dtype):
    Z, y = rand(37, 10, dtype=dtype, scale=20.0), np.random.default_rng(4).integers(0, 10, 37)
    Z[0] = 1e4  # all-equal huge logits: the shift keeps exp finite
    want, got = Z.copy(), Z.copy()
    want_loss = F.softmax_cross_entropy_(want, y, 1 / 37, np.empty((37, 1), dtype))
    got_loss = KERNELS.softmax_cross_entropy(got, y, np.dtype(dtype).type(1 / 37))
    np.testing.assert_allclose(got, want, **TOL[dtype])
    np.testing.assert_allclose(got_loss, want_loss, **TOL[dtype])
    bad = Z.copy()
    bad[3, 2] = np.nan
    assert np.isnan(KERNELS.softmax_cross_entropy(bad, y, np.dtype(dtype).type(1.0)))


# --- the whole fused step against the generic engine -------------------------------------


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
}
LOSS_FOR = {"log_softmax": "nll", "seed-nobias": "sigmoid_binary_cross_entropy"}
OPTIMIZERS = {
    "adam": lambda: nn.adam(0.01),
    "adamw": lambda: nn.adamw(0.01, weight_decay=0.05),
    "sgd-nesterov": lambda: nn.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
}


def run(model_name, opt_name, dtype, *, fast, reduction="mean", l1=0.0, l2=0.0, epochs=3):
    be = anynet.get_backend("numpy")
    data = np.random.default_rng(7)
    X = data.normal(size=(103, 12)).astype(dtype)
    y = data.integers(0, 5, size=103)
    model = MODELS[model_name]()
    opt = OPTIMIZERS[opt_name]()
    params = model.init_params(rng=be.host_generator(3), backend=be, dtype=dtype)
    state = TrainState(params=params, opt_state=opt.init(params))
    loader = anynet.data.DataLoader(X, y, 16, backend=be, seed=5, dtype=dtype, normalize=None)
    train(
        model,
        opt,
        state,
        loader,
        epochs=epochs,
        backend=be,
        seed=11,
        loss=LOSS_FOR.get(model_name, "softmax_cross_entropy"),
        l1=l1,
        l2=l2,
        reduction=reduction,
        fast=fast,
    )
    return state


@pytest.fixture(params=["numba", "numpy", "cuda-host"])
def kernels(request, monkeypatch, tmp_path_factory):
    """Run the fused step with the numba kernels, without them (NumPy passes only), and as the
    GPU step (anynet.fast.device_mlp) with its CUDA kernels built for the host."""
    if request.param == "numba":
        if KERNELS is None:
            pytest.skip("numba not installed (anynet[fast])")
    elif request.param == "numpy":
        monkeypatch.setattr(F, "KERNELS", None)
    else:
        if host_compiler() is None:
            pytest.skip("no C++ compiler to build the CUDA kernels for the host")
        host = HostKernels(tmp_path_factory.getbasetemp() / "cuda-host")

        def device_step(model, optimizer, backend, params, opt_state, *, loss, reduction):
            plan = F.parse_mlp(model, loss)
            dtype = str(next(iter(params.values())).dtype)
            args = (model, plan, optimizer, opt_state, params, dtype, loss, reduction)
            return DeviceMLPStep(*args, xp=np, kernels=host, name="fused cuda-host")

        monkeypatch.setattr(anynet.fast, "fused_step", device_step)
    return request.param


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_fused_training_equals_generic_training(dtype, model_name, opt_name, kernels):
    kw = dict(l1=1e-4, l2=1e-3) if model_name == "relu" else {}
    if model_name == "seed-nobias":
        kw = dict(reduction="sum", l2=0.5)
    fast = run(model_name, opt_name, dtype, fast=True, **kw)
    slow = run(model_name, opt_name, dtype, fast=False, **kw)
    names = {"numba": "fused numpy + numba", "numpy": "fused numpy", "cuda-host": "fused cuda-host"}
    assert fast.path == names[kernels]
    assert slow.path == "generic"
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    for k in slow.params:
        np.testing.assert_allclose(fast.params[k], slow.params[k], **tol, err_msg=k)
    np.testing.assert_allclose(fast.history["loss"], slow.history["loss"], **tol)
    assert fast.step == slow.step


def test_fused_optimizer_state_has_the_generic_structure():
    fast = run("relu", "adam", "float64", fast=True)
    slow = run("relu", "adam", "float64", fast=False)
    assert type(fast.opt_state) is type(slow.opt_state)
    for a, b in zip(fast.opt_state, slow.opt_state, strict=True):
        assert type(a) is type(b)
    adam_fast, adam_slow = fast.opt_state[1], slow.opt_state[1]
    assert adam_fast.count == adam_slow.count
    for k in adam_slow.mu:
        np.testing.assert_allclose(adam_fast.mu[k], adam_slow.mu[k], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(adam_fast.nu[k], adam_slow.nu[k], rtol=1e-10, atol=1e-14)


def test_resuming_into_the_fused_step_continues_the_generic_state():
    """A state from the generic path (say, a checkpoint) continues in the fused one."""
    straight = run("relu", "adam", "float64", fast=False, epochs=4)
    halfway = run("relu", "adam", "float64", fast=False, epochs=2)
    be = anynet.get_backend("numpy")
    data = np.random.default_rng(7)
    X, y = data.normal(size=(103, 12)), data.integers(0, 5, size=103)
    loader = anynet.data.DataLoader(X, y, 16, backend=be, seed=5, dtype="float64", normalize=None)
    train(
        MODELS["relu"](),
        OPTIMIZERS["adam"](),
        halfway,
        loader,
        epochs=4,
        backend=be,
        seed=11,
        fast=True,
    )
    for k in straight.params:
        np.testing.assert_allclose(halfway.params[k], straight.params[k], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    ("model", "loss", "opt", "where"),
    [
        (nn.Sequential(nn.Dense(4, 3), nn.Softmax()), "softmax_cross_entropy", nn.adam(), "numpy"),
        (nn.Sequential(nn.Dense(4, 3)), "mse", nn.adam(), "numpy"),
        (nn.Sequential(nn.Dense(4, 3)), "softmax_cross_entropy", nn.adam(lambda c: 0.1), "numpy"),
        (nn.Sequential(nn.Dense(4, 3), nn.ReLU()), "softmax_cross_entropy", nn.adam(), "numpy"),
        (nn.Sequential(nn.Dense(4, 3)), "softmax_cross_entropy", nn.adam(), "torch"),
    ],
    ids=["softmax-layer", "mse", "lr-schedule", "activation-last", "not-numpy"],
)
def test_unsupported_cases_keep_the_generic_path(model, loss, opt, where):
    if where == "torch":
        pytest.importorskip("torch")
    be = anynet.get_backend(where)
    params = model.init_params(rng=be.host_generator(0), backend=be)
    assert fused_step(model, opt, be, params, opt.init(params), loss=loss, reduction="mean") is None


def test_environment_switch_turns_the_fast_path_off(monkeypatch):
    be = anynet.get_backend("numpy")
    model = MODELS["relu"]()
    opt = nn.adam()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    args = (model, opt, be, params, opt.init(params))
    assert fused_step(*args, loss="softmax_cross_entropy", reduction="mean") is not None
    monkeypatch.setenv("ANYNET_FAST", "0")
    assert fused_step(*args, loss="softmax_cross_entropy", reduction="mean") is None


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_labels_beyond_the_models_outputs_are_refused_before_any_step(fast):
    """The fast paths index the logits by label (out of range: a write outside them, a crash);
    the generic loss would train on a zero one-hot row. Both refuse it first."""
    be = anynet.get_backend("numpy")
    X = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    model, opt = nn.Sequential(nn.Dense(4, 3)), nn.adam()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    before = {k: v.copy() for k, v in params.items()}
    state = TrainState(params=params, opt_state=opt.init(params))
    loader = anynet.data.DataLoader(X, np.arange(20) % 9, 8, backend=be, normalize=None)
    with pytest.raises(anynet.errors.DataError, match=r"0 to 8 \(9 classes\), but the model has 3"):
        train(model, opt, state, loader, epochs=1, backend=be, seed=0, fast=fast)
    assert state.step == 0
    for k in before:
        np.testing.assert_array_equal(state.params[k], before[k])
