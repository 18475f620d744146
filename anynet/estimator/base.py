"""What anynet's estimators share: the fitted parameters as one dict, arrays in and out on
any backend, and the host-side checks of ``X``.

The fitted truth is :attr:`NetworkEstimator.params_`: the network's parameters by name, as
NumPy arrays. ``coefs_`` and ``intercepts_`` are its arrays in scikit-learn's layout (set them,
or write into them, and the estimator uses what you set). Each ``fit`` or ``predict`` copies the
parameters to the device once (a few hundred kilobytes) and the work runs there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import validate_data

from anynet import nn
from anynet.backends import Backend, backend_of, get_backend
from anynet.checks import fail
from anynet.estimator.inputs import as_compute_dtype, to_host
from anynet.estimator.network import dense_layers

__all__ = ["NetworkEstimator"]


class NetworkEstimator(BaseEstimator):
    """The machinery an anynet estimator shares; a subclass says what network it builds
    (``_network()``) and what its outputs mean."""

    def _network(self) -> tuple[nn.Sequential, str, str]:
        raise NotImplementedError

    # --- the fitted parameters ----------------------------------------------------------------

    def _layer_arrays(self, kind: str) -> list[np.ndarray]:
        if "params_" not in vars(self):
            raise AttributeError(f"this {type(self).__name__} is not fitted: it has no {kind} yet")
        names = dense_layers(self._network()[0])
        return [self.params_[layer["W" if kind == "coefs_" else "b"]] for layer in names]

    def _set_layer_arrays(self, kind: str, arrays: Any) -> None:
        current = self._layer_arrays(kind)
        arrays = list(arrays)
        if len(arrays) != len(current) or any(
            np.shape(a) != c.shape for a, c in zip(arrays, current, strict=False)
        ):
            raise fail(
                kind,
                f"{len(current)} arrays of shapes {[c.shape for c in current]}",
                [np.shape(a) for a in arrays],
            )
        for a, c in zip(arrays, current, strict=True):
            c[...] = a

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, ``(n_in, n_out)`` each, layer by layer: arrays of ``params_``."""
        return self._layer_arrays("coefs_")

    @coefs_.setter
    def coefs_(self, arrays: Any) -> None:
        self._set_layer_arrays("coefs_", arrays)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, layer by layer: arrays of ``params_``."""
        return self._layer_arrays("intercepts_")

    @intercepts_.setter
    def intercepts_(self, arrays: Any) -> None:
        self._set_layer_arrays("intercepts_", arrays)

    def _device_params(self, model: nn.Sequential, be: Backend) -> dict[str, Any]:
        """``params_`` on the device, in the compute dtype, after refusing non-finite ones (a
        NaN weight would predict plausible-looking probabilities: ReLU maps NaN to 0)."""
        for name, value in self.params_.items():
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            if bad:
                raise ValueError(
                    f"params_[{name!r}] holds {bad} NaN or infinite values: this model cannot "
                    "predict or train; fit it again, or set finite parameters"
                )
        shapes = model.param_shapes()
        return {name: be.asarray(self.params_[name], dtype=self.dtype) for name in shapes}

    # --- arrays in, arrays out ---------------------------------------------------------------

    def _compute_backend(self, X: Any) -> Backend:
        """``backend`` if set; else the backend of the input arrays (PyTorch tensors in, PyTorch
        computes); else ``ANYNET_BACKEND`` or NumPy."""
        if self.backend is not None:
            return get_backend(self.backend)
        return backend_of(X) or get_backend(None)

    @staticmethod
    def _hand_back(x: Any, be: Backend, caller: Backend | None) -> Any:
        """Arrays in, arrays out: NumPy for NumPy callers, the caller's library otherwise."""
        if caller is None:
            return be.to_numpy(x)
        if caller.spec == be.spec:
            return x
        return caller.asarray(be.to_numpy(x))

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        X = to_host(X)
        if getattr(X, "ndim", 2) > 2:  # images, e.g. (N, 28, 28): one row of pixels each
            X = np.reshape(X, (X.shape[0], -1))
        X = validate_data(self, X, reset=reset, dtype="numeric", order="C")
        return self._as_compute_dtype(X)

    def _validate_X_y(self, X, y, *, reset: bool, **checks: Any):
        """``checks`` go to scikit-learn's ``validate_data`` (``multi_output=True``...)."""
        X, y = to_host(X), to_host(y)
        if getattr(X, "ndim", 2) > 2:
            X = np.reshape(X, (X.shape[0], -1))
        X, y = validate_data(self, X, y, reset=reset, dtype="numeric", order="C", **checks)
        return self._as_compute_dtype(X), y

    def _as_compute_dtype(self, X: np.ndarray) -> np.ndarray:
        return as_compute_dtype(X, self.dtype)

    def __getstate__(self):
        # Device arrays and backend handles stay behind: the NumPy params_ are the model.
        state = self.__dict__.copy()
        for key in ("_opt_state", "_opt_backend", "_communicator"):
            state.pop(key, None)
        return state
