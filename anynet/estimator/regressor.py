"""``NNRegressor``: the twin of scikit-learn's ``MLPRegressor``, trained by anynet on any backend.

It takes ``MLPRegressor``'s parameters (``loss='squared_error'`` or ``'poisson'``, multi-output
``y``) and fills its fitted attributes, with anynet's own as :class:`~anynet.NNClassifier`
has them (backend, dtype, checkpoints, exact resume...): the fit itself is
:class:`~anynet.estimator.fitting.NetworkFit`'s, shared with the classifier, and so is the
choice of step: the fused CPU step where the network allows (its head takes both losses), the
generic one elsewhere.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from anynet import nn
from anynet.backends import Backend, backend_of, derive_seed
from anynet.checks import check_choice
from anynet.data.arguments import check_sample_weight
from anynet.errors import DataError
from anynet.estimator.fitting import FitData, NetworkFit
from anynet.estimator.inputs import to_host
from anynet.estimator.network import build_network
from anynet.estimator.params import check_params

__all__ = ["LOSSES", "NNRegressor"]

#: ``loss=``: (the engine's loss on the network's output, the output activation turning that
#: output into predictions, as scikit-learn's ``out_activation_`` names it).
LOSSES = {
    "squared_error": ("half_squared_error", "identity"),
    "poisson": ("poisson", "exp"),
}


class NNRegressor(RegressorMixin, NetworkFit):
    """A neural-network regressor trained by anynet's hand-written backprop: scikit-learn's
    ``MLPRegressor`` on any backend.

    Parameters are :class:`~anynet.NNClassifier`'s (see there: ``solver``, ``alpha``,
    ``batch_size``, the learning-rate schedules, early stopping, ``backend``, ``dtype``,
    ``standardize``, ``dropout``, ``network``, checkpoints and ``resume``, ``distributed``...),
    less ``output`` and ``class_weight``, plus:

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}
        The first positional parameter, as in scikit-learn: half the squared error (identity
        output), or half the Poisson deviance with an ``exp`` output (``y`` must be counts or
        rates >= 0). With several
        outputs the loss is summed over them; scikit-learn trains on that same gradient but
        reports the loss averaged over the outputs, so ``loss_curve_`` is ``n_outputs_``
        times its own there.

    Attributes
    ----------
    params_, coefs_, intercepts_, history_, step_name_, image_shape_
        As for :class:`~anynet.NNClassifier`; ``history_`` holds ``val_r2`` with validation.
    n_features_in_, loss_curve_, n_iter_, t_, best_loss_, validation_scores_,
    best_validation_score_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn's ``MLPRegressor`` (validation scores are R²).

    Notes
    -----
    ``predict`` returns shape ``(n_samples,)`` when there is one output, as scikit-learn's, and
    ``score`` is R². ``step_name_`` says which step trained: the fused one on the CPU for the
    networks it covers, else the generic one.
    """

    _VAL_SCORE = "val_r2"
    # What defines a run besides its network, batch size, seed and data.
    _RUN_KEYS = (
        "solver", "learning_rate_init", "momentum", "nesterovs_momentum", "beta_1", "beta_2",
        "epsilon", "alpha", "l1", "dtype", "shuffle", "standardize", "loss", "early_stopping",
        "validation_fraction", "tol", "n_iter_no_change", "augment", "learning_rate", "power_t",
    )  # fmt: skip

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        backend=None,
        dtype="float32",
        l1=0.0,
        init="glorot_uniform",
        standardize=False,
        dropout=0.0,
        checkpoint_dir=None,
        checkpoint_every=1,
        checkpoint_steps=None,
        resume=False,
        divergence_factor=100.0,
        network=None,
        image_shape=None,
        augment=None,
        distributed=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.l1 = l1
        self.init = init
        self.standardize = standardize
        self.dropout = dropout
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.checkpoint_steps = checkpoint_steps
        self.resume = resume
        self.divergence_factor = divergence_factor
        self.network = network
        self.image_shape = image_shape
        self.augment = augment
        self.distributed = distributed

    # --- parameters -------------------------------------------------------------------------

    def _check_params(self) -> None:
        check_params(self)
        check_choice("loss", self.loss, LOSSES)

    def _network(self) -> tuple[nn.Sequential, str, str]:
        """The network for the fitted data's shape, its loss and its output activation."""
        model, _, _ = build_network(
            self.n_features_in_,
            self._hidden,
            self.n_outputs_,
            activation=self.activation,
            output=None,
            dropout=float(self.dropout),
            init=self.init,
            network=self.network,
            image_shape=getattr(self, "image_shape_", None),
        )
        loss, link = LOSSES[self.loss]
        return model, loss, link

    # --- fitting ----------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, validation_data=None, callbacks=None):
        """Train on ``X`` (samples in rows) and targets ``y`` of shape ``(n,)`` or
        ``(n, n_outputs)``; ``sample_weight``, ``validation_data`` and ``callbacks`` as for
        :meth:`anynet.NNClassifier.fit` (validation records ``val_r2`` and ``val_loss``)."""
        return self._fit(
            X,
            y,
            incremental=False,
            validation_data=validation_data,
            callbacks=callbacks,
            sample_weight=sample_weight,
        )

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X, y``, continuing from the current weights and optimizer state."""
        return self._fit(
            X,
            y,
            incremental=True,
            validation_data=None,
            callbacks=None,
            sample_weight=sample_weight,
        )

    def _targets_of(self, y: Any, n_samples: int, *, first: bool) -> np.ndarray:
        """``y`` as a float64 ``(n, n_outputs)`` array, checked against the loss and the
        outputs of earlier fits."""
        Y = np.asarray(y, dtype=np.float64)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != n_samples:
            raise DataError(
                f"y must be of shape ({n_samples},) or ({n_samples}, n_outputs); got {np.shape(y)}"
            )
        if first:
            self.n_outputs_ = Y.shape[1]
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {Y.shape[1]} outputs, but this regressor was fitted with "
                f"{self.n_outputs_}; fit without warm_start to change them"
            )
        if self.loss == "poisson" and (Y < 0).any():
            raise ValueError(
                f"loss='poisson' needs targets y >= 0 (counts or rates); y holds {Y.min():.3g}. "
                "Use loss='squared_error' for targets of any sign."
            )
        return Y

    def _prepare_data(self, X, y, warm, incremental, validation_data, seed, sample_weight):
        """Phase 1: check the data on the host; hold out a validation split."""
        sample = self._sample_shape(X)
        X, y = self._validate_X_y(X, y, reset=not warm, multi_output=True, y_numeric=True)
        if warm:
            self._check_image_shape(sample)
        else:
            self.image_shape_ = self._fit_image_shape(sample, X.shape[1])
        n_samples = X.shape[0]
        Y = self._targets_of(y, n_samples, first=not warm)
        w = check_sample_weight(to_host(sample_weight), n_samples)
        X_val = Y_val = w_val = None
        if self.early_stopping and not incremental:
            split = train_test_split(
                X,
                Y,
                *([] if w is None else [w]),
                test_size=self.validation_fraction,
                random_state=derive_seed(seed, 0, 3),
            )
            X, X_val, Y, Y_val = split[:4]
            w, w_val = (None, None) if w is None else split[4:]
        elif validation_data is not None:
            Xv, yv = validation_data
            self._check_image_shape(self._sample_shape(Xv))
            X_val = self._validate_X(Xv, reset=False)
            Y_val = self._targets_of(to_host(yv), len(X_val), first=False)
        return FitData(X, Y, X_val, Y_val, n_samples, w, w_val)

    def _targets(self) -> dict[str, Any]:
        return {"targets": "values"}

    def _validator(self, step, loader, be, data):
        """R² (scikit-learn's ``r2_score``, averaged over the outputs) and the mean loss, with
        one read from the device per validation; weighted by ``data.w_val`` if any."""
        _, loss, link = self._network()
        loss_fn, xp = nn.step.get_loss(loss), be.xp
        Y, w_host = data.y_val, data.w_val
        w_host = np.ones(len(Y)) if w_host is None else w_host
        mean = np.average(Y, axis=0, weights=w_host)
        total = (w_host[:, None] * (Y - mean) ** 2).sum(axis=0)
        w = be.asarray(w_host.astype(self.dtype))

        def validate(params) -> dict[str, float]:
            rows, at = [], 0
            for Xb, Yb in loader:
                out = step.predict(Xb, params)
                wb, at = w[at : at + int(Xb.shape[0])], at + int(Xb.shape[0])
                value, _ = loss_fn(out, Yb, reduction="sum", xp=xp, sample_weight=wb)
                diff = Yb - (xp.exp(out) if link == "exp" else out)
                residual = xp.sum(diff * diff * xp.reshape(wb, (-1, 1)), axis=0)
                rows.append(xp.concat([xp.reshape(value, (1,)), residual]))
            host = be.to_numpy(xp.stack(rows)).astype(np.float64).sum(axis=0)
            return {"val_r2": _r2(host[1:], total), "val_loss": float(host[0]) / w_host.sum()}

        return validate

    def _record_outputs(self) -> None:
        self.out_activation_ = LOSSES[self.loss][1]

    # --- prediction -------------------------------------------------------------------------

    def _forward(self, X) -> tuple[Any, Backend, Backend | None]:
        check_is_fitted(self, "params_")
        caller = backend_of(X)
        be = self._compute_backend(X)
        self._check_image_shape(self._sample_shape(X))
        Xh = self._validate_X(X, reset=False)
        model, _, link = self._network()
        params = self._device_params(model, be)
        dummy = np.zeros((len(Xh), self.n_outputs_))
        loader = self._loader(Xh, dummy, self._eval_batch, False, 0, be)
        xp = be.xp
        with warnings.catch_warnings():
            # Overflow warnings say less than the check below, which names the cause.
            warnings.simplefilter("ignore", RuntimeWarning)
            out = xp.concat([model(params, Xb, xp=xp) for Xb, _ in loader], axis=0)
            if link == "exp":
                out = xp.exp(out)
        if not bool(xp.all(xp.isfinite(out))):
            largest = max(float(np.max(np.abs(v))) for v in self.params_.values())
            raise ValueError(
                f"the model's outputs are not finite for some of these {len(Xh)} samples: its "
                f"parameters (largest magnitude {largest:.3g}) overflow {self.dtype} on them. "
                "Refit the model, check where its parameters came from, or the inputs' scale."
            )
        return out, be, caller

    def predict(self, X):
        """Predictions, shape ``(n_samples,)`` for one output, else ``(n_samples, n_outputs)``:
        a NumPy array for NumPy (or list) input, else an array of the input's library, on its
        device. As scikit-learn's regressors give them, they are float32 for float32 ``X`` and
        float64 otherwise (the values are those of the compute ``dtype``)."""
        float32 = str(getattr(X, "dtype", "")).endswith("float32")
        out, be, caller = self._forward(X)
        if self.n_outputs_ == 1:
            out = be.xp.reshape(out, (-1,))
        out = self._hand_back(out, be, caller)
        if caller is None:
            return out.astype(np.float32 if float32 else np.float64, copy=False)
        xp = caller.xp
        return xp.astype(out, xp.float32 if float32 else xp.float64)

    # --- scikit-learn plumbing --------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.multi_output = True
        tags.non_deterministic = self.random_state is None
        return tags


def _r2(residual: np.ndarray, total: np.ndarray) -> float:
    """scikit-learn's R² from each output's residual and total sums of squares, averaged over
    the outputs (a constant target scores 1 if predicted exactly, else 0, as there)."""
    scores = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), 0.0)
    scores = np.where((total == 0) & (residual == 0), 1.0, scores)
    return float(scores.mean())
