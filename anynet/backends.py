"""Backends: which array library runs the math, and on which device.

A :class:`Backend` is the one place where anynet meets a concrete array library. It carries the
Array API namespace ``xp`` and the ``device``, moves host (NumPy) arrays in and out, owns random
generators of its own library, and waits for its device. Everything above it — the engine in
:mod:`anynet.nn`, the data loader, the estimator — speaks only ``xp``.

The libraries are imported lazily, so ``import anynet`` costs no CuPy or PyTorch import, and a
missing library is reported as one :class:`~anynet.errors.BackendUnavailableError` that names
the pip extra to install.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anynet.errors import BackendError, BackendUnavailableError

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendStatus",
    "Generator",
    "available_backends",
    "backend_of",
    "backend_status",
    "derive_seed",
    "get_backend",
    "host_dtype",
    "to_numpy",
]

#: The backend names anynet knows, in the order ``anynet info`` lists them.
BACKEND_NAMES = ("numpy", "array_api_strict", "torch", "cupy")

ENV_VAR = "ANYNET_BACKEND"

# What to pip-install for each library, named in every "not installed" error. The distribution
# is anynet-nn: PyPI's `anynet` is an unrelated library, which `pip install 'anynet[...]'` installs.
_INSTALL_HINT = {
    "numpy": "pip install numpy",
    "array_api_strict": "pip install 'anynet-nn[strict]'",
    "torch": "pip install 'anynet-nn[torch]'",
    "cupy": "pip install 'anynet-nn[cuda12]' (CUDA 12) or 'anynet-nn[cuda13]' (CUDA 13)",
}

_NAME_HELP = (
    "expected 'numpy', 'cupy' or 'cupy:N', 'torch', 'torch:cuda' or 'torch:cuda:N', "
    "or 'array_api_strict' (optionally ':device1' or ':device2', its test devices)"
)


def _floating(name: str, xp: Any) -> Any:
    """The ``xp`` dtype for a dtype given by name or as an ``xp`` dtype."""
    if isinstance(name, str):
        try:
            return getattr(xp, name)
        except AttributeError:
            raise BackendError(f"dtype {name!r} is not a dtype of {xp.__name__}") from None
    return name


class Generator:
    """A seeded random generator that draws on a backend's device.

    It wraps the backend library's own generator, so per-step randomness (shuffles, dropout)
    never leaves the device. Same seed, same backend: same stream.
    """

    def __init__(self, backend: Backend, seed: int | None):
        self.backend = backend
        self.seed = seed
        self._impl = backend._make_generator(seed)

    def permutation(self, n: int) -> Any:
        """A random permutation of ``range(n)`` as an int64 array on the device."""
        return self.backend._permutation(self._impl, n)

    def uniform(self, shape: tuple[int, ...], dtype: Any = "float32") -> Any:
        """Samples from U[0, 1) of the given shape and dtype on the device."""
        dtype = _floating(dtype, self.backend.xp)
        return self.backend._uniform(self._impl, tuple(shape), dtype)

    def get_state(self) -> Any:
        """The generator's state, as the library reports it (for checkpoints)."""
        return self.backend._get_state(self._impl)

    def set_state(self, state: Any) -> None:
        """Restore a state returned by :meth:`get_state`."""
        self.backend._set_state(self._impl, state)

    def __repr__(self) -> str:
        return f"Generator(backend={self.backend.name!r}, seed={self.seed!r})"


