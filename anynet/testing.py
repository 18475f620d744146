"""Testing helpers: a finite-difference gradient check and a strict ``assert_close``.

They are public so that code built on anynet (a new layer, a new loss) can be checked the way
anynet checks its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from anynet.backends import to_numpy as _host

__all__ = ["assert_close", "check_gradients", "numerical_gradient"]

Array = Any


def assert_close(
    actual: Array,
    desired: Array,
    *,
    rtol: float = 1e-7,
    atol: float = 0.0,
    check_dtype: bool = True,
    err_msg: str = "",
) -> None:
    """Assert two arrays are close, and also of the same library, dtype, shape and device.

    ``desired`` may be a NumPy array, in which case only ``actual``'s values, shape and dtype
    name are compared against it.
    """
    xp_a = array_namespace(actual)
    host_desired = isinstance(desired, np.ndarray) and not _is_numpy(xp_a)
    if not host_desired:
        xp_d = array_namespace(desired)
        assert xp_a is xp_d, f"namespaces differ: {xp_a.__name__} vs {xp_d.__name__} {err_msg}"
        assert device(actual) == device(desired), (
            f"devices differ: {device(actual)} vs {device(desired)} {err_msg}"
        )
    assert tuple(actual.shape) == tuple(desired.shape), (
        f"shapes differ: {tuple(actual.shape)} vs {tuple(desired.shape)} {err_msg}"
    )
    a, d = _host(actual), _host(desired)
    if check_dtype:
        assert a.dtype == d.dtype, f"dtypes differ: {actual.dtype} vs {desired.dtype} {err_msg}"
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=err_msg)


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float) -> np.ndarray:
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` for every element
    of the float64 host array ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f(x)
        flat[i] = old - eps
        minus = f(x)
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def check_gradients(
    f: Callable[..., tuple[Array, Mapping[str, Array]]],
    inputs: Mapping[str, np.ndarray],
    backend: Any,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Check hand-written gradients against float64 central differences, on ``backend``.

    Parameters
    ----------
    f : callable
        ``f(**arrays) -> (value, grads)``: ``value`` a 0-d array, ``grads`` the analytic
        gradient of ``value`` for each input name it covers.
    inputs : mapping of str to numpy.ndarray
        The point to check at, as host arrays; each is moved to ``backend`` in float64.
    backend : anynet.Backend
        Where ``f`` runs, both for the analytic and the numerical gradient.
    """
    host = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}

    def on_device(arrays):
        return {k: backend.asarray(v, dtype="float64") for k, v in arrays.items()}

    _, grads = f(**on_device(host))
    missing = set(grads) - set(host)
    assert not missing, f"f returned gradients for unknown inputs {sorted(missing)}"
    for name, analytic in grads.items():

        def value_at(x, name=name):
            moved = on_device({**host, name: x})
            return float(backend.to_numpy(f(**moved)[0]))

        numeric = numerical_gradient(value_at, host[name], eps)
        got = backend.to_numpy(analytic)
        assert got.shape == numeric.shape, (
            f"gradient of {name!r} has shape {got.shape}, its input {numeric.shape}"
        )
        np.testing.assert_allclose(
            got, numeric, rtol=rtol, atol=atol, err_msg=f"gradient of {name!r} on {backend}"
        )


def _is_numpy(xp: Any) -> bool:
    return xp.__name__ in ("numpy", "array_api_compat.numpy")
