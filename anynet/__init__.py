"""anynet: neural-network classifiers whose hand-written backprop runs on any Array API backend.

The math — forward, backward, losses, optimizers — lives once in :mod:`anynet.nn`, written
against the Python Array API standard. A :class:`~anynet.backends.Backend` supplies the array
library and device: NumPy on the CPU, CuPy on a CUDA GPU, PyTorch tensors, or array-api-strict.
"""

from anynet.backends import Backend, available_backends, backend_status, get_backend
from anynet.errors import AnynetError, BackendError, BackendUnavailableError

__version__ = "0.1.0"

# Heavier faces load on first use, so `import anynet` stays quick (scikit-learn, safetensors).
_LAZY = {
    "NNClassifier": ("anynet.estimator", "NNClassifier"),
    "NNRegressor": ("anynet.estimator", "NNRegressor"),
    "save": ("anynet.estimator", "save"),
    "load": ("anynet.estimator", "load"),
}


_SUBMODULES = ("data", "datasets", "fast", "io", "metrics", "nn", "plots", "testing", "training")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:  # `anynet.data.DataLoader` works without importing anynet.data
        return importlib.import_module(f"anynet.{name}")
    raise AttributeError(f"module 'anynet' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY, *_SUBMODULES])


__all__ = [
    "AnynetError",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "NNClassifier",
    "NNRegressor",
    "__version__",
    "available_backends",
    "backend_status",
    "get_backend",
    "load",
    "save",
]