@dataclass(frozen=True, eq=False)
class Backend:
    """An array library and a device to run anynet's math on.

    Do not build one directly: ask :func:`get_backend`.

    Attributes
    ----------
    name : str
        ``'numpy'``, ``'cupy'``, ``'torch'`` or ``'array_api_strict'``.
    xp : module
        The Array API namespace (through array-api-compat where the library needs it).
    device : object
        The library's device object; pass it as ``device=`` to every allocation.
    kernels : str or None
        Which family of anynet's fused kernels runs on this backend's arrays (see
        :mod:`anynet.fast`): ``'cpu'`` for NumPy arrays, ``'cuda'`` for CuPy arrays on a CUDA
        GPU, ``None`` where only the generic engine runs. Code above this module asks this,
        never the backend's name.
    pinned_streaming : bool
        Whether the data loader can stream through pinned host memory and a copy stream.
    """

    name: str
    xp: Any
    device: Any
    library: Any = field(repr=False)
    kernels: str | None = field(repr=False)
    pinned_streaming: bool = field(repr=False)
    _free_device_memory: Callable[[], int | None] = field(repr=False)
    _make_generator: Callable[[int | None], Any] = field(repr=False)
    _permutation: Callable[[Any, int], Any] = field(repr=False)
    _uniform: Callable[[Any, tuple[int, ...], Any], Any] = field(repr=False)
    _get_state: Callable[[Any], Any] = field(repr=False)
    _set_state: Callable[[Any, Any], None] = field(repr=False)
    _asarray: Callable[[np.ndarray], Any] = field(repr=False)
    _to_numpy: Callable[[Any], np.ndarray] = field(repr=False)
    _synchronize: Callable[[], None] = field(repr=False)

    @property
    def spec(self) -> str:
        """The name :func:`get_backend` takes to rebuild this backend, e.g. ``'cupy:1'``."""
        return _spec(self.name, self.device)

    def dtype(self, name: str | Any) -> Any:
        """The ``xp`` dtype for a name such as ``'float32'`` (an ``xp`` dtype passes through)."""
        return _floating(name, self.xp)

    def asarray(self, host: Any, dtype: str | Any | None = None) -> Any:
        """Copy a host array (anything NumPy accepts) to this backend's device.

        With ``dtype``, the cast happens on the host, with NumPy, before the copy: the same host
        data then gives bit-identical device arrays on every backend.
        """
        host = np.asarray(host)
        if dtype is not None:
            host = host.astype(_numpy_dtype(dtype), copy=False)
        return self._asarray(host)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy an array of this backend to a NumPy array on the host."""
        return self._to_numpy(x)

    def generator(self, seed: int | None = None) -> Generator:
        """A new random generator of this backend's library, drawing on its device."""
        return Generator(self, seed)

    def host_generator(self, seed: int | None = None) -> np.random.Generator:
        """A host NumPy generator: initial weights come from it on every backend, so the same
        seed gives the same weights everywhere."""
        return np.random.default_rng(seed)

    def synchronize(self) -> None:
        """Wait until the device has finished all queued work (a no-op on the CPU)."""
        self._synchronize()

    def free_device_memory(self) -> int | None:
        """Free bytes on the device, or ``None`` for the CPU, whose memory is the data's home
        anyway."""
        return self._free_device_memory()

    def __repr__(self) -> str:
        return f"Backend({self.spec!r})"


def derive_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed for sub-stream ``stream`` of ``seed`` (an epoch, a batch, a purpose).

    Randomness named this way needs no generator state saved: a run resumed at epoch k, batch
    b draws what an uninterrupted run drew there. 32 bits because every backend's generator
    takes that (CuPy's RandomState among them).
    """
    return int(np.random.SeedSequence(seed, spawn_key=stream).generate_state(1)[0])


def host_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype for a dtype given by name or as any backend's dtype object."""
    return _numpy_dtype(dtype)


def _numpy_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, str):
        return np.dtype(dtype)
    try:  # NumPy's own dtypes and scalar types, and anything NumPy understands
        return np.dtype(dtype)
    except TypeError:
        pass
    # Another library's dtype (torch.float32, array_api_strict.float32): its last dotted name
    # is the NumPy name for every library anynet knows.
    try:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])
    except TypeError:
        raise BackendError(f"cannot map dtype {dtype!r} to a host dtype") from None


def _spec(name: str, device: Any) -> str:
    if name == "cupy":
        return f"cupy:{device.id}"
    if name == "torch":
        return "torch" if device.type == "cpu" else f"torch:{device}"
    if name == "array_api_strict":
        label = str(device).split("'")[1] if "'" in str(device) else str(device)
        return "array_api_strict" if label == "CPU_DEVICE" else f"array_api_strict:{label}"
    return name


