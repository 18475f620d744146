"""``NNClassifier``: a scikit-learn estimator that trains anynet networks on any backend.

It takes ``MLPClassifier``'s parameters and fills its fitted attributes, so code written for
scikit-learn's network runs unchanged, and adds anynet's own: ``backend`` (NumPy, CuPy, PyTorch,
array-api-strict), ``dtype``, an L1 penalty, the initializer, the output layer, input scaling,
dropout and checkpoints.

The fitted weights live in ``coefs_`` / ``intercepts_`` as NumPy arrays, the form scikit-learn
users read and set; each ``fit`` / ``partial_fit`` / ``predict`` copies them to the device once
(a few hundred kilobytes) and training runs there.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from anynet import nn
from anynet.backends import Backend, backend_of, derive_seed, get_backend, to_numpy
from anynet.data import DataLoader
from anynet.training import Callback, EarlyStopping, TrainState, train

__all__ = ["NNClassifier", "load", "save"]

_ACTIVATIONS = {
    "identity": None,
    "logistic": nn.Sigmoid,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
}
_OUTPUTS = {
    # output -> (extra last layer, loss, what predict_proba applies to the network's output)
    "softmax": (None, "softmax_cross_entropy", "softmax"),
    "log_softmax": (nn.LogSoftmax, "nll", "exp"),
    "sigmoid": (None, "sigmoid_binary_cross_entropy", "sigmoid"),
}
_SCALINGS = {
    False: None,
    None: None,
    True: "standardize",
    "standardize": "standardize",
    "unit": "unit",
    "symmetric": "symmetric",
}
_SOLVERS = ("sgd", "adam", "adamw")
CHECKPOINT_NAME = "checkpoint.safetensors"


def _bad(name: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"{name} must be {expected}; got {got!r}")


class _Checkpointer(Callback):
    """Writes the run's state atomically every ``every`` epochs (or ``every_steps`` steps)
    and on Ctrl-C."""

    def __init__(
        self,
        directory: str | os.PathLike,
        every: int,
        meta: dict[str, Any],
        every_steps: int | None = None,
    ):
        self.path = Path(directory) / CHECKPOINT_NAME
        self.every = every
        self.every_steps = every_steps
        self.meta = meta

    def save(self, state: TrainState) -> None:
        from anynet.io import save_checkpoint

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # ``batch`` > 0 only for a Ctrl-C mid-epoch: resuming skips the batches already done.
        # ``batch`` > 0 only mid-epoch: resuming skips the batches already done, and the loss
        # they added up to so far is carried over.
        loss_sum, seen = state.epoch_loss_so_far()
        save_checkpoint(
            self.path,
            params=state.params,
            opt_state=state.opt_state,
            epoch=state.epoch,
            step=state.step,
            history=state.history,
            extra={**self.meta, "batch": state.batch, "loss_sum": loss_sum, "seen": seen},
        )

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch % self.every == 0 or state.stop:
            self.save(state)

    def on_step_end(self, state: TrainState) -> None:
        if self.every_steps and state.step % self.every_steps == 0:
            self.save(state)

    def on_interrupt(self, state: TrainState) -> None:
        self.save(state)


class NNClassifier(ClassifierMixin, BaseEstimator):
    """A multi-layer perceptron classifier trained by anynet's hand-written backprop.

    Parameters shared with scikit-learn's ``MLPClassifier`` mean what they mean there:

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Units of each hidden layer.
    activation : {'relu', 'tanh', 'logistic', 'identity', 'sigmoid', 'leaky_relu'}
        Hidden-layer activation (``'sigmoid'`` is ``'logistic'``).
    solver : {'adam', 'sgd', 'adamw'}
        The optimizer. ``'lbfgs'`` is not offered: it needs the whole data set per step.
    alpha : float, default 1e-4
        L2 penalty, scaled as scikit-learn does (``alpha / 2 * ||W||^2 / batch size``).
    batch_size : int or 'auto'
        ``'auto'`` is ``min(200, n_samples)``.
    learning_rate_init : float
        The (constant) learning rate.
    max_iter : int
        Epochs at most.
    shuffle : bool
        Reshuffle the samples every epoch (on the device).
    random_state : int, RandomState or None
        Seeds the initial weights (drawn on the host: the same on every backend), the shuffles,
        dropout and the validation split.
    tol, n_iter_no_change
        Stop when the loss (or the validation score with ``early_stopping``) has not improved
        by ``tol`` for more than ``n_iter_no_change`` epochs.
    early_stopping : bool
        Hold out ``validation_fraction`` of the data (stratified) and keep the best epoch.
    momentum, nesterovs_momentum
        For ``solver='sgd'``.
    beta_1, beta_2, epsilon
        For ``solver='adam'`` and ``'adamw'``.
    warm_start : bool
        ``fit`` continues from the current ``coefs_`` / ``intercepts_``.
    verbose : bool
        Show a progress bar (epoch, loss, validation accuracy, samples/s).
    backend : str or Backend, optional
        Where training runs: ``'numpy'``, ``'cupy'``, ``'torch'``, ``'array_api_strict'``...
        ``None`` reads ``ANYNET_BACKEND``, else NumPy.
    dtype : {'float32', 'float64'}
        Dtype of parameters and computation.
    l1 : float
        L1 penalty strength on the weights (``l1 * sum|W|``, not scaled by the batch).
    init : str
        Weight initializer (:mod:`anynet.nn.init`): ``'glorot_uniform'``, ``'he_normal'``,
        ``'uniform'`` (the from-scratch seed's U(-1, 1)), ...; biases start at zero.
        ``'pytorch'`` draws weights and biases as ``torch.nn.Linear`` does.
    output : {'softmax', 'log_softmax', 'sigmoid'}
        Output layer and loss: softmax cross-entropy; log-softmax with NLL (the PyTorch seed);
        or one sigmoid per class with binary cross-entropy (the from-scratch seed).
    standardize : bool or {'unit', 'symmetric'}
        Input scaling done on the device: ``True`` standardizes each feature with statistics
        of the first training set (the from-scratch seed's ``scale``); ``'unit'`` maps uint8
        pixels to [0, 1]; ``'symmetric'`` to [-1, 1] (the PyTorch seed's transform).
    dropout : float
        Dropout probability after each hidden activation.
    checkpoint_dir : path, optional
        Write a checkpoint there every ``checkpoint_every`` epochs, every ``checkpoint_steps``
        optimizer steps if set, and on Ctrl-C. Writes are atomic: a kill leaves the last one.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` if there is one.

    Attributes
    ----------
    classes_, n_features_in_, coefs_, intercepts_, loss_curve_, n_iter_, t_, best_loss_,
    validation_scores_, best_validation_score_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn's ``MLPClassifier``.
    history_ : dict of list
        Per-epoch metrics: ``loss``, ``epoch_seconds`` and, with validation, ``val_accuracy``
        and ``val_loss``.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.001,
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
        output="softmax",
        standardize=False,
        dropout=0.0,
        checkpoint_dir=None,
        checkpoint_every=1,
        checkpoint_steps=None,
        resume=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
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
        self.output = output
        self.standardize = standardize
        self.dropout = dropout
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.checkpoint_steps = checkpoint_steps
        self.resume = resume

    # --- parameters -------------------------------------------------------------------------

    def _check_params(self) -> None:
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, int | np.integer) else sizes
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise _bad("hidden_layer_sizes", "a tuple of positive ints", sizes) from None
        if any(isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1 for h in sizes):
            raise _bad("hidden_layer_sizes", "a tuple of positive ints", self.hidden_layer_sizes)
        self._hidden = tuple(int(h) for h in sizes)
        if self.activation not in _ACTIVATIONS:
            raise _bad("activation", f"one of {sorted(_ACTIVATIONS)}", self.activation)
        if self.solver not in _SOLVERS:
            hint = (
                " (lbfgs needs the whole data set per step; use 'adam')"
                if self.solver == "lbfgs"
                else ""
            )
            raise _bad("solver", f"one of {list(_SOLVERS)}{hint}", self.solver)
        if self.output not in _OUTPUTS:
            raise _bad("output", f"one of {sorted(_OUTPUTS)}", self.output)
        if not isinstance(self.standardize, bool | str | None) or self.standardize not in _SCALINGS:
            raise _bad("standardize", "True, False, 'unit' or 'symmetric'", self.standardize)
        if self.dtype not in ("float32", "float64"):
            raise _bad("dtype", "'float32' or 'float64'", self.dtype)
        for name, low in (("alpha", 0.0), ("l1", 0.0), ("tol", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.number) or not value >= low:
                raise _bad(name, f"a number >= {low}", value)
        for name in ("learning_rate_init", "epsilon"):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.number) or not value > 0:
                raise _bad(name, "a number > 0", value)
        if self.checkpoint_steps is not None and (
            isinstance(self.checkpoint_steps, bool)
            or not isinstance(self.checkpoint_steps, int | np.integer)
            or self.checkpoint_steps < 1
        ):
            raise _bad("checkpoint_steps", "None or an int >= 1", self.checkpoint_steps)
        for name in ("max_iter", "n_iter_no_change", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise _bad(name, "an int >= 1", value)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if (
                isinstance(self.batch_size, bool)
                or not isinstance(self.batch_size, int | np.integer)
                or self.batch_size < 1
            ):
                raise _bad("batch_size", "'auto' or an int >= 1", self.batch_size)
        for name in ("momentum", "beta_1", "beta_2", "dropout"):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.number) or not 0 <= value < 1:
                raise _bad(name, "a number in [0, 1)", value)
        if not 0 < self.validation_fraction < 1:
            raise _bad("validation_fraction", "a number in (0, 1)", self.validation_fraction)
        if self.init != "pytorch":
            nn.init.get_initializer(self.init)

    def _build(self, n_in: int, n_out: int) -> tuple[nn.Sequential, str, str]:
        act = _ACTIVATIONS[self.activation]
        last, loss, link = _OUTPUTS[self.output]
        layers: list[nn.Layer] = []
        sizes = (n_in, *self._hidden)
        for a, b in itertools.pairwise(sizes):
            layers.append(self._dense(a, b))
            if act is not None:
                layers.append(act())
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
        layers.append(self._dense(sizes[-1], n_out))
        if last is not None:
            layers.append(last())
        return nn.Sequential(*layers), loss, link

    def _dense(self, n_in: int, n_out: int) -> nn.Dense:
        if self.init == "pytorch":  # torch.nn.Linear's default, biases included
            return nn.Dense(n_in, n_out, init="pytorch_uniform", bias_init="pytorch_uniform")
        return nn.Dense(n_in, n_out, init=self.init)

    def _optimizer(self) -> nn.optim.GradientTransformation:
        lr = float(self.learning_rate_init)
        if self.solver == "sgd":
            return nn.sgd(
                lr,
                momentum=float(self.momentum),
                nesterov=bool(self.nesterovs_momentum) and self.momentum > 0,
            )
        make = nn.adam if self.solver == "adam" else nn.adamw
        return make(lr, float(self.beta_1), float(self.beta_2), float(self.epsilon))

    # --- data -------------------------------------------------------------------------------

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        X = _to_host(X)
        if getattr(X, "ndim", 2) > 2:  # images, e.g. (N, 28, 28): one row of pixels each
            X = np.reshape(X, (X.shape[0], -1))
        X = validate_data(self, X, reset=reset, dtype="numeric", order="C")
        return self._as_compute_dtype(X)

    def _loader(self, X, y, *, batch_size, shuffle, seed, backend) -> DataLoader:
        return DataLoader(
            X,
            y,
            batch_size,
            shuffle=shuffle,
            backend=backend,
            seed=seed,
            dtype=self.dtype,
            normalize=_SCALINGS[self.standardize],
            standardizer=getattr(self, "_standardizer", None),
            num_classes=len(self.classes_),
        )

    # --- fitting ----------------------------------------------------------------------------

    def fit(self, X, y, validation_data=None):
        """Train on ``X`` (samples in rows; images are flattened) and labels ``y``.

        ``validation_data=(X_val, y_val)`` records ``val_accuracy`` and ``val_loss`` in
        ``history_`` each epoch without changing how training runs (unlike
        ``early_stopping``, which holds data out and may stop).
        """
        return self._fit(X, y, incremental=False, validation_data=validation_data)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X, y``, continuing from the current weights and optimizer state.

        ``classes`` (every label that will ever appear) is required on the first call.
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.classes_ = unique_labels(np.asarray(classes))
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(
                f"classes={list(classes)!r} differs from the classes of the first call, "
                f"{list(self.classes_)!r}"
            )
        return self._fit(X, y, incremental=True, validation_data=None)

    def _fit(self, X, y, *, incremental: bool, validation_data) -> NNClassifier:
        self._check_params()
        # Continue from the current weights (partial_fit, or fit with warm_start) or start anew.
        first = not (hasattr(self, "coefs_") and (incremental or self.warm_start))
        be = self._compute_backend(X)
        X, y = self._validate_X_y(X, y, reset=first)
        check_classification_targets(y)
        if not incremental:
            if first:
                self.classes_ = unique_labels(y)
            elif new := set(unique_labels(y).tolist()) - set(self.classes_.tolist()):
                raise ValueError(
                    f"warm_start fit got labels {sorted(new)} that the first fit did not have "
                    f"({list(self.classes_)}); fit without warm_start to learn new classes"
                )
        y_codes = self._encode(y)

        seed = _seed(self.random_state)
        n_samples = X.shape[0]
        n_out = len(self.classes_)
        model, loss, _ = self._build(X.shape[1], n_out)
        self._model = model

        if first:
            if _SCALINGS[self.standardize] == "standardize":
                from anynet.data import Standardizer

                self._standardizer = Standardizer.fit(X)
            else:
                self._standardizer = None
            params = model.init_params(rng=be.host_generator(seed), backend=be, dtype=self.dtype)
            self.loss_curve_, self.t_, self.n_iter_ = [], 0, 0
            self.history_ = {}
            self.best_loss_ = math.inf
            self.validation_scores_ = [] if self.early_stopping and not incremental else None
            self.best_validation_score_ = -math.inf if self.validation_scores_ is not None else None
        else:
            params = self._device_params(be)

        optimizer = self._optimizer()
        opt_state = getattr(self, "_opt_state", None) if incremental else None
        if opt_state is None or getattr(self, "_opt_backend", None) != be.spec:
            opt_state = optimizer.init(params)

        # Validation: early stopping holds out a stratified split of the training data.
        X_val = y_val = None
        if self.early_stopping and not incremental:
            stratify = y_codes if np.bincount(y_codes).min() >= 2 else None
            X, X_val, y_codes, y_val = train_test_split(
                X,
                y_codes,
                test_size=self.validation_fraction,
                stratify=stratify,
                random_state=derive_seed(seed, 0, 3),
            )
        elif validation_data is not None:
            Xv, yv = validation_data
            X_val, y_val = self._validate_X(Xv, reset=False), self._encode(np.asarray(yv))

        batch_size = min(200, len(X)) if self.batch_size == "auto" else int(self.batch_size)
        if batch_size > len(X):
            warnings.warn(
                f"batch_size={batch_size} is larger than the {len(X)} samples: "
                "clipped to the sample count",
                UserWarning,
                stacklevel=3,
            )
            batch_size = len(X)
        loader = self._loader(
            X,
            y_codes,
            batch_size=batch_size,
            shuffle=bool(self.shuffle),
            seed=derive_seed(seed, 0, 2),
            backend=be,
        )
        validate = None
        if X_val is not None:
            val_loader = self._loader(
                X_val, y_val, batch_size=4096, shuffle=False, seed=0, backend=be
            )
            validate = _validator(model, loss, val_loader, be)

        callbacks: list[Callback] = []
        stopper = None
        if not incremental:
            monitor = "val_accuracy" if self.early_stopping else "loss"
            stopper = EarlyStopping(
                monitor,
                tol=float(self.tol),
                patience=int(self.n_iter_no_change),
                restore_best=bool(self.early_stopping),
            )
            callbacks.append(stopper)
        state = TrainState(
            params=params, opt_state=opt_state, epoch=0, step=0, history={"loss": []}
        )
        checkpointer = None
        if self.checkpoint_dir is not None:
            checkpointer = _Checkpointer(
                self.checkpoint_dir,
                int(self.checkpoint_every),
                {"estimator": "NNClassifier", "seed": seed},
                self.checkpoint_steps,
            )
            callbacks.append(checkpointer)
            if self.resume and checkpointer.path.exists() and not incremental:
                state = self._resume_state(checkpointer.path, be, stopper)
        epochs = 1 if incremental else int(self.max_iter)

        train(
            model,
            optimizer,
            state,
            loader,
            epochs=epochs,
            backend=be,
            seed=seed,
            loss=loss,
            l1=float(self.l1),
            l2=float(self.alpha),
            l2_per_sample=True,
            validate=validate,
            callbacks=callbacks,
            progress=bool(self.verbose),
        )

        # Fitted attributes, in scikit-learn's shapes.
        final = stopper.best_params if stopper is not None and stopper.best_params else state.params
        self._set_host_params(final, be)
        self._opt_state, self._opt_backend = state.opt_state, be.spec
        self._fast_path = state.path
        # This call's epochs (a partial_fit runs one; a resumed fit, the whole run's).
        for k, v in state.history.items():
            self.history_.setdefault(k, []).extend(v)
        self.loss_curve_.extend(state.history["loss"])
        self.n_iter_ += state.epoch
        self.t_ += n_samples * state.epoch
        self.n_layers_ = len(self._hidden) + 2
        self.n_outputs_ = n_out
        self.out_activation_ = {
            "softmax": "softmax",
            "log_softmax": "softmax",
            "sigmoid": "logistic",
        }[self.output]
        if self.early_stopping and not incremental:
            self.validation_scores_ = list(state.history.get("val_accuracy", []))
            self.best_validation_score_ = max(self.validation_scores_)
            self.best_loss_ = None
        else:
            self.best_loss_ = min(self.loss_curve_)
        if not incremental and not state.stop and state.epoch >= self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _validate_X_y(self, X, y, *, reset: bool):
        X = _to_host(X)
        y = _to_host(y)
        if getattr(X, "ndim", 2) > 2:
            X = np.reshape(X, (X.shape[0], -1))
        X, y = validate_data(self, X, y, reset=reset, dtype="numeric", order="C")
        return self._as_compute_dtype(X), y

    def _as_compute_dtype(self, X: np.ndarray) -> np.ndarray:
        """uint8 pixels stay uint8 (the loader scales them on the device); other numbers must
        fit the compute dtype, or they would turn into inf there."""
        if X.dtype == np.uint8:
            return X
        limit = np.finfo(self.dtype).max
        if X.size and np.abs(X).max() > limit:
            raise ValueError(
                f"X has values up to {np.abs(X).max():.3g}, beyond {self.dtype}'s largest "
                f"({limit:.3g}); scale the data, or use dtype='float64'"
            )
        return X if np.issubdtype(X.dtype, np.floating) else X.astype(self.dtype)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        """Labels as int64 positions in ``classes_``, checked on the host: an out-of-range
        index on a GPU would be wrapped around silently, not refused."""
        codes = np.searchsorted(self.classes_, y)
        codes = np.clip(codes, 0, len(self.classes_) - 1)
        unknown = self.classes_[codes] != y
        if np.any(unknown):
            raise ValueError(
                f"y has labels {sorted(set(np.asarray(y)[unknown].tolist()))[:10]} that are not "
                f"among the classes {list(self.classes_)[:20]}"
            )
        return codes.astype(np.int64)

    def _device_params(self, be: Backend) -> dict[str, Any]:
        """``coefs_`` / ``intercepts_`` (which the user may have set) on the device."""
        params = {}
        names = [name for name in self._model.param_shapes() if name.endswith(".W")]
        if len(self.coefs_) != len(names):
            raise ValueError(
                f"coefs_ has {len(self.coefs_)} arrays; the network has {len(names)} layers"
            )
        for name, W, b in zip(names, self.coefs_, self.intercepts_, strict=True):
            prefix = name[:-2]
            shape = self._model.param_shapes()[name]
            if tuple(np.shape(W)) != shape or tuple(np.shape(b)) != (shape[1],):
                raise ValueError(
                    f"coefs_/intercepts_ of layer {prefix} have shapes {np.shape(W)} and "
                    f"{np.shape(b)}; the network needs {shape} and {(shape[1],)}"
                )
            params[name] = be.asarray(W, dtype=self.dtype)
            params[f"{prefix}.b"] = be.asarray(b, dtype=self.dtype)
        return params

    def _set_host_params(self, params: dict[str, Any], be: Backend) -> None:
        names = [name for name in self._model.param_shapes() if name.endswith(".W")]
        # Copies: a fast path's parameters are views into buffers it goes on updating.
        self.coefs_ = [np.array(be.to_numpy(params[n])) for n in names]
        self.intercepts_ = [np.array(be.to_numpy(params[n[:-2] + ".b"])) for n in names]

    def _resume_state(self, path: Path, be: Backend, stopper) -> TrainState:
        from anynet.io import load_checkpoint

        ckpt = load_checkpoint(path, backend=be)
        expected = self._model.param_shapes()
        got = {k: tuple(v.shape) for k, v in ckpt.params.items()}
        if got != expected:
            from anynet.errors import ModelFileError

            raise ModelFileError(
                f"{path}: the checkpoint's parameters {got} do not fit this estimator's network "
                f"{expected}; use another checkpoint_dir or resume=False"
            )
        history = {k: list(v) for k, v in (ckpt.history or {}).items()}
        if stopper is not None:  # replay the stopping rule over the epochs already run
            replay = TrainState(params=ckpt.params, opt_state=None, history={})
            for i in range(len(history.get(stopper.monitor, []))):
                replay.history = {k: v[: i + 1] for k, v in history.items()}
                stopper.on_epoch_end(replay)
        extra = ckpt.extra or {}
        return TrainState(
            params=ckpt.params,
            opt_state=ckpt.opt_state,
            epoch=ckpt.epoch,
            step=ckpt.step,
            batch=int(extra.get("batch", 0)),
            history=history,
            carried_loss=float(extra.get("loss_sum", 0.0)),
            carried_seen=int(extra.get("seen", 0)),
        )

    # --- prediction -------------------------------------------------------------------------

    def _compute_backend(self, X: Any) -> Backend:
        """``backend`` if set; else the backend of the input arrays (PyTorch tensors in, PyTorch
        computes); else ``ANYNET_BACKEND`` or NumPy."""
        if self.backend is not None:
            return get_backend(self.backend)
        return backend_of(X) or get_backend(None)

    def _forward_proba(self, X, *, log: bool = False) -> tuple[Any, Backend, Backend | None]:
        """Probabilities on the compute backend, and the backend the caller's arrays live on
        (``None`` for NumPy and lists)."""
        check_is_fitted(self, "coefs_")
        caller = backend_of(X)
        be = self._compute_backend(X)
        Xh = self._validate_X(X, reset=False)
        model, _, link = self._build(self.n_features_in_, len(self.classes_))
        self._model = model
        params = self._device_params(be)
        dummy = np.zeros(len(Xh), dtype=np.int64)
        loader = self._loader(Xh, dummy, batch_size=4096, shuffle=False, seed=0, backend=be)
        xp = be.xp
        outs = []
        for Xb, _ in loader:
            out = model(params, Xb, xp=xp)
            if link == "softmax":
                # log_softmax of the logits stays finite where log(softmax) would be -inf.
                out = nn.functional.log_softmax(out, xp=xp)
            elif link == "sigmoid":  # per-class sigmoids, normalised over the classes
                out = nn.functional.sigmoid(out, xp=xp)
                out = xp.log(out) - xp.log(xp.sum(out, axis=1, keepdims=True))
            outs.append(out if log else xp.exp(out))  # link "exp": the net gives log-probs
        return xp.concat(outs, axis=0), be, caller

    @staticmethod
    def _hand_back(x: Any, be: Backend, caller: Backend | None) -> Any:
        """Arrays in, arrays out: NumPy for NumPy callers, the caller's library otherwise."""
        if caller is None:
            return be.to_numpy(x)
        if caller.spec == be.spec:
            return x
        return caller.asarray(be.to_numpy(x))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order.

        NumPy (or list) input gives a NumPy array; an array of another library (a PyTorch
        tensor, a CuPy array) gives an array of that library, on its device.
        """
        proba, be, caller = self._forward_proba(X)
        return self._hand_back(proba, be, caller)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        log_proba, be, caller = self._forward_proba(X, log=True)
        return self._hand_back(log_proba, be, caller)

    def predict(self, X):
        """The most probable class of each sample, as labels from ``classes_`` (a NumPy
        array, or for numeric labels an array of the caller's library)."""
        proba, be, caller = self._forward_proba(X)
        codes = be.to_numpy(be.xp.argmax(proba, axis=1))
        labels = self.classes_[codes]
        if caller is not None and np.issubdtype(self.classes_.dtype, np.number):
            return caller.asarray(labels)
        return labels

    # --- scikit-learn plumbing --------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags

    def __getstate__(self):
        # Device arrays and backend handles stay behind: the NumPy coefs_ are the model.
        state = self.__dict__.copy()
        for key in ("_opt_state", "_opt_backend", "_model"):
            state.pop(key, None)
        return state

    def _export(self) -> tuple[nn.Sequential, dict[str, np.ndarray], dict[str, Any]]:
        """The network, host parameters and metadata that :func:`anynet.save` writes."""
        check_is_fitted(self, "coefs_")
        model, _, _ = self._build(self.n_features_in_, len(self.classes_))
        params = {}
        names = [name for name in model.param_shapes() if name.endswith(".W")]
        for name, W, b in zip(names, self.coefs_, self.intercepts_, strict=True):
            params[name] = np.asarray(W)
            params[name[:-2] + ".b"] = np.asarray(b)
        classes = self.classes_.tolist()
        try:
            json.dumps(classes)
        except TypeError:
            raise ValueError(
                "anynet.save stores class labels as JSON: numbers, strings or booleans; "
                f"these classes are not: {classes[:5]!r}"
            ) from None
        hyper = {
            k: v
            for k, v in self.get_params().items()
            if k not in ("backend", "random_state", "checkpoint_dir")
        }
        hyper["hidden_layer_sizes"] = (
            list(self._hidden)
            if hasattr(self, "_hidden")
            else list(np.atleast_1d(self.hidden_layer_sizes).tolist())
        )
        meta = {
            "estimator": "NNClassifier",
            "params": hyper,
            "classes": classes,
            "classes_dtype": str(self.classes_.dtype),
            "n_features_in": int(self.n_features_in_),
            "n_iter": int(self.n_iter_),
            "loss_curve": [float(v) for v in self.loss_curve_],
            "history": {k: [float(x) for x in v] for k, v in getattr(self, "history_", {}).items()},
        }
        std = getattr(self, "_standardizer", None)
        if std is not None:
            meta["standardizer"] = {"mean": np.asarray(std.mean), "std": np.asarray(std.std)}
        return model, params, meta


def _validator(model, loss: str, loader: DataLoader, be: Backend):
    """Accuracy and loss over a loader, with one read from the device."""
    loss_fn = nn.step.get_loss(loss)
    xp = be.xp

    def validate(params) -> dict[str, float]:
        correct, total = [], []
        for Xb, yb in loader:
            out = model(params, Xb, xp=xp)
            value, _ = loss_fn(out, yb, reduction="sum", xp=xp)
            correct.append(xp.sum(xp.astype(xp.argmax(out, axis=1) == yb, xp.int64)))
            total.append(value)
        host = be.to_numpy(
            xp.stack([xp.astype(xp.stack(correct), total[0].dtype), xp.stack(total)])
        )
        n = loader.n_samples
        return {"val_accuracy": float(host[0].sum()) / n, "val_loss": float(host[1].sum()) / n}

    return validate


def _seed(random_state: Any) -> int:
    """An int seed from scikit-learn's ``random_state`` conventions."""
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _is_backend_array(x: Any) -> bool:
    """An array of an Array API library other than NumPy (PyTorch tensors included, which
    array-api-compat recognises although they lack ``__array_namespace__``)."""
    return is_array_api_obj(x) and not isinstance(x, np.ndarray | np.generic)


def _to_host(x: Any) -> Any:
    """Backend arrays (CuPy, PyTorch, array-api-strict) to NumPy; anything else as it is."""
    return to_numpy(x) if _is_backend_array(x) else x


def save(model: NNClassifier, path: str | os.PathLike) -> Path:
    """Write a fitted :class:`NNClassifier` to ``path`` as a safetensors file.

    The weights are tensors; the architecture, hyper-parameters, classes and input scaling are
    JSON metadata with an integrity digest. The write is atomic: a crash leaves the previous
    file, never half of a new one. Load it with :func:`load` on any backend.
    """
    from anynet.io import save_network

    if not isinstance(model, NNClassifier):
        raise TypeError(f"anynet.save takes a fitted NNClassifier; got {type(model).__name__}")
    network, params, meta = model._export()
    return save_network(path, network, params, metadata=meta)


def load(path: str | os.PathLike, backend: str | Backend | None = None) -> NNClassifier:
    """Read a model written by :func:`save`, ready to predict on ``backend``.

    Nothing in the file is executed or imported: the architecture can name only anynet's own
    layers, and a tampered, truncated or mismatched file raises
    :class:`~anynet.errors.ModelFileError`.
    """
    from anynet.data import Standardizer
    from anynet.errors import ModelFileError
    from anynet.io import load_network

    network, params, meta = load_network(path, backend="numpy")
    if meta.get("estimator") != "NNClassifier":
        raise ModelFileError(f"{path}: holds a network, not an NNClassifier saved by anynet.save")
    try:
        hyper = dict(meta["params"])
        hyper["hidden_layer_sizes"] = tuple(hyper["hidden_layer_sizes"])
        clf = NNClassifier(**hyper, backend=backend)
        clf._check_params()
        clf.classes_ = np.asarray(meta["classes"], dtype=meta["classes_dtype"])
        clf.n_features_in_ = int(meta["n_features_in"])
        clf.n_iter_ = int(meta["n_iter"])
        clf.loss_curve_ = [float(v) for v in meta["loss_curve"]]
        clf.history_ = {k: [float(x) for x in v] for k, v in meta["history"].items()}
        clf._standardizer = (
            Standardizer(meta["standardizer"]["mean"], meta["standardizer"]["std"])
            if "standardizer" in meta
            else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: the classifier's metadata is incomplete or invalid "
            f"({type(exc).__name__}: {exc})"
        ) from None
    expected, _, _ = clf._build(clf.n_features_in_, len(clf.classes_))
    if expected != network:
        raise ModelFileError(f"{path}: the stored network does not match its hyper-parameters")
    names = [name for name in network.param_shapes() if name.endswith(".W")]
    clf.coefs_ = [params[n] for n in names]
    clf.intercepts_ = [params[n[:-2] + ".b"] for n in names]
    clf.n_layers_, clf.n_outputs_ = len(clf._hidden) + 2, len(clf.classes_)
    clf.out_activation_ = "logistic" if clf.output == "sigmoid" else "softmax"
    clf.best_loss_ = min(clf.loss_curve_) if clf.loss_curve_ else None
    clf.t_ = 0
    return clf
