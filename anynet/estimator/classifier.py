"""``NNClassifier``: a scikit-learn estimator that trains anynet networks on any backend.

It takes ``MLPClassifier``'s parameters and fills its fitted attributes, so code written for
scikit-learn's network runs unchanged, and adds anynet's own: ``backend`` (NumPy, CuPy, PyTorch,
array-api-strict), ``dtype``, an L1 penalty, the initializer, the output layer, input scaling,
dropout and checkpoints. What it shares with any anynet estimator (the fitted ``params_``,
arrays in and out) is :class:`~anynet.estimator.base.NetworkEstimator`'s; a fit's phases (data,
step, run, record) are :class:`~anynet.estimator.fitting.NetworkFit`'s, shared with the
regressor.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted

from anynet import nn
from anynet.backends import Backend, backend_of, derive_seed
from anynet.checks import check_choice
from anynet.data.arguments import check_sample_weight
from anynet.errors import DataError
from anynet.estimator.fitting import FitData, NetworkFit
from anynet.estimator.inputs import class_weights, encode_labels, to_host
from anynet.estimator.network import OUTPUTS, build_network, log_probabilities
from anynet.estimator.network import validator as _validator
from anynet.estimator.params import check_params

__all__ = ["NNClassifier"]


class NNClassifier(ClassifierMixin, NetworkFit):
    """A neural-network classifier trained by anynet's hand-written backprop: a multi-layer
    perceptron by default, or a convolutional network (``network='cnn'``) or any anynet
    network.

    Parameters shared with scikit-learn's ``MLPClassifier`` mean what they mean there:

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Units of each hidden layer.
    activation : {'relu', 'tanh', 'logistic', 'identity', 'sigmoid', 'leaky_relu', ...}
        Hidden-layer activation (``'sigmoid'`` is ``'logistic'``); every activation of
        :data:`anynet.nn.ACTIVATIONS` is offered.
    solver : {'adam', 'sgd', 'adamw'}
        The optimizer. ``'lbfgs'`` is not offered: it needs the whole data set per step.
    alpha : float, default 1e-4
        L2 penalty, scaled as scikit-learn does (``alpha / 2 * ||W||^2 / batch size``).
    batch_size : int or 'auto'
        ``'auto'`` is ``min(200, n_samples)``.
    learning_rate_init : float
        The learning rate (the first, with a schedule).
    learning_rate : {'constant', 'invscaling', 'adaptive', 'cosine'}
        scikit-learn's schedules, for ``solver='sgd'`` only as there (Adam and AdamW keep
        ``learning_rate_init``, with a warning): ``'invscaling'`` trains each epoch at
        ``learning_rate_init / (t + 1) ** power_t``, ``t`` the samples seen before it;
        ``'adaptive'`` divides the rate by 5 whenever ``n_iter_no_change`` epochs in a row
        miss ``tol`` (as early stopping counts them), and stops only once the rate is 1e-6 or
        less. ``'cosine'``, anynet's, decays the rate from ``learning_rate_init`` to 0 along
        half a cosine over ``max_iter`` epochs of steps, for any solver. Rates follow the
        optimizer's step count (and the adaptive divisions are checkpointed), so a resumed
        run continues its schedule exactly. A ``warm_start`` fit starts its schedule afresh;
        ``partial_fit`` continues it (``'invscaling'`` from ``t_``). With momentum, anynet's
        SGD is PyTorch's: the rate scales the whole momentum sum, so a new rate applies to it
        at once, where scikit-learn's velocity keeps the steps taken at the old one.
    power_t : float, default 0.5
        The exponent of ``'invscaling'``.
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
        ``fit`` continues from the current parameters.
    verbose : bool
        Show progress on stderr (epoch, loss, validation accuracy, samples/s): a bar on a
        terminal, one line per epoch elsewhere (a log, a pipe).
    backend : str or Backend, optional
        Where training runs: ``'numpy'``, ``'cupy'``, ``'torch'``, ``'array_api_strict'``...
        ``None`` follows the input arrays' library, else ``ANYNET_BACKEND``, else NumPy.
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
    resume : bool or 'auto'
        ``True``: continue from the checkpoint in ``checkpoint_dir`` (refused if there is none:
        a mistyped folder must not start a run afresh); ``'auto'``: continue from it if there is
        one, else start (a job that may be preempted and rerun). The checkpoint must be of this
        run (the same network, solver settings, batch size, seed and data: a
        :class:`~anynet.errors.CheckpointMismatchError` lists any difference); with
        ``random_state=None`` the run's own seed is taken from the checkpoint. A resumed fit's
        ``n_iter_``, ``loss_curve_`` and ``history_`` are those of the checkpoint's run. Without
        ``resume``, a fit refuses a ``checkpoint_dir`` holding a checkpoint that this estimator
        did not write (another run's, which it would overwrite).
    divergence_factor : float or None, default 100
        Stop with :class:`~anynet.errors.DivergenceError` once a batch's loss exceeds this many
        times the run's first (a learning rate far too high), before any checkpoint holds the
        diverged parameters; ``None`` turns the check off. NaN and infinite losses always stop.
    network : None, 'cnn' or anynet layer
        ``None``: the multi-layer perceptron of ``hidden_layer_sizes``, ``activation`` and
        ``dropout``. ``'cnn'``: the default convolutional network
        (:func:`~anynet.estimator.network.default_cnn`: three blocks of convolution, batch
        norm, ReLU and max-pooling, then ``dropout`` and a Dense layer), for images. An anynet
        layer (usually an :class:`anynet.nn.Sequential`) is trained as given: it maps a batch
        to one logit per class, and ``output`` adds the output layer and loss as for the MLP.
    image_shape : tuple of 3 int, optional
        ``(channels, height, width)`` of one sample, for a network other than the MLP when
        ``X`` comes as rows of pixels. Images given as ``(n, height, width)`` or
        ``(n, channels, height, width)`` arrays bring their own shape. The MLP always takes
        flat rows.
    augment : anynet.data.RandomCropFlip, optional
        Random crops and flips of the training images, drawn on the device as a function of
        (seed, epoch, batch), so a resumed run sees what an uninterrupted one would; for a
        network that takes images.
    distributed : bool, 'deterministic' or anynet.distributed.Communicator
        ``True``: train data-parallel on the processes an MPI launcher started (``mpiexec -n
        4 python -m mpi4py script.py``: every rank runs the same script with the same data
        and settings). Each rank trains on its part of every batch of ``batch_size`` (the
        global batch), the ranks sum their gradients each step, and all end with the same
        ``params_``; only rank 0 shows progress and writes checkpoints. ``'deterministic'``
        sums in rank order (the same bits whatever MPI's algorithm). A
        :class:`~anynet.distributed.Communicator` is used as given. Needs mpi4py
        (``pip install 'anynet-nn[mpi]'``); see the README's "Distributed training".
    class_weight : dict, 'balanced' or None
        Weights of the classes, multiplying the samples' weights (``sample_weight``) in the
        loss: ``{label: weight}`` (labels not named weigh 1), or ``'balanced'``,
        ``n_samples / (n_classes * np.bincount(y))`` as in scikit-learn's linear models (not
        with ``partial_fit``, whose calls see only part of the data).

    Attributes
    ----------
    params_ : dict of str to numpy.ndarray
        The network's parameters by name (``'0.W'``, ``'0.b'``, ...): the fitted model.
    coefs_, intercepts_ : list of numpy.ndarray
        The weight matrices and bias vectors of ``params_``, layer by layer (the same arrays).
    classes_, n_features_in_, loss_curve_, n_iter_, t_, best_loss_, validation_scores_,
    best_validation_score_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn's ``MLPClassifier``.
    history_ : dict of list
        Per-epoch metrics: ``loss``, ``epoch_seconds`` and, with validation, ``val_accuracy``
        and ``val_loss``.
    step_name_ : str
        Which training step the last fit ran: ``'generic'`` or a fused step's name
        (``'fused cpu + numba'``, ``'fused cuda'``).
    image_shape_ : tuple of 3 int or None
        The ``(channels, height, width)`` the network takes; ``None`` for flat rows.
    """

    # What defines a run besides its network, batch size, seed, classes and data.
    _RUN_KEYS = (
        "solver", "learning_rate_init", "momentum", "nesterovs_momentum", "beta_1", "beta_2",
        "epsilon", "alpha", "l1", "dtype", "shuffle", "standardize", "output", "early_stopping",
        "validation_fraction", "tol", "n_iter_no_change", "augment", "learning_rate", "power_t",
    )  # fmt: skip

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
        divergence_factor=100.0,
        network=None,
        image_shape=None,
        augment=None,
        learning_rate="constant",
        power_t=0.5,
        distributed=False,
        class_weight=None,
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
        self.divergence_factor = divergence_factor
        self.network = network
        self.image_shape = image_shape
        self.augment = augment
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.distributed = distributed
        self.class_weight = class_weight

    # --- parameters -------------------------------------------------------------------------

    _VAL_SCORE = "val_accuracy"

    def _check_params(self) -> None:
        check_params(self)
        check_choice("output", self.output, OUTPUTS)

    def _network(self) -> tuple[nn.Sequential, str, str]:
        """The network for the fitted data's shape, its loss and its output link."""
        return build_network(
            self.n_features_in_,
            self._hidden,
            len(self.classes_),
            activation=self.activation,
            output=self.output,
            dropout=float(self.dropout),
            init=self.init,
            network=self.network,
            image_shape=getattr(self, "image_shape_", None),
        )

    # --- fitting ----------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, validation_data=None, callbacks=None):
        """Train on ``X`` (samples in rows; images are flattened) and labels ``y``.

        ``sample_weight`` (one weight >= 0 per sample) weighs each sample's loss as in
        scikit-learn: each batch's loss is the weighted average ``sum(w * loss) / sum(w)``
        (and ``alpha``'s penalty is divided by ``sum(w)``), so a weight of 2 counts a sample
        twice and 0 leaves it out. With ``early_stopping`` the weights are split with the
        samples, and the validation accuracy and loss are weighted averages.

        ``validation_data=(X_val, y_val)`` records ``val_accuracy`` and ``val_loss`` in
        ``history_`` each epoch without changing how training runs (unlike
        ``early_stopping``, which holds data out and may stop). ``callbacks`` are
        :class:`anynet.training.Callback` objects handed to the training loop.
        """
        return self._fit(
            X,
            y,
            incremental=False,
            validation_data=validation_data,
            callbacks=callbacks,
            sample_weight=sample_weight,
        )

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X, y``, continuing from the current weights and optimizer state.

        ``classes`` (every label that will ever appear) is required on the first call;
        ``sample_weight`` weighs the samples as in :meth:`fit`.
        """
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: one call sees only "
                "part of the data, so its class counts would change from call to call. Compute "
                "the weights once, sklearn.utils.class_weight.compute_class_weight('balanced', "
                "classes=classes, y=y) on (a large enough sample of) all the labels, and pass "
                "them as class_weight=dict(zip(classes, weights))."
            )
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.classes_ = unique_labels(np.asarray(classes))
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(
                f"classes={list(classes)!r} differs from the classes of the first call, "
                f"{list(self.classes_)!r}"
            )
        return self._fit(
            X,
            y,
            incremental=True,
            validation_data=None,
            callbacks=None,
            sample_weight=sample_weight,
        )

    def _prepare_data(
        self, X, y, warm: bool, incremental: bool, validation_data, seed, sample_weight=None
    ) -> FitData:
        """Phase 1: check and encode the data on the host; hold out a validation split."""
        sample = self._sample_shape(X)
        X, y = self._validate_X_y(X, y, reset=not warm)
        if warm:
            self._check_image_shape(sample)
        else:
            self.image_shape_ = self._fit_image_shape(sample, X.shape[1])
        missing = (
            np.flatnonzero(np.asarray([v is None for v in y.tolist()])) if y.dtype == object else []
        )
        if len(missing):
            raise DataError(
                f"y holds None at positions {missing[:10].tolist()}: every sample needs a label; "
                "drop the unlabelled samples or label them"
            )
        check_classification_targets(y)
        if not incremental:
            if not warm:
                self.classes_ = unique_labels(y)
            elif new := set(unique_labels(y).tolist()) - set(self.classes_.tolist()):
                raise ValueError(
                    f"warm_start fit got labels {sorted(new)} that the first fit did not have "
                    f"({list(self.classes_)}); fit without warm_start to learn new classes"
                )
        codes = self._encode(y)
        n_samples = X.shape[0]
        w = check_sample_weight(to_host(sample_weight), n_samples)
        w = class_weights(self.class_weight, self.classes_, codes, w)
        X_val = y_val = w_val = None
        if self.early_stopping and not incremental:
            stratify = codes if np.bincount(codes).min() >= 2 else None
            split = train_test_split(
                X,
                codes,
                *([] if w is None else [w]),
                test_size=self.validation_fraction,
                stratify=stratify,
                random_state=derive_seed(seed, 0, 3),
            )
            X, X_val, codes, y_val = split[:4]
            w, w_val = (None, None) if w is None else split[4:]
        elif validation_data is not None:
            Xv, yv = validation_data
            self._check_image_shape(self._sample_shape(Xv))
            X_val, y_val = self._validate_X(Xv, reset=False), self._encode(np.asarray(yv))
        return FitData(X, codes, X_val, y_val, n_samples, w, w_val)

    # --- data -------------------------------------------------------------------------------

    def _encode(self, y: np.ndarray) -> np.ndarray:
        return encode_labels(y, self.classes_)

    def _targets(self) -> dict[str, Any]:
        return {"num_classes": len(self.classes_)}

    def _validator(self, step, loader, be, data):
        w = None if data.w_val is None else data.w_val.astype(self.dtype)
        return _validator(step, OUTPUTS[self.output][1], loader, be, w)

    def _record_outputs(self) -> None:
        self.n_outputs_ = len(self.classes_)
        self.out_activation_ = "logistic" if self.output == "sigmoid" else "softmax"

    # --- prediction -------------------------------------------------------------------------

    def _forward_proba(self, X, *, log: bool = False) -> tuple[Any, Backend, Backend | None]:
        """Probabilities on the compute backend, and the backend the caller's arrays live on
        (``None`` for NumPy and lists)."""
        check_is_fitted(self, "params_")
        caller = backend_of(X)
        be = self._compute_backend(X)
        self._check_image_shape(self._sample_shape(X))
        Xh = self._validate_X(X, reset=False)
        model, _, link = self._network()
        params = self._device_params(model, be)
        dummy = np.zeros(len(Xh), dtype=np.int64)
        loader = self._loader(Xh, dummy, self._eval_batch, False, 0, be)
        xp = be.xp
        outs = []
        with warnings.catch_warnings():
            # Overflow warnings say less than the check below, which names the cause.
            warnings.simplefilter("ignore", RuntimeWarning)
            for Xb, _ in loader:
                out = log_probabilities(model(params, Xb, xp=xp), link, xp)
                outs.append(out if log else xp.exp(out))
            result = xp.concat(outs, axis=0)
        if not bool(xp.all(xp.isfinite(result) | (xp.isinf(result) & (result < 0)))):
            # log(0) = -inf is a probability; NaN or +inf comes from weights that overflow
            largest = max(float(np.max(np.abs(v))) for v in self.params_.values())
            raise ValueError(
                f"the model's outputs are not finite for some of these {len(Xh)} samples: its "
                f"parameters (largest magnitude {largest:.3g}) overflow {self.dtype} on them. "
                "Refit the model, check where its parameters came from, or the inputs' scale."
            )
        return result, be, caller

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