def _import(module: str, backend: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {backend!r} needs the {module.split('.')[0]} library, which is not "
            f"installed ({exc}). Install it with: {_INSTALL_HINT[backend]}"
        ) from None


# --- the four libraries --------------------------------------------------------------------


def _numpy_backend(device: str | None) -> Backend:
    if device not in (None, "cpu"):
        raise BackendError(f"backend 'numpy' runs on the CPU only; got device {device!r}")
    xp = _import("array_api_compat.numpy", "numpy")

    def set_state(g: np.random.Generator, state: Any) -> None:
        g.bit_generator.state = state

    return Backend(
        name="numpy",
        xp=xp,
        device="cpu",
        library=np,
        kernels="cpu",
        pinned_streaming=False,
        _free_device_memory=lambda: None,
        _make_generator=np.random.default_rng,
        _permutation=lambda g, n: g.permutation(n),
        _uniform=lambda g, shape, dtype: g.random(shape, dtype=dtype),
        _get_state=lambda g: g.bit_generator.state,
        _set_state=set_state,
        _asarray=lambda host: np.array(host, copy=True),
        _to_numpy=lambda x: np.asarray(x),
        _synchronize=lambda: None,
    )


def _strict_backend(device: str | None) -> Backend:
    xp = _import("array_api_strict", "array_api_strict")
    label = device or "CPU_DEVICE"
    known = [str(d).split("'")[1] for d in xp.__array_namespace_info__().devices()]
    if label not in known:
        raise BackendError(
            f"array_api_strict has no device {label!r}; expected one of {', '.join(known)}"
        )
    dev = xp.Device(label)
    cpu = xp.Device("CPU_DEVICE")

    # array-api-strict has no random numbers: draw on the host with NumPy and copy over.
    def permutation(g: np.random.Generator, n: int) -> Any:
        return xp.asarray(g.permutation(n), device=dev)

    def uniform(g: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Any:
        host = g.random(shape, dtype=np.float64).astype(_numpy_dtype(dtype))
        return xp.asarray(host, device=dev)

    def set_state(g: np.random.Generator, state: Any) -> None:
        g.bit_generator.state = state

    return Backend(
        name="array_api_strict",
        xp=xp,
        device=dev,
        library=xp,
        kernels=None,
        pinned_streaming=False,
        _free_device_memory=lambda: None,
        _make_generator=np.random.default_rng,
        _permutation=permutation,
        _uniform=uniform,
        _get_state=lambda g: g.bit_generator.state,
        _set_state=set_state,
        _asarray=lambda host: xp.asarray(host, device=dev, copy=True),
        # NumPy refuses arrays on array-api-strict's test devices: come home over DLPack.
        _to_numpy=lambda x: np.from_dlpack(x.to_device(cpu)).copy(),
        _synchronize=lambda: None,
    )


def _torch_backend(device: str | None) -> Backend:
    kind, _, index = (device or "cpu").partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise BackendError(
            f"backend 'torch:{device}': anynet runs PyTorch on 'cpu' or 'cuda' ('cuda:N'); "
            f"{_NAME_HELP}"
        )
    torch = _import("torch", "torch")
    xp = _import("array_api_compat.torch", "torch")
    dev = torch.device(device or "cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"backend 'torch:{device}' needs a CUDA device, but PyTorch sees none "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
                "Use backend 'torch' for the CPU, or install a CUDA build of PyTorch on a "
                "machine with an NVIDIA GPU."
            )
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"backend 'torch:{device}': there are only {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
        dev = torch.device("cuda", index)

    def make_generator(seed: int | None) -> Any:
        g = torch.Generator(device=dev)
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
        return g

    def asarray(host: np.ndarray) -> Any:
        return torch.from_numpy(np.array(host, copy=True)).to(dev)

    def synchronize() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def free_device_memory() -> int | None:
        return int(torch.cuda.mem_get_info(dev)[0]) if dev.type == "cuda" else None

    def set_state(g: Any, state: Any) -> None:
        # A state read back from a file is a NumPy uint8 array; set_state takes a CPU tensor.
        g.set_state(torch.from_numpy(np.asarray(state)) if isinstance(state, np.ndarray) else state)

    return Backend(
        name="torch",
        xp=xp,
        device=dev,
        library=torch,
        kernels=None,
        pinned_streaming=False,
        _free_device_memory=free_device_memory,
        _make_generator=make_generator,
        _permutation=lambda g, n: torch.randperm(n, generator=g, device=dev),
        _uniform=lambda g, shape, dtype: torch.rand(shape, generator=g, device=dev, dtype=dtype),
        _get_state=lambda g: g.get_state(),
        _set_state=set_state,
        _asarray=asarray,
        _to_numpy=lambda x: x.detach().cpu().numpy(),
        _synchronize=synchronize,
    )


def _cuda_device_count(cupy: Any) -> tuple[int, str]:
    """How many CUDA devices CuPy sees, and why none if none.

    Importing CuPy succeeds on a machine without a GPU or driver; only asking the runtime tells.
    """
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a missing libcuda: both mean "no GPU"
        return 0, f"{type(exc).__name__}: {exc}"
    return count, "" if count else "the CUDA runtime reports 0 devices"


def _cupy_backend(device: str | None) -> Backend:
    try:
        index = 0 if device is None else int(device)
    except ValueError:
        raise BackendError(
            f"backend 'cupy:{device}': the device must be a GPU number such as 'cupy:0'"
        ) from None
    cupy = _import("cupy", "cupy")
    xp = _import("array_api_compat.cupy", "cupy")
    count, why = _cuda_device_count(cupy)
    if count == 0:
        raise BackendUnavailableError(
            f"backend 'cupy' found CuPy {cupy.__version__} but no CUDA device ({why}). "
            "Use backend 'numpy' on the CPU, or run on a machine with an NVIDIA GPU and driver."
        )
    if not 0 <= index < count:
        raise BackendUnavailableError(
            f"backend 'cupy:{index}': this machine has {count} CUDA device(s), numbered 0 to "
            f"{count - 1}"
        )
    dev = cupy.cuda.Device(index)

    def make_generator(seed: int | None) -> Any:
        with dev:
            return cupy.random.RandomState(seed)

    def permutation(g: Any, n: int) -> Any:
        with dev:
            return g.permutation(n).astype(cupy.int64, copy=False)

    def uniform(g: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        with dev:
            return g.random_sample(shape, dtype=dtype)

    def asarray(host: np.ndarray) -> Any:
        with dev:
            return cupy.array(host, copy=True)

    def free_device_memory() -> int:
        with dev:
            return int(cupy.cuda.runtime.memGetInfo()[0])

    def no_state(g: Any, *state: Any) -> Any:
        raise BackendError(
            "CuPy's RandomState cannot report or restore its state; reseed a new generator "
            "instead (anynet derives per-epoch seeds for this reason)"
        )

    return Backend(
        name="cupy",
        xp=xp,
        device=dev,
        library=cupy,
        kernels="cuda",
        pinned_streaming=True,
        _free_device_memory=free_device_memory,
        _make_generator=make_generator,
        _permutation=permutation,
        _uniform=uniform,
        _get_state=no_state,
        _set_state=no_state,
        _asarray=asarray,
        _to_numpy=cupy.asnumpy,
        _synchronize=dev.synchronize,
    )


_FACTORIES = {
    "numpy": _numpy_backend,
    "array_api_strict": _strict_backend,
    "torch": _torch_backend,
    "cupy": _cupy_backend,
}


def get_backend(name: str | Backend | None = None) -> Backend:
    """Return the backend for ``name``.

    Parameters
    ----------
    name : str, Backend or None
        ``'numpy'`` (the default), ``'cupy'`` or ``'cupy:N'``, ``'torch'``, ``'torch:cuda'`` or
        ``'torch:cuda:N'``, ``'array_api_strict'``. ``None`` reads the ``ANYNET_BACKEND``
        environment variable, else ``'numpy'``. A :class:`Backend` is returned as it is.

    Raises
    ------
    BackendError
        The name is not one anynet knows.
    BackendUnavailableError
        The library is not installed, or it has no device here (CuPy without a GPU).

    Examples
    --------
    >>> import anynet
    >>> be = anynet.get_backend("numpy")
    >>> be.to_numpy(be.asarray([1, 2], dtype="float32"))
    array([1., 2.], dtype=float32)
    """
    if isinstance(name, Backend):
        return name
    source = "backend name"
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or "numpy"
        source = f"{ENV_VAR} environment variable"
    if not isinstance(name, str):
        raise BackendError(f"backend must be a name or a Backend; got {type(name).__name__}")
    library, _, device = name.strip().partition(":")
    library = library.lower().replace("-", "_")
    if library not in _FACTORIES:
        raise BackendError(f"unknown backend {name!r} (from the {source}); {_NAME_HELP}")
    return _FACTORIES[library](device or None)


@dataclass(frozen=True)
class BackendStatus:
    """Whether one backend works here: what ``anynet info`` prints."""

    name: str
    available: bool
    version: str | None
    devices: tuple[str, ...]
    reason: str


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except Exception:
        return None


def backend_status() -> list[BackendStatus]:
    """Probe every backend anynet knows: library version, devices, and why not if not."""
    out = []
    for name in BACKEND_NAMES:
        library = "array_api_strict" if name == "array_api_strict" else name
        version = _version(library)
        try:
            be = get_backend(name)
        except (BackendUnavailableError, BackendError) as exc:
            out.append(BackendStatus(name, False, version, (), str(exc)))
            continue
        devices: tuple[str, ...] = (be.spec.partition(":")[2] or "cpu",)
        if name == "torch":
            torch = be.library
            if torch.cuda.is_available():
                devices += tuple(
                    f"cuda:{i} ({torch.cuda.get_device_name(i)})"
                    for i in range(torch.cuda.device_count())
                )
        elif name == "cupy":
            count, _ = _cuda_device_count(be.library)
            devices = tuple(f"cupy:{i}" for i in range(count))
        out.append(BackendStatus(name, True, version, devices, ""))
    return out


def available_backends() -> list[str]:
    """The names of the backends that work on this machine, e.g. ``['numpy', 'torch']``."""
    return [s.name for s in backend_status() if s.available]


def to_numpy(x: Any) -> np.ndarray:
    """Any array anynet's backends make (NumPy, CuPy, PyTorch, array-api-strict, on any of
    their devices) as a NumPy array on the host. Lists and scalars go through ``np.asarray``."""
    if isinstance(x, np.ndarray):
        return x
    module = type(x).__module__.split(".")[0]
    if module == "array_api_strict":
        import array_api_strict

        return np.from_dlpack(x.to_device(array_api_strict.Device("CPU_DEVICE")))
    if module == "cupy":
        return x.get()
    if module == "torch":
        return x.detach().cpu().numpy()
    return np.asarray(x)


def backend_of(x: Any) -> Backend | None:
    """The backend an array lives on (library and device), or ``None`` for NumPy arrays and
    anything that is not an array of a library anynet knows."""
    import array_api_compat as compat

    if isinstance(x, np.ndarray) or not compat.is_array_api_obj(x):
        return None
    if compat.is_torch_array(x):
        return get_backend("torch" if x.device.type == "cpu" else f"torch:{x.device}")
    if compat.is_cupy_array(x):
        return get_backend(f"cupy:{x.device.id}")
    if type(x).__module__.split(".")[0] == "array_api_strict":
        label = str(x.device).split("'")[1]
        return get_backend(
            "array_api_strict" if label == "CPU_DEVICE" else f"array_api_strict:{label}"
        )
    return None
