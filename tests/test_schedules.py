"""Learning-rate schedules: the formula, the generic and fused steps following it alike, and the
estimator's ``learning_rate='cosine'`` continuing exactly across a resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.errors import ArgumentError
from anynet.estimator import NNClassifier
from anynet.training import Callback, select_step

rng = np.random.default_rng(3)


def test_cosine_decay_follows_its_formula():
    lr = nn.schedules.cosine_decay(0.1, 10, final=0.01)
    for count in range(15):
        done = min(count, 10) / 10
        assert lr(count) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * done)))
    assert lr(0) == 0.1 and lr(10) == pytest.approx(0.01) and lr(99) == pytest.approx(0.01)
    assert nn.schedules.constant(0.5)(7) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 0.0, "decay_steps": 5}, "initial must be a number > 0.0"),
        ({"initial": 0.1, "decay_steps": 0}, "decay_steps must be an integer >= 1"),
        ({"initial": 0.1, "decay_steps": 5, "final": 0.2}, r"final must be .*\[0\.0, 0\.1\]"),
    ],
)
def test_bad_schedules_are_refused(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        nn.schedules.cosine_decay(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda lr: nn.adam(lr),
        lambda lr: nn.adamw(lr, weight_decay=0.1),
        lambda lr: nn.sgd(lr, momentum=0.9),
    ],
    ids=["adam", "adamw", "sgd-momentum"],
)
@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.Dense(6, 8), nn.ReLU(), nn.Dense(8, 3)),
        nn.Sequential(
            nn.Conv2D(1, 4, 3, padding="same", bias=False),
            nn.BatchNorm(4),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(4 * 2 * 2, 3),
        ),
    ],
    ids=["mlp", "cnn"],
)
def test_the_fused_step_follows_a_schedule_as_the_generic_one_does(make, model):
    be = anynet.get_backend("numpy")
    params = model.init_params(rng=be.host_generator(0), backend=be, dtype="float64")
    schedule = nn.schedules.cosine_decay(0.05, 6)
    fused = select_step(model, make(schedule), params, backend=be)
    generic = select_step(model, make(schedule), params, backend=be, fast=False)
    assert fused.name.startswith("fused") and generic.name == "generic"
    shape = (16, 6) if model.layers[0].__class__ is nn.Dense else (16, 1, 4, 4)
    for _ in range(8):  # past the schedule's end: the rate stays 0 there
        X, y = rng.normal(size=shape), rng.integers(0, 3, 16)
        fused(be.asarray(X, dtype="float64"), be.asarray(y))
        generic(be.asarray(X, dtype="float64"), be.asarray(y))
    for name, value in generic.params.items():
        np.testing.assert_allclose(fused.params[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
    # and the schedule mattered: a constant rate ends elsewhere
    other = select_step(model, make(0.05), params, backend=be)
    for _ in range(8):
        X, y = rng.normal(size=shape), rng.integers(0, 3, 16)
        other(be.asarray(X, dtype="float64"), be.asarray(y))
    assert not np.allclose(other.params[next(iter(params))], fused.params[next(iter(params))])


def test_a_cosine_run_decays_to_zero_and_resumes_exactly(tmp_path):
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    settings = {
        "hidden_layer_sizes": (8,),
        "learning_rate": "cosine",
        "learning_rate_init": 0.05,
        "max_iter": 4,
        "batch_size": 20,
        "random_state": 0,
        "checkpoint_steps": 5,
    }
    whole = NNClassifier(**settings).fit(X, y)
    # the last epoch's updates are the schedule's smallest: training has settled
    assert whole.loss_curve_[-1] <= whole.loss_curve_[0]

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_step_end(self, state):
            if state.step == 13:
                raise Stop

    with pytest.raises(Stop):
        NNClassifier(**settings, checkpoint_dir=tmp_path).fit(X, y, callbacks=[StopAt()])
    resumed = NNClassifier(**settings, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    for name, value in whole.params_.items():
        np.testing.assert_array_equal(resumed.params_[name], value, err_msg=name)
    # resuming with another schedule is another run
    with pytest.raises(anynet.errors.CheckpointMismatchError, match="learning_rate"):
        NNClassifier(
            **{**settings, "learning_rate": "constant"}, checkpoint_dir=tmp_path, resume=True
        ).fit(X, y)


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ArgumentError, match=r"learning_rate must be one of .*'cosine'"):
        NNClassifier(learning_rate="invscaling").fit(np.zeros((4, 2)), [0, 1, 0, 1])
