"""An estimator's hyper-parameters, checked before a fit uses any of them: each refusal names
the parameter, what it must be and what came."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from anynet import nn
from anynet.checks import check_choice, check_int, check_number, fail
from anynet.data import RandomCropFlip
from anynet.estimator.network import (
    ACTIVATIONS,
    NETWORKS,
    SCALINGS,
    SCHEDULES,
    SGD_SCHEDULES,
    SOLVERS,
)

__all__ = ["check_params"]


def check_params(est: Any) -> None:
    """Check an estimator's hyper-parameters, each with an error that names it; sets
    ``est._hidden``, the hidden layer sizes as a tuple."""
    sizes = est.hidden_layer_sizes
    try:
        sizes = (check_int("hidden_layer_sizes", sizes),) if np.ndim(sizes) == 0 else sizes
        est._hidden = tuple(check_int("hidden_layer_sizes", h, minimum=1) for h in sizes)
    except (TypeError, ValueError):
        raise fail(
            "hidden_layer_sizes", "a tuple of integers >= 1", est.hidden_layer_sizes
        ) from None
    check_choice("activation", est.activation, ACTIVATIONS)
    lbfgs = "lbfgs needs the whole data set per step; use 'adam'"
    check_choice("solver", est.solver, SOLVERS, lbfgs if est.solver == "lbfgs" else "")
    check_choice("learning_rate", est.learning_rate, SCHEDULES)
    if est.learning_rate in SGD_SCHEDULES and est.solver != "sgd":
        warnings.warn(
            f"learning_rate={est.learning_rate!r} applies to solver='sgd' only, as in "
            f"scikit-learn: solver={est.solver!r} trains at the constant "
            f"learning_rate_init={est.learning_rate_init!r}. Pass solver='sgd' for it, or "
            "learning_rate='cosine' for a schedule that any solver follows.",
            UserWarning,
            stacklevel=5,
        )
    if not isinstance(est.standardize, bool | str | None):
        raise fail("standardize", "True, False, 'unit' or 'symmetric'", est.standardize)
    check_choice("standardize", est.standardize, SCALINGS)
    check_choice("dtype", est.dtype, ("float32", "float64"))
    for name in ("alpha", "l1", "tol", "power_t"):
        check_number(name, getattr(est, name), low=0.0)
    for name in ("learning_rate_init", "epsilon"):
        check_number(name, getattr(est, name), low=0.0, low_open=True)
    for name in ("momentum", "beta_1", "beta_2", "dropout"):
        check_number(name, getattr(est, name), low=0.0, high=1.0, high_open=True)
    check_number(
        "validation_fraction",
        est.validation_fraction,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    for name in ("max_iter", "n_iter_no_change", "checkpoint_every"):
        check_int(name, getattr(est, name), minimum=1)
    if est.checkpoint_steps is not None:
        check_int("checkpoint_steps", est.checkpoint_steps, minimum=1)
    if est.divergence_factor is not None:
        check_number(
            "divergence_factor",
            est.divergence_factor,
            low=1.0,
            low_open=True,
            hint="None turns the divergence check off",
        )
    check_choice("resume", est.resume, (False, True, "auto"))
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        check_int("batch_size", est.batch_size, minimum=1, hint="Or pass 'auto'.")
    if est.init != "pytorch":
        nn.init.get_initializer(est.init)
    if not isinstance(est.network, nn.Layer):
        check_choice(
            "network", est.network, NETWORKS, "Or pass an anynet network (anynet.nn layers)."
        )
    if est.image_shape is not None:
        shape = est.image_shape
        if est.network is None:
            raise fail(
                "image_shape",
                "None for the multi-layer perceptron (it takes flat rows)",
                shape,
                "Pass network='cnn' or an anynet network to train on images.",
            )
        if np.ndim(shape) != 1 or len(shape) != 3:
            raise fail("image_shape", "(channels, height, width), three integers >= 1", shape)
        for size in shape:
            check_int("image_shape", size, minimum=1)
    if est.augment is not None:
        if not isinstance(est.augment, RandomCropFlip):
            raise fail("augment", "None or an anynet.data.RandomCropFlip", est.augment)
        if est.network is None:
            raise fail(
                "augment",
                "None for the multi-layer perceptron (it takes flat rows)",
                est.augment,
                "Pass network='cnn' or an anynet network to augment images.",
            )
