"""The CUDA kernels of anynet.fast.cuda are twins of the generic engine.

Each kernel runs here twice where it can: built as host C++ (anynet.fast.cuda_host: every
machine with a C++ compiler, so CI checks the kernels' arithmetic and the launch layer without a
GPU), and launched by CuPy on a GPU (skipped without one). The whole GPU training step is checked
on the host build in tests/test_fast.py, and on the GPU in tests/test_cuda_step.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.fast import kernel_gather
from anynet.fast import numpy_mlp as F
from anynet.fast.cuda import ACTIVATIONS, NAME_EXPRESSIONS, NVRTC_OPTIONS, SOURCE
from anynet.fast.cuda_host import HostKernels, host_compiler
from anynet.nn import functional as G

# Every session: the cupy one has CuPy (a GPU, or NVRTC without one); the host build is quick.
pytestmark = pytest.mark.every_session
rng = np.random.default_rng(77)
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def _gpu():
    """CuPy and its device 0, or a skip with the reason."""
    try:
        be = anynet.get_backend("cupy")
    except anynet.errors.AnynetError as exc:
        pytest.skip(f"no CuPy GPU: {str(exc).split('. ')[0]}")
    return be


@pytest.fixture(scope="module", params=["host", "cupy"])
def target(request, tmp_path_factory):
    """``(kernels, to_device, to_host)`` for the host build and for CuPy on a GPU."""
    if request.param == "host":
        if host_compiler() is None:
            pytest.skip("no C++ compiler to build the CUDA kernels for the host")
        return HostKernels(tmp_path_factory.mktemp("cuda-host")), np.array, np.asarray
    be = _gpu()
    from anynet.fast.cuda import CupyKernels

    return CupyKernels(be.library, be.device), be.library.asarray, be.library.asnumpy


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def rand(*shape, dtype="float64", scale=3.0):
    return (rng.normal(size=shape) * scale).astype(dtype)


FORWARD = {
    "ReLU": lambda z: G.relu(z),
    "Sigmoid": lambda z: G.sigmoid(z),
    "Tanh": lambda z: G.tanh(z),
    "LeakyReLU": lambda z: G.leaky_relu(z, 0.2),
    None: lambda z: z,
}
BACKWARD = {
    "ReLU": lambda d, a: G.relu_backward(d, a),
    "Sigmoid": lambda d, a: G.sigmoid_backward(d, a),
    "Tanh": lambda d, a: G.tanh_backward(d, a),
    "LeakyReLU": lambda d, a: G.leaky_relu_backward(d, a, 0.2),
    None: lambda d, a: d,
}


@pytest.mark.parametrize("act", list(FORWARD), ids=str)
def test_bias_and_activation(target, dtype, act):
    K, dev, host = target
    Z, b = rand(17, 9, dtype=dtype), rand(9, dtype=dtype)
    Z[0, :3] = [-200.0, 0.0, 200.0]  # saturation and the kink
    with np.errstate(over="ignore"):
        want = FORWARD[act](Z + b)
    got = dev(Z)
    K.bias_act(got, dev(b), ACTIVATIONS[act], 0.2)
    np.testing.assert_allclose(host(got), want, **TOL[dtype])


def test_relu_treats_nan_as_the_generic_relu_does(target):
    K, dev, host = target
    Z = np.array([[np.nan, -1.0, 2.0]], dtype="float32")
    got = dev(Z)
    K.bias_act(got, dev(np.zeros(3, "float32")), ACTIVATIONS["ReLU"])
    np.testing.assert_array_equal(host(got), G.relu(Z))


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("act", list(BACKWARD), ids=str)
def test_activation_backward_with_dropout(target, dtype, act, p):
    K, dev, host = target
    A = FORWARD[act](rand(13, 7, dtype=dtype))
    dA = rand(13, 7, dtype=dtype)
    keep = rng.random((13, 7)) >= p
    d = dA * keep * (1.0 / (1.0 - p)) if p else dA
    want = BACKWARD[act](d.astype(dtype), A)
    got = dev(dA)
    K.act_backward(got, dev(A), ACTIVATIONS[act], 0.2, dev(keep) if p else None, p)
    np.testing.assert_allclose(host(got), want, **TOL[dtype])


def test_dropout_matches_the_generic_layer(target, dtype):
    K, dev, host = target
    layer, p = nn.Dropout(0.25), 0.25
    Z = rand(11, 6, dtype=dtype)
    be = anynet.get_backend("numpy")
    want, _ = layer.forward({}, Z, train=True, rng=be.generator(5))
    u = be.generator(5).uniform(Z.shape, dtype)  # the draw the layer made
    out, keep = dev(np.empty_like(Z)), dev(np.empty(Z.shape, bool))
    K.dropout(dev(Z), dev(u), p, out, keep)
    np.testing.assert_allclose(host(out), want, **TOL[dtype])
    np.testing.assert_array_equal(host(keep), u >= p)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    ("name", "generic"),
    [
        ("softmax_cross_entropy", nn.softmax_cross_entropy),
        ("sigmoid_cross_entropy", nn.sigmoid_binary_cross_entropy),
    ],
)
def test_losses(target, dtype, reduction, name, generic):
    K, dev, host = target
    Z = rand(19, 6, dtype=dtype, scale=10.0)
    Z[0, 0] = 1e4 if dtype == "float32" else 1e6  # the stable forms must survive this
    y = rng.integers(0, 6, size=19)
    want_loss, want_grad = generic(Z.copy(), y, reduction=reduction)
    got, rowloss = dev(Z), dev(np.empty(19, dtype))
    getattr(K, name)(got, dev(y.astype(np.int64)), rowloss, 1 / 19 if reduction == "mean" else 1.0)
    np.testing.assert_allclose(host(rowloss).sum(), float(want_loss), **TOL[dtype])
    np.testing.assert_allclose(host(got), want_grad, **TOL[dtype])


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.adam(0.01),
        lambda: nn.adam(0.01, weight_decay=0.1),
        lambda: nn.adamw(0.01, weight_decay=0.1),
        lambda: nn.sgd(0.1),
        lambda: nn.sgd(0.1, momentum=0.9, weight_decay=0.01),
        lambda: nn.sgd(0.1, momentum=0.9, nesterov=True),
    ],
    ids=["adam", "adam-l2", "adamw", "sgd", "momentum-l2", "nesterov"],
)
def test_optimizers_match_the_numpy_twins(target, dtype, make):
    """Several steps against :mod:`numpy_mlp`'s updates (tested against the generic engine),
    a few moments decaying into the subnormal range, where both flush them to zero."""
    K, dev, host = target
    kind, h = make().spec
    n = 60
    theta = rand(n, dtype=dtype, scale=1.0)
    grads = [rand(n, dtype=dtype, scale=1.0) for _ in range(5)]
    for g in grads:
        g[:5] = 0.0  # dead units: their moments only shrink
    tiny = float(np.finfo(dtype).tiny)
    m0 = np.zeros(n, dtype)
    m0[:5] = tiny * 1.05  # just above the smallest normal: subnormal after one step
    want = [theta.copy(), m0.copy(), m0.copy(), m0.copy()]  # theta, m, v, trace
    got = [dev(a) for a in want]
    tmp, mask = np.empty(n, dtype), np.empty(n, bool)
    for count, g in enumerate(grads, start=1):
        if kind == "sgd":
            trace = want[3] if h["momentum"] else None
            F.sgd_update_(want[0], g.copy(), trace, tmp, mask, **{k: h[k] for k in SGD_KEYS})
            K.sgd(
                got[0],
                dev(g),
                got[3] if h["momentum"] else None,
                tiny=tiny,
                **{k: h[k] for k in SGD_KEYS},
            )
        else:
            decoupled = kind == "adamw"
            F.adam_update_(
                want[0],
                g.copy(),
                want[1],
                want[2],
                count,
                tmp,
                mask,
                decoupled=decoupled,
                **{k: h[k] for k in ADAM_KEYS},
            )
            lr, wd = h["learning_rate"], h["weight_decay"]
            K.adam(
                got[0],
                dev(g),
                got[1],
                got[2],
                *F.adam_scalars(h, count),
                tiny=tiny,
                weight_decay=0.0 if decoupled else wd,
                decay=1 - lr * wd if decoupled else 1.0,
            )
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(host(g), w, **TOL[dtype])
    if kind == "adamw" or (kind == "adam" and not h["weight_decay"]):  # zero gradients there
        assert (host(got[1])[:5] == 0).all()  # flushed, not left subnormal


SGD_KEYS = ("learning_rate", "momentum", "nesterov", "weight_decay")
ADAM_KEYS = ("learning_rate", "beta1", "beta2", "eps", "weight_decay")


@pytest.mark.parametrize("normalize", ["unit", "symmetric", "standardize", None])
def test_gather_gives_the_loaders_batches_bit_for_bit(target, dtype, normalize):
    K, dev, host = target
    X = rng.integers(0, 256, size=(40, 4, 5), dtype=np.uint8)
    y = rng.integers(0, 3, size=40)
    be = anynet.get_backend("numpy")
    xp = np
    if not isinstance(K, HostKernels):  # the loader's own conversion, on the GPU's arrays
        be = _gpu()
        xp = be.library
    loader = anynet.data.DataLoader(X, y, 8, backend=be, dtype=dtype, normalize=normalize)
    resident = loader._X  # as the loader keeps it (flattened: 20 features)
    gather = kernel_gather(xp, K, resident, dtype, loader._convert, loader._mean, loader._inv_std)
    rows = rng.permutation(40)[:13]
    got = host(gather(dev(rows)))
    want = host(loader._convert(resident[dev(rows)]))
    assert got.shape == (13, 20) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)


def test_gather_declines_data_that_is_not_uint8(target):
    K, _, _ = target
    X = rng.random((10, 3)).astype("float32")
    assert kernel_gather(np, K, X, "float32", lambda a: a) is None


def test_the_kernels_compile_with_nvrtc_as_cupy_asks():
    """NVRTC, which compiles the kernels on a GPU machine, needs no GPU: where CuPy and NVRTC
    are installed (the cupy test session), compile exactly what CupyKernels compiles."""
    compiler = pytest.importorskip("cupy.cuda.compiler", exc_type=ImportError)
    program = getattr(compiler, "_NVRTCProgram", None)
    if program is None:
        pytest.skip("this CuPy has no _NVRTCProgram to compile with")
    try:
        prog = program(SOURCE, "anynet_kernels.cu", name_expressions=NAME_EXPRESSIONS)
    except Exception as exc:  # NVRTC's library missing: nothing to compile with here
        pytest.skip(f"NVRTC not available: {exc!r}")
    ptx, mapping = prog.compile((*NVRTC_OPTIONS, "-arch=compute_70"))
    assert set(mapping) == set(NAME_EXPRESSIONS)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert all(f".entry {mangled}" in ptx for mangled in mapping.values())


def test_a_wrongly_typed_argument_is_refused_on_the_host(target):
    K, _, _ = target
    if not isinstance(K, HostKernels):
        pytest.skip("a host-build check")
    Z = np.zeros((3, 4), "float32")
    with pytest.raises(TypeError, match="argument 1: expected a C-contiguous float32"):
        K.bias_act(Z, np.zeros(4, "float64"), 1)
    with pytest.raises(TypeError, match="argument 0: expected a C-contiguous"):
        K.bias_act(np.zeros((4, 3), "float32").T, np.zeros(4, "float32"), 1)


def test_cupy_launches_pass_each_scalar_as_its_c_type():
    """A GPU kernel reads its arguments as raw bytes: a Python float where it declares a float
    would be read as half a double. CupyKernels' launch layer, with recording stand-ins for
    the compiled functions (no GPU needed)."""
    from anynet.fast.cuda import CupyKernels

    K = object.__new__(CupyKernels)  # without compiling: no GPU here
    calls = []

    def recorder(name):
        return lambda grid, block, args: calls.append((name, grid, block, args))

    K._prepare({n: recorder(n) for n in NAME_EXPRESSIONS})
    Z = np.zeros((300, 5), np.float32)
    K.bias_act(Z, np.zeros(5, np.float32), ACTIVATIONS["LeakyReLU"], 0.2)
    name, grid, block, args = calls[-1]
    assert (name, grid, block) == ("bias_act<float>", (6,), (256,))
    assert [type(a) for a in args] == [
        np.ndarray,
        np.ndarray,
        np.int64,
        np.int64,
        np.int32,
        np.float32,
    ]
    assert args[2:] == (300, 5, 4, np.float32(0.2))
    big = np.zeros(2 * 10**6)  # more elements than MAX_BLOCKS * THREADS
    K.adam(big, big, big, big, 0.1, 0.001, 1e-3, 1e-8, tiny=1e-300)
    name, grid, _, args = calls[-1]
    assert name == "adam<double>" and grid == (CupyKernels.MAX_BLOCKS,)  # the loop does the rest
    assert all(type(a) is np.float64 for a in args[5:])
