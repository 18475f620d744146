"""Learning-rate schedules: the formulas (scikit-learn's own optimizer as the oracle for
``'invscaling'`` and ``'adaptive'``), the generic and fused steps following them alike, and the
estimator's schedules continuing exactly across a resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier
from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

import anynet
from anynet import nn
from anynet.errors import ArgumentError
from anynet.estimator import NNClassifier
from anynet.training import Callback, EarlyStopping, select_step
from anynet.training.callbacks import saved_state_problem

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
@pytest.mark.parametrize(
    "make_schedule",
    [
        lambda: nn.schedules.cosine_decay(0.05, 6),
        lambda: nn.schedules.held(nn.schedules.inverse_scaling(0.05, 0.5, scale=16.0), every=2),
        lambda: nn.schedules.reducible(0.05),
    ],
    ids=["cosine", "invscaling", "adaptive"],
)
def test_the_fused_step_follows_a_schedule_as_the_generic_one_does(make, model, make_schedule):
    be = anynet.get_backend("numpy")
    params = model.init_params(rng=be.host_generator(0), backend=be, dtype="float64")
    schedule = make_schedule()
    fused = select_step(model, make(schedule), params, backend=be)
    generic = select_step(model, make(schedule), params, backend=be, fast=False)
    assert fused.name.startswith("fused") and generic.name == "generic"
    shape = (16, 6) if model.layers[0].__class__ is nn.Dense else (16, 1, 4, 4)
    for _ in range(8):  # the cosine past its end too: its rate stays 0 there
        X, y = rng.normal(size=shape), rng.integers(0, 3, 16)
        fused(be.asarray(X, dtype="float64"), be.asarray(y))
        generic(be.asarray(X, dtype="float64"), be.asarray(y))
        if isinstance(schedule, nn.schedules.ReducibleSchedule):
            schedule.reduce()  # both steps follow a division as it happens
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
    with pytest.raises(
        ArgumentError, match=r"learning_rate must be one of 'constant', 'invscaling', 'adaptive'"
    ):
        NNClassifier(learning_rate="exponential").fit(np.zeros((4, 2)), [0, 1, 0, 1])


# --- scikit-learn's learning_rate='invscaling' and 'adaptive' ------------------------------------


@pytest.mark.parametrize("power_t", [0.5, 0.25, 1.0])
def test_held_inverse_scaling_updates_as_scikit_learns_invscaling(power_t):
    # 50 samples in batches of 16: 4 steps an epoch, the last of 2 samples
    n, per_epoch = 50, 4
    theirs = [np.zeros(7), np.zeros(3)]
    oracle = SGDOptimizer(theirs, 0.1, "invscaling", momentum=0.0, power_t=power_t)
    decay = nn.schedules.inverse_scaling(0.1, power_t, scale=n)
    optimizer = nn.sgd(nn.schedules.held(decay, every=per_epoch))
    ours = {"W": np.zeros(7), "b": np.zeros(3)}
    opt_state = optimizer.init(ours)
    schedule = optimizer.spec[1]["learning_rate"]
    t = 0
    for _epoch in range(6):
        for _ in range(per_epoch):
            grads = [rng.normal(size=7), rng.normal(size=3)]
            assert schedule(opt_state[-1].count) == oracle.learning_rate  # the same float
            oracle.update_params(theirs, grads)
            updates, opt_state = optimizer.update(
                dict(zip(ours, grads, strict=True)), opt_state, ours
            )
            ours = nn.apply_updates(ours, updates)
        t += n
        oracle.iteration_ends(t)  # scikit-learn's rate changes between epochs only
        np.testing.assert_array_equal(ours["W"], theirs[0])
        np.testing.assert_array_equal(ours["b"], theirs[1])
    assert oracle.learning_rate == 0.1 / (6 * n + 1) ** power_t  # it did decay


def _sklearn_adaptive(losses, tol, patience, init=0.1):
    """scikit-learn's own rule over a loss curve: the rate of each epoch after the first, and
    the epoch it stops at (None: it runs on). Its code decides: MLPClassifier's count of epochs
    without improvement and SGDOptimizer's division, in its loop's order."""
    mlp = MLPClassifier(tol=tol)
    mlp.loss_curve_, mlp.best_loss_, mlp._no_improvement_count = [], np.inf, 0
    opt = SGDOptimizer([np.zeros(1)], init, "adaptive")
    rates = []
    for epoch, loss in enumerate(losses):
        mlp.loss_curve_.append(loss)
        mlp._update_no_improvement_count(False, None, None, None)
        opt.iteration_ends(epoch)
        if mlp._no_improvement_count > patience:
            if opt.trigger_stopping("", False):
                return rates, epoch + 1
            mlp._no_improvement_count = 0
        rates.append(opt.learning_rate)
    return rates, None


def test_early_stopping_reducing_a_rate_is_scikit_learns_adaptive():
    # a loss that improves, stalls, improves a little (less than tol) and then stalls for good
    losses = [1.0, 0.8, 0.8, 0.79999, 0.5, 0.5, 0.5, *([0.4] * 40)]
    tol, patience = 1e-4, 2
    expected_rates, expected_stop = _sklearn_adaptive(losses, tol, patience)
    schedule = nn.schedules.reducible(0.1)
    rule = EarlyStopping("loss", tol=tol, patience=patience, reduce=schedule)

    class State:
        def __init__(self):
            self.history, self.step, self.stop = {"loss": []}, 0, False

    state, rates = State(), []
    for loss in losses:
        state.history["loss"].append(loss)
        state.step += 3
        rule.on_epoch_end(state)
        if state.stop:
            break
        rates.append(schedule(state.step))
    assert expected_stop is not None and len(state.history["loss"]) == expected_stop
    assert rates == expected_rates  # every division, to the bit
    # from 0.1 divided by 5 until 2.56e-7, at most 1e-6: stopped at the next plateau
    assert sorted(set(rates), reverse=True) == pytest.approx([0.1 / 5**k for k in range(9)])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nn.schedules.inverse_scaling(0.1, -1.0), "power must be a number >= 0.0"),
        (lambda: nn.schedules.inverse_scaling(0.1, 0.5, offset=0.0), "offset must be a number > 0"),
        (lambda: nn.schedules.held(nn.schedules.constant(0.1), 0), "every must be an integer >= 1"),
        (lambda: nn.schedules.held(0.1, 2), "schedule must be a function of the step count"),
        (lambda: nn.schedules.reducible(0.1, divisor=1.0), r"divisor must be a number > 1.0"),
    ],
)
def test_bad_schedule_pieces_are_refused_by_name(make, match):
    with pytest.raises(ArgumentError, match=match):
        make()


def test_a_checkpoint_with_a_bad_count_of_divisions_is_refused():
    params = {"W": np.zeros((2, 2), dtype=np.float32)}
    history = {"loss": [1.0, 0.9, 0.9]}
    good = {"monitor": "loss", "best": 0.9, "no_improvement": 1, "best_params": None}
    assert saved_state_problem({**good, "reductions": 1}, params, history) is None
    for bad in (-1, 4, 1.0, True, "1"):
        why = saved_state_problem({**good, "reductions": bad}, params, history)
        assert why is not None and "divided the learning rate" in why, bad
    # a run that divides its rate cannot resume a rule's state without the count, nor the reverse
    rule = EarlyStopping("loss", reduce=nn.schedules.reducible(0.1))

    class State:
        def __init__(self):
            self.params, self.history = params, history

    with pytest.raises(anynet.errors.ModelFileError, match="counts no divisions"):
        rule.load_state_dict(good, State())
    with pytest.raises(anynet.errors.ModelFileError, match="counts divisions"):
        EarlyStopping("loss").load_state_dict({**good, "reductions": 0}, State())
    rule.load_state_dict({**good, "reductions": 2}, State())
    assert rule.reduce.reductions == 2 and rule.reduce(0) == 0.1 / 5 / 5


def test_the_estimator_builds_scikit_learns_schedules_for_sgd():
    # 50 samples in batches of 16: 4 steps an epoch
    clf = NNClassifier(solver="sgd", learning_rate_init=0.1, power_t=0.25)
    oracle = SGDOptimizer([np.zeros(1)], 0.1, "invscaling", power_t=0.25)
    schedule = clf.set_params(learning_rate="invscaling")._optimizer(4, 50).spec[1]["learning_rate"]
    for epoch in range(5):
        assert [schedule(4 * epoch + i) for i in range(4)] == [oracle.learning_rate] * 4
        oracle.iteration_ends(50 * (epoch + 1))
    adaptive = clf.set_params(learning_rate="adaptive")._optimizer(4, 50).spec[1]["learning_rate"]
    assert isinstance(adaptive, nn.schedules.ReducibleSchedule) and adaptive(99) == 0.1


def test_an_adaptive_fit_stops_where_scikit_learn_would_and_resumes_exactly(tmp_path):
    X = np.random.default_rng(3).normal(size=(90, 5))
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    settings = {
        "hidden_layer_sizes": (6,),
        "solver": "sgd",
        "learning_rate": "adaptive",
        "learning_rate_init": 0.2,
        "tol": 0.05,  # most epochs miss it: the rate is divided every few epochs
        "n_iter_no_change": 1,
        "max_iter": 60,
        "batch_size": 30,
        "random_state": 0,
        "checkpoint_steps": 4,
    }

    class Rates(Callback):  # the rate of the next epoch, after the rule's decision
        def __init__(self):
            self.rates = []

        def on_epoch_end(self, state):
            rule = next(cb for cb in state.callbacks if isinstance(cb, EarlyStopping))
            self.rates.append(rule.reduce(state.step))

    seen = Rates()
    whole = NNClassifier(**settings).fit(X, y, callbacks=[seen])
    expected_rates, expected_stop = _sklearn_adaptive(whole.loss_curve_, 0.05, 1, init=0.2)
    assert whole.n_iter_ == expected_stop < 60  # stopped by the rate, not max_iter
    assert seen.rates[:-1] == expected_rates  # the last epoch stopped instead

    class Stop(Exception):
        pass

    class StopAt(Callback):  # mid-epoch, after a few divisions
        def on_step_end(self, state):
            if state.step == 3 * 12 + 2:
                rule = next(cb for cb in state.callbacks if isinstance(cb, EarlyStopping))
                self.reductions = rule.reduce.reductions
                raise Stop

    stop = StopAt()
    with pytest.raises(Stop):
        NNClassifier(**settings, checkpoint_dir=tmp_path).fit(X, y, callbacks=[stop])
    assert stop.reductions >= 2  # the checkpoint holds a divided rate
    resumed = NNClassifier(**settings, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    assert resumed.n_iter_ == whole.n_iter_ and resumed.loss_curve_ == whole.loss_curve_
    for name, value in whole.params_.items():
        np.testing.assert_array_equal(resumed.params_[name], value, err_msg=name)


def test_an_invscaling_fit_resumes_exactly_and_partial_fit_continues_from_t(tmp_path):
    X = rng.normal(size=(70, 4))
    y = (X[:, 1] > 0).astype(int)
    settings = {
        "hidden_layer_sizes": (5,),
        "solver": "sgd",
        "learning_rate": "invscaling",
        "learning_rate_init": 0.3,
        "power_t": 0.3,
        "max_iter": 5,
        "batch_size": 20,
        "random_state": 1,
        "checkpoint_steps": 3,
    }
    whole = NNClassifier(**settings).fit(X, y)

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_step_end(self, state):
            if state.step == 10:
                raise Stop

    with pytest.raises(Stop):
        NNClassifier(**settings, checkpoint_dir=tmp_path).fit(X, y, callbacks=[StopAt()])
    resumed = NNClassifier(**settings, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    for name, value in whole.params_.items():
        np.testing.assert_array_equal(resumed.params_[name], value, err_msg=name)
    with pytest.raises(anynet.errors.CheckpointMismatchError, match="power_t"):
        NNClassifier(**{**settings, "power_t": 0.5}, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    # partial_fit: each call one epoch at learning_rate_init / (t_ + 1) ** power_t
    clf = NNClassifier(**{**settings, "checkpoint_steps": None})
    rates = []
    for _ in range(3):
        rates.append(clf._optimizer(incremental=True).spec[1]["learning_rate"] if _ else 0.3)
        clf.partial_fit(X, y, classes=[0, 1])
    assert clf.t_ == 3 * 70
    assert rates == [0.3, 0.3 / 71**0.3, 0.3 / 141**0.3]


def test_adaptive_divisions_carry_over_partial_fit_calls():
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = NNClassifier(
        hidden_layer_sizes=(4,),
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.1,
        tol=10.0,  # no call improves enough: a division every n_iter_no_change + 1 calls
        n_iter_no_change=1,
        random_state=0,
    )
    rates = []
    for _ in range(7):
        clf.partial_fit(X, y, classes=[0, 1])
        schedule = nn.schedules.reducible(0.1)
        schedule.reductions = clf._plateau[2]
        rates.append(schedule(0))
    expected, stop = _sklearn_adaptive(clf.loss_curve_, 10.0, 1)
    assert stop is None and rates == expected
    assert rates[-1] == 0.1 / 5 / 5 / 5


def test_sgd_schedules_leave_adam_at_its_constant_rate_with_a_warning():
    X = rng.normal(size=(30, 3))
    y = (X[:, 0] > 0).astype(int)
    settings = {"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0}
    constant = NNClassifier(**settings).fit(X, y)
    for schedule in ("invscaling", "adaptive"):
        with pytest.warns(
            UserWarning,
            match=rf"learning_rate='{schedule}' applies to "
            r"solver='sgd' only.*solver='adam' trains at the constant",
        ):
            adam = NNClassifier(**settings, learning_rate=schedule).fit(X, y)
        for name, value in constant.params_.items():
            np.testing.assert_array_equal(adam.params_[name], value, err_msg=name)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"power_t": -0.5}, r"power_t must be a number >= 0.0; got -0.5"),
        ({"power_t": "half"}, r"power_t must be a number >= 0.0; got 'half'"),
        ({"learning_rate": "Adaptive"}, r"learning_rate must be one of .*got 'Adaptive'"),
    ],
)
def test_bad_schedule_parameters_are_refused_by_name(params, match):
    with pytest.raises(ArgumentError, match=match):
        NNClassifier(solver="sgd", **params).fit(np.zeros((4, 2)), [0, 1, 0, 1])
