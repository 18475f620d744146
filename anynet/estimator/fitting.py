"""The training machinery :class:`~anynet.estimator.NNClassifier` and
:class:`~anynet.estimator.NNRegressor` share: a fit in phases (data, step, run, record), its
optimizer, data-parallel ranks and loaders.

A subclass gives what differs between them: its network and loss (``_network``), how it checks
and encodes the data (``_prepare_data``), what ``y`` is to a loader (``_targets``), its
validation score (``_VAL_SCORE`` and ``_validator``) and its output attributes
(``_record_outputs``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from anynet import nn
from anynet.backends import Backend, derive_seed, to_numpy
from anynet.data import DataLoader, Standardizer
from anynet.distributed import DataParallelStep, from_setting
from anynet.distributed.agree import check_same_run
from anynet.errors import ArgumentError
from anynet.estimator.base import NetworkEstimator
from anynet.estimator.images import ImageInputs
from anynet.estimator.network import SCALINGS, build_optimizer, weight_layers
from anynet.estimator.runs import CheckpointedRun
from anynet.training import (
    Callback,
    Checkpointer,
    EarlyStopping,
    ProgressBar,
    TrainState,
    read_checkpoint,
    select_step,
    train,
)

__all__ = ["FitData", "NetworkFit"]


@dataclass
class FitData:
    """A fit's data, checked and encoded on the host."""

    X: np.ndarray
    y: np.ndarray  # int64 positions in classes_
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    n_samples: int  # before the validation split
    w: np.ndarray | None = None  # each training sample's weight (sample and class weights)
    w_val: np.ndarray | None = None  # each validation sample's (early_stopping's split)


