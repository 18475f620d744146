"""anynet: neural-network classifiers whose hand-written backprop runs on any Array API backend.

The math — forward, backward, losses, optimizers — lives once in :mod:`anynet.nn`, written
against the Python Array API standard. A :class:`~anynet.backends.Backend` supplies the array
library and device: NumPy on the CPU, CuPy on a CUDA GPU, PyTorch tensors, or array-api-strict.
"""

from anynet.backends import Backend, available_backends, backend_status, get_backend
from anynet.errors import AnynetError, BackendError, BackendUnavailableError

__version__ = "0.1.0"

__all__ = [
    "AnynetError",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "__version__",
    "available_backends",
    "backend_status",
    "get_backend",
]
