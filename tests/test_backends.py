"""Backend selection, errors, host/device round trips and random generators."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import anynet
from anynet.backends import BACKEND_NAMES
from anynet.errors import BackendError, BackendUnavailableError


def test_default_is_numpy(monkeypatch):
    monkeypatch.delenv("ANYNET_BACKEND", raising=False)
    assert anynet.get_backend().name == "numpy"


@pytest.mark.needs_backend("array_api_strict")
def test_environment_variable_picks_the_backend(monkeypatch):
    monkeypatch.setenv("ANYNET_BACKEND", "array_api_strict")
    assert anynet.get_backend().name == "array_api_strict"


def test_bad_environment_variable_is_named_in_the_error(monkeypatch):
    monkeypatch.setenv("ANYNET_BACKEND", "tensorflow")
    with pytest.raises(BackendError, match="ANYNET_BACKEND environment variable"):
        anynet.get_backend()


@pytest.mark.parametrize(
    "name", ["tensorflow", "", "numpy:gpu", "cupy:x", "torch:tpu", "torch:cuda:x", "torch:cpu:1"]
)
def test_unknown_names_and_devices_are_clear_value_errors(name):
    with pytest.raises(ValueError) as info:
        anynet.get_backend(name or ":")
    assert isinstance(info.value, anynet.AnynetError)


def test_a_backend_passes_through():
    be = anynet.get_backend("numpy")
    assert anynet.get_backend(be) is be


def test_missing_library_names_the_pip_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail here
    with pytest.raises(BackendUnavailableError, match=r"pip install 'anynet-nn\[cuda12\]'") as info:
        anynet.get_backend("cupy")
    assert "not installed" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_cupy_without_a_gpu_is_one_clear_error(monkeypatch):
    """Importing CuPy works on a machine without a GPU; the backend must probe the device.

    A stand-in CuPy whose runtime raises as real CuPy does without a driver exercises that probe
    here; the cupy nox session repeats it with the real CuPy (test_real_cupy_without_gpu)."""

    class CUDARuntimeError(RuntimeError):
        pass

    def no_device():
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.__version__ = "14.2.0"
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", types.ModuleType("compat_cupy"))
    with pytest.raises(BackendUnavailableError, match="no CUDA device") as info:
        anynet.get_backend("cupy")
    assert "cudaErrorNoDevice" in str(info.value)
    assert "numpy" in str(info.value)  # says what to do instead


@pytest.mark.every_session
def test_real_cupy_without_gpu():
    cupy = pytest.importorskip("cupy")
    try:
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        pytest.skip("this machine has a GPU: the no-GPU error cannot be shown here")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        anynet.get_backend("cupy")


@pytest.mark.every_session
def test_status_covers_every_backend_truthfully():
    status = {s.name: s for s in anynet.backend_status()}
    assert tuple(status) == BACKEND_NAMES
    assert status["numpy"].available and status["numpy"].devices == ("cpu",)
    for s in status.values():
        assert s.available == (s.reason == ""), s
        if s.available:
            anynet.get_backend(s.name)  # what status calls available does work
    assert anynet.available_backends() == [s.name for s in status.values() if s.available]


def test_host_round_trip_and_dtype(backend):
    host = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    x = backend.asarray(host, dtype="float32")
    assert x.dtype == backend.xp.float32
    assert backend.to_numpy(x).dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(x), host.astype(np.float32))
    assert backend.to_numpy(backend.asarray(host)).dtype == np.float64


def test_asarray_takes_the_backends_own_dtypes(backend):
    for name in ("float32", "float64", "int64", "uint8"):
        x = backend.asarray(np.arange(3), dtype=backend.dtype(name))
        assert x.dtype == backend.dtype(name)


def test_asarray_copies(backend):
    host = np.zeros(3)
    x = backend.asarray(host)
    host[0] = 1.0
    assert backend.to_numpy(x)[0] == 0.0


def test_generator_is_seeded_and_on_the_device(backend):
    a, b = backend.generator(3), backend.generator(3)
    pa, pb = backend.to_numpy(a.permutation(50)), backend.to_numpy(b.permutation(50))
    np.testing.assert_array_equal(pa, pb)
    assert sorted(pa) == list(range(50))
    assert a.permutation(5).dtype == backend.xp.int64
    u = a.uniform((4, 3), "float32")
    assert u.dtype == backend.xp.float32 and tuple(u.shape) == (4, 3)
    host_u = backend.to_numpy(u)
    assert ((host_u >= 0) & (host_u < 1)).all()
    assert not np.array_equal(pa, backend.to_numpy(backend.generator(4).permutation(50)))


def test_generator_state_restores_the_stream(backend):
    if backend.name == "cupy":
        pytest.skip("CuPy's RandomState has no state to save (documented)")
    g = backend.generator(11)
    state = g.get_state()
    first = backend.to_numpy(g.permutation(20))
    g.set_state(state)
    np.testing.assert_array_equal(backend.to_numpy(g.permutation(20)), first)


def test_synchronize_and_repr(backend):
    backend.synchronize()
    assert backend.spec in repr(backend)
    assert anynet.get_backend(backend.spec).device == backend.device