class NetworkFit(CheckpointedRun, ImageInputs, NetworkEstimator):
    """An estimator that trains an anynet network with scikit-learn's MLP hyper-parameters;
    see the module's notes for what a subclass gives."""

    #: The ranks of a data-parallel fit in progress (``distributed``), else None.
    _communicator = None
    #: The ``history_`` entry that ``early_stopping`` watches and ``validation_scores_`` keeps.
    _VAL_SCORE = "val_score"

    def _prepare_data(self, X, y, warm, incremental, validation_data, seed, sample_weight):
        """Phase 1: the data checked and encoded on the host, as :class:`FitData`."""
        raise NotImplementedError

    def _targets(self) -> dict[str, Any]:
        """What a loader is told about ``y`` (its ``num_classes`` or ``targets``)."""
        raise NotImplementedError

    def _validator(self, step: nn.Step, loader: DataLoader, be: Backend, data: FitData) -> Any:
        """``validate(params) -> {self._VAL_SCORE: ..., 'val_loss': ...}`` over ``loader``, the
        loader of ``data.X_val`` and ``data.y_val``."""
        raise NotImplementedError

    def _record_outputs(self) -> None:
        """Set ``n_outputs_`` and ``out_activation_``."""
        raise NotImplementedError

    def _optimizer(
        self, steps_per_epoch: int = 1, samples_per_epoch: int = 1, incremental: bool = False
    ) -> Any:
        rate, schedule = float(self.learning_rate_init), self.learning_rate
        if incremental and schedule == "invscaling" and self.solver == "sgd":
            # partial_fit: one epoch at the rate of the samples seen so far, as scikit-learn's
            # (the step count goes on across calls, and their sizes differ)
            rate, schedule = rate / (self.t_ + 1) ** float(self.power_t), "constant"
        return build_optimizer(
            self.solver,
            rate,
            momentum=float(self.momentum),
            nesterov=bool(self.nesterovs_momentum),
            beta_1=float(self.beta_1),
            beta_2=float(self.beta_2),
            epsilon=float(self.epsilon),
            schedule=schedule,
            total_steps=int(self.max_iter) * steps_per_epoch,
            steps_per_epoch=steps_per_epoch,
            samples_per_epoch=samples_per_epoch,
            power_t=float(self.power_t),
        )

    # --- fitting ----------------------------------------------------------------------------

    def _fit(
        self, X, y, *, incremental: bool, validation_data, callbacks, sample_weight=None
    ) -> NetworkFit:
        self._check_params()
        # Continue from the current parameters (partial_fit, or fit with warm_start)?
        warm = "params_" in vars(self) and (incremental or self.warm_start)
        be = self._compute_backend(X)
        comm = self._communicator = self._join(be)
        checkpoint = self._checkpoint_path()
        resume = self._resuming(checkpoint, warm, incremental)
        seed = self._run_seed(checkpoint if resume else None)
        if comm is not None:  # random_state=None drew a seed on each rank: rank 0's holds
            seed = comm.bcast(seed)
        data = self._prepare_data(X, y, warm, incremental, validation_data, seed, sample_weight)
        run = self._run_record(data.X, data.y, seed, data.w)
        if comm is not None:
            check_same_run(comm, run)
        step, state, rate = self._prepare_step(data, be, warm, incremental, seed, run, resume)
        state, stopper = self._run(
            step, state, data, be, incremental, seed, run, callbacks or (), rate
        )
        self._record(state, stopper, data, incremental)
        return self

    def _join(self, be: Backend) -> Any:
        """The communicator of a data-parallel fit (see ``distributed``), or None. Its ranks
        are one writer of checkpoints: rank 0's."""
        comm = from_setting(self.distributed, be)
        if comm is not None:
            self._checkpoint_writer_id = comm.bcast(self._writer_id())
        return comm

    def _batch_size(self, n: int) -> int:
        batch_size = min(200, n) if self.batch_size == "auto" else int(self.batch_size)
        return min(batch_size, n)

    def _prepare_step(self, data: FitData, be, warm, incremental, seed, run, resume):
        """Phase 2: the network, where its parameters and optimizer state start (fresh, the
        current ones, or a checkpoint's), as a training step on the device; where the run
        starts; and the optimizer's learning rate (a number or a schedule)."""
        model, loss, _ = self._network()
        if not warm or resume:  # a resumed fit's attributes are its checkpoint's run's
            scaling = SCALINGS[self.standardize]
            self._standardizer = Standardizer.fit(data.X) if scaling == "standardize" else None
            params = model.init_params(rng=be.host_generator(seed), backend=be, dtype=self.dtype)
            self.loss_curve_, self.t_, self.n_iter_, self.history_ = [], 0, 0, {}
            self.best_loss_ = math.inf
            self.validation_scores_ = [] if self.early_stopping and not incremental else None
            self.best_validation_score_ = -math.inf if self.validation_scores_ is not None else None
        if warm:
            params = self._device_params(model, be)
        opt_state = None
        if incremental and getattr(self, "_opt_backend", None) == be.spec:
            opt_state = self._opt_state  # partial_fit continues the optimizer too
        state = TrainState(history={"loss": []})
        if resume:
            shapes = model.param_shapes()
            path = self._checkpoint_path()
            state, ckpt = read_checkpoint(
                path,
                backend=be,
                param_shapes=shapes,
                run=run,
                dtype=self.dtype,
                divergence_factor=self.divergence_factor,
                statistics=model.statistics(),
            )
            if state.epoch > int(self.max_iter):
                raise ArgumentError(
                    f"max_iter={self.max_iter}, but the checkpoint's run has trained "
                    f"{state.epoch} epochs already: resuming cannot undo epochs. Pass "
                    f"max_iter >= {state.epoch} to finish or extend that run, or start afresh "
                    "in another checkpoint_dir."
                )
            params, opt_state = ckpt.params, ckpt.opt_state
        per_epoch = math.ceil(len(data.X) / self._batch_size(len(data.X)))
        optimizer = self._optimizer(per_epoch, len(data.X), incremental)
        step = select_step(model, optimizer, params, opt_state, backend=be, loss=loss)
        if self._communicator is not None:
            step = DataParallelStep(step, self._communicator)
        return step, state, optimizer.spec[1]["learning_rate"]

    def _run(self, step, state, data: FitData, be, incremental, seed, run, extra, rate=None):
        """Phase 3: the training loop, with early stopping, checkpoints and progress."""
        batch_size = self._batch_size(len(data.X))
        if self.batch_size != "auto" and int(self.batch_size) > len(data.X):
            warnings.warn(
                f"batch_size={self.batch_size} is larger than the {len(data.X)} samples: "
                "clipped to the sample count",
                UserWarning,
                stacklevel=4,
            )
        shuffle_seed = derive_seed(seed, 0, 2)
        loader = self._loader(
            data.X,
            data.y,
            batch_size,
            bool(self.shuffle),
            shuffle_seed,
            be,
            train=True,
            sample_weight=data.w,
        )
        validate = None
        if data.X_val is not None:
            val_loader = self._loader(data.X_val, data.y_val, self._eval_batch, False, 0, be)
            validate = self._validator(step, val_loader, be, data)
        callbacks: list[Callback] = []
        stopper = None
        reduce = rate if isinstance(rate, nn.schedules.ReducibleSchedule) else None
        if not incremental:
            stopper = EarlyStopping(
                self._VAL_SCORE if self.early_stopping else "loss",
                tol=float(self.tol),
                patience=int(self.n_iter_no_change),
                restore_best=bool(self.early_stopping),
                reduce=reduce,
            )
            callbacks.append(stopper)
        elif reduce is not None:
            # partial_fit with learning_rate='adaptive': as in scikit-learn, the epochs without
            # improvement and the divisions of the rate carry over from call to call
            stopper = EarlyStopping(
                "loss", tol=float(self.tol), patience=int(self.n_iter_no_change), reduce=reduce
            )
            plateau = getattr(self, "_plateau", (math.inf, 0, 0))
            stopper.best, stopper.no_improvement, reduce.reductions = plateau
            callbacks.append(stopper)
        # In a data-parallel fit rank 0 alone writes and prints: the ranks' states are one.
        writer = self._communicator is None or self._communicator.is_root
        if self.checkpoint_dir is not None and writer:
            checkpointer = Checkpointer(
                self.checkpoint_dir,
                every=int(self.checkpoint_every),
                every_steps=self.checkpoint_steps,
                run=run,
                meta={"writer": self._writer_id()},
            )
            callbacks.append(checkpointer)
        if self.verbose and writer:
            callbacks.append(ProgressBar())
        state = train(
            step,
            loader,
            epochs=1 if incremental else int(self.max_iter),
            seed=seed,
            state=state,
            l1=float(self.l1),
            l2=float(self.alpha),
            l2_per_sample=True,
            validate=validate,
            callbacks=[*callbacks, *extra],
            backend=be,
            divergence_factor=self.divergence_factor,
        )
        return state, stopper

    def _record(self, state, stopper, data: FitData, incremental: bool) -> None:
        """Phase 4: the fitted attributes, in scikit-learn's shapes."""
        best = stopper.best_params if stopper is not None else None
        # Copies: a fused step's parameters are views into buffers it would go on updating.
        self.params_ = {k: np.array(to_numpy(v)) for k, v in (best or state.params).items()}
        self._opt_state, self._opt_backend = state.opt_state, state._backend.spec
        self.step_name_ = state.path
        if stopper is not None and stopper.reduce is not None:  # learning_rate='adaptive'
            # what partial_fit continues from: scikit-learn's optimizer keeps its rate
            waited = stopper.no_improvement if stopper.monitor == "loss" else 0
            best = stopper.best if stopper.monitor == "loss" else math.inf
            self._plateau = (best, waited, stopper.reduce.reductions)
        else:
            vars(self).pop("_plateau", None)
        # This call's epochs (a partial_fit runs one; a resumed fit, the whole run's).
        for k, v in state.history.items():
            self.history_.setdefault(k, []).extend(v)
        self.loss_curve_.extend(state.history["loss"])
        self.n_iter_ += state.epoch
        self.t_ += data.n_samples * state.epoch
        self.n_layers_ = weight_layers(self._network()[0]) + 1  # and the input layer
        self._record_outputs()
        if self.early_stopping and not incremental:
            self.validation_scores_ = list(state.history.get(self._VAL_SCORE, []))
            self.best_validation_score_ = max(self.validation_scores_)
            self.best_loss_ = None
        else:
            self.best_loss_ = min(self.loss_curve_)
        if not incremental and not state.stop and state.epoch >= self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    # --- data -------------------------------------------------------------------------------

    def _loader(
        self, X, y, batch_size, shuffle, seed, backend, *, train=False, sample_weight=None
    ) -> DataLoader:
        images = getattr(self, "image_shape_", None) is not None
        return DataLoader(
            self._shaped(X),
            y,
            batch_size,
            shuffle=shuffle,
            backend=backend,
            seed=seed,
            dtype=self.dtype,
            normalize=SCALINGS[self.standardize],
            standardizer=getattr(self, "_standardizer", None),
            **self._targets(),
            flatten=not images,
            augment=self.augment if train else None,
            shard=self._communicator.shard if train and self._communicator else None,
            sample_weight=sample_weight,
        )
