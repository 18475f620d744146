"""NNRegressor: scikit-learn's check suite, MLPRegressor's accuracy, its losses and outputs,
sample weights, every backend, checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from anynet import NNRegressor
from anynet.errors import CheckpointMismatchError
from anynet.training import Callback

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# As for the classifier: weights equal repeated samples to rounding, which float32 cannot hold
# to the check's rtol of 1e-7; the check passes in float64 (below).
_ROUNDING = {"check_sample_weight_equivalence_on_dense_data": "float32 rounding; see below"}


@parametrize_with_checks(
    [NNRegressor(hidden_layer_sizes=(16,), max_iter=100, random_state=0)],
    expected_failed_checks=lambda estimator: _ROUNDING,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_sklearn_sample_weight_equivalence_in_float64():
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    estimator = NNRegressor(hidden_layer_sizes=(16,), max_iter=100, random_state=0, dtype="float64")
    check_sample_weight_equivalence_on_dense_data("NNRegressor", estimator)


@pytest.fixture(scope="module")
def friedman():
    X, y = make_friedman1(n_samples=1000, noise=0.5, random_state=0)
    return train_test_split(X, y, random_state=0)


def test_matches_mlpregressor_on_friedman1(friedman):
    """The same network and settings reach MLPRegressor's held-out R² within noise (its own
    spread over seeds is about 0.01)."""
    Xtr, Xte, ytr, yte = friedman
    ours, theirs = [], []
    for seed in (0, 1):
        kw = dict(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
        ours.append(NNRegressor(**kw).fit(Xtr, ytr).score(Xte, yte))
        theirs.append(MLPRegressor(**kw).fit(Xtr, ytr).score(Xte, yte))
    assert np.mean(ours) > 0.7
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=0.03)


def test_outputs_shapes_and_attributes(friedman):
    Xtr, Xte, ytr, _ = friedman
    one = NNRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(Xtr, ytr)
    assert one.predict(Xte).shape == (len(Xte),)
    assert (one.n_outputs_, one.out_activation_, one.n_layers_) == (1, "identity", 3)
    Y = np.stack([ytr, -ytr, ytr / 10], axis=1)
    many = NNRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(Xtr, Y)
    assert many.predict(Xte).shape == (len(Xte), 3)
    assert many.n_outputs_ == 3
    assert [c.shape for c in many.coefs_] == [(10, 8), (8, 3)]
    with pytest.raises(ValueError, match="y has 1 outputs, but this regressor was fitted with 3"):
        many.partial_fit(Xtr, ytr)


def test_poisson_predicts_rates_and_refuses_negative_targets(friedman):
    Xtr, Xte, ytr, _ = friedman
    counts = np.round(ytr / 5)
    model = NNRegressor(loss="poisson", hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    model.fit(Xtr, counts)
    assert model.out_activation_ == "exp"
    assert (model.predict(Xte) > 0).all()
    assert model.score(Xtr, counts) > 0.3
    with pytest.raises(ValueError, match="loss='poisson' needs targets y >= 0"):
        NNRegressor(loss="poisson", max_iter=1).fit(Xtr, ytr - 20)


def test_weight_2_equals_duplicated_samples(friedman):
    Xtr, _, ytr, _ = friedman
    X, y = Xtr[:80], ytr[:80]
    w = np.ones(80)
    w[:10] = 2.0
    kw = dict(
        hidden_layer_sizes=(8,), max_iter=10, shuffle=False, random_state=0, dtype="float64",
        alpha=0.01, batch_size=200,
    )  # fmt: skip
    weighted = NNRegressor(**kw).fit(X, y, sample_weight=w)
    duplicated = NNRegressor(**kw).fit(np.r_[X, X[:10]], np.r_[y, y[:10]])
    for k in duplicated.params_:
        np.testing.assert_allclose(weighted.params_[k], duplicated.params_[k], atol=1e-12)


def test_every_backend_fits_what_numpy_fits(backend, friedman):
    Xtr, Xte, ytr, _ = friedman
    # without shuffling: each backend draws its own orders
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0, dtype="float64", shuffle=False)
    ref = NNRegressor(**kw, backend="numpy").fit(Xtr, ytr)
    got = NNRegressor(**kw, backend=backend).fit(Xtr, ytr)
    np.testing.assert_allclose(got.predict(Xte), ref.predict(Xte), rtol=1e-8, atol=1e-8)


class _StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def test_an_interrupted_fit_resumes_exactly(tmp_path, friedman):
    Xtr, _, ytr, _ = friedman
    X, y = Xtr[:200], ytr[:200]
    kw = dict(hidden_layer_sizes=(8,), batch_size=32, max_iter=3, random_state=3, dropout=0.2)
    straight = NNRegressor(**kw).fit(X, y)
    with pytest.raises(KeyboardInterrupt):
        NNRegressor(**kw, checkpoint_dir=tmp_path).fit(X, y, callbacks=[_StopAt(10)])
    with pytest.raises(CheckpointMismatchError):
        NNRegressor(**kw, checkpoint_dir=tmp_path, resume=True).fit(X, y + 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = NNRegressor(**kw, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    for k in straight.params_:
        np.testing.assert_array_equal(resumed.params_[k], straight.params_[k])
    assert resumed.loss_curve_ == straight.loss_curve_


def test_early_stopping_keeps_r2_scores(friedman):
    Xtr, _, ytr, _ = friedman
    model = NNRegressor(
        hidden_layer_sizes=(32,),
        max_iter=40,
        learning_rate_init=0.01,
        early_stopping=True,
        random_state=0,
    ).fit(Xtr, ytr)
    assert model.validation_scores_ == model.history_["val_r2"]
    assert model.best_validation_score_ == max(model.validation_scores_) > 0.3


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_save_and_load_give_the_same_predictions(tmp_path, friedman, loss):
    import anynet

    Xtr, Xte, ytr, _ = friedman
    Y = np.stack([ytr, ytr / 2], axis=1)
    model = NNRegressor(
        loss, hidden_layer_sizes=(8,), max_iter=3, random_state=0, standardize=True
    ).fit(Xtr, Y)
    anynet.save(model, tmp_path / "r.safetensors")
    back = anynet.load(tmp_path / "r.safetensors")
    assert isinstance(back, NNRegressor)
    assert (back.loss, back.n_outputs_, back.out_activation_) == (
        loss,
        2,
        model.out_activation_,
    )
    np.testing.assert_array_equal(back.predict(Xte), model.predict(Xte))
    assert back.loss_curve_ == model.loss_curve_


def test_a_classifier_setting_in_a_regressor_file_is_refused(tmp_path, friedman):
    import json

    import anynet
    from anynet.errors import ModelFileError
    from anynet.io import load_network, save_network

    Xtr, _, ytr, _ = friedman
    model = NNRegressor(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(Xtr, ytr)
    path = anynet.save(model, tmp_path / "r.safetensors")
    network, params, meta = load_network(path, backend="numpy")
    meta = json.loads(json.dumps(meta, default=lambda a: a.tolist()))
    meta["params"]["output"] = "softmax"
    save_network(tmp_path / "edited.safetensors", network, params, metadata=meta)
    with pytest.raises(ModelFileError, match=r"'output'.*not NNRegressor's"):
        anynet.load(tmp_path / "edited.safetensors")


def test_a_weighted_split_scores_weighted_r2(friedman):
    from sklearn.metrics import r2_score

    from anynet.backends import derive_seed

    Xtr, _, ytr, _ = friedman
    w = np.linspace(0.0, 3.0, len(Xtr))
    model = NNRegressor(
        hidden_layer_sizes=(8,), max_iter=1, early_stopping=True, random_state=0
    ).fit(Xtr, ytr, sample_weight=w)
    _, X_val, _, y_val, _, w_val = train_test_split(
        Xtr, ytr, w, test_size=0.1, random_state=derive_seed(0, 0, 3)
    )
    expected = r2_score(y_val, model.predict(X_val), sample_weight=w_val)
    assert model.validation_scores_ == [pytest.approx(expected, abs=1e-5)]


def test_sklearn_array_api_check_on_each_backend(backend):
    """scikit-learn's own check that array-API input gives output of the same namespace."""
    import os

    from sklearn.utils.estimator_checks import check_array_api_input

    if os.environ.get("SCIPY_ARRAY_API") != "1":
        pytest.skip("needs SCIPY_ARRAY_API=1 before scikit-learn is imported (nox sets it)")
    allow = contextlib.nullcontext()
    name = backend.name
    device = None if name == "array_api_strict" else str(backend.device)
    if name == "array_api_strict":
        import array_api_strict

        # scikit-learn's r2_score (behind RegressorMixin.score) indexes with booleans, which
        # conftest forbids for anynet's sake: allow it here only.
        allow = array_api_strict.ArrayAPIStrictFlags(boolean_indexing=True)
    with allow:
        check_array_api_input(
            "NNRegressor",
            NNRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
            array_namespace=name,
            device_name=device,
            dtype_name="float64",
        )


@pytest.mark.parametrize("weighted", [False, True], ids=["", "weighted"])
@pytest.mark.parametrize("loss", ["half_squared_error", "poisson"])
def test_the_fused_step_trains_regression_as_the_generic_one(loss, weighted):
    import anynet
    from anynet import nn
    from anynet.training import select_step

    be = anynet.get_backend("numpy")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 5))
    Y = np.abs(rng.normal(size=(20, 2)))
    w = rng.uniform(0.0, 2.0, size=20) if weighted else None
    steps = []
    for fast in (True, False):
        model = nn.Sequential(nn.Dense(5, 8), nn.Tanh(), nn.Dense(8, 2))
        params = model.init_params(rng=be.host_generator(0), backend=be, dtype="float64")
        steps.append(select_step(model, nn.adam(0.01), params, backend=be, loss=loss, fast=fast))
    assert steps[0].name.startswith("fused") and steps[1].name == "generic"
    for _ in range(5):
        losses = [float(s(X, Y, l2=0.01, sample_weight=w)) for s in steps]
        assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    for k, value in steps[1].params.items():
        np.testing.assert_allclose(np.asarray(steps[0].params[k]), value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_one_step_from_the_same_weights_is_mlpregressors(friedman, loss):
    """An outside oracle: from MLPRegressor's initial weights, one full-batch SGD step with
    sample weights and alpha gives its loss and its new weights (the two initialize
    differently, so the test starts both from scikit-learn's)."""
    Xtr, _, ytr, _ = friedman
    X, y = Xtr[:120], np.round(ytr[:120] / 5)
    w = np.linspace(0.0, 3.0, len(X))  # sum(w) = 1.5 n: the penalty divides by it
    kw = dict(
        hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.01, momentum=0.0,
        batch_size=len(X), shuffle=False, random_state=0, alpha=0.1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # scikit-learn's weights after a step of rate 1e-300 (its initial ones, to rounding),
        # then a step at the rate of kw (partial_fit keeps its first optimizer: set its rate)
        theirs = MLPRegressor(loss, **{**kw, "learning_rate_init": 1e-300}, max_iter=1).fit(X, y)
        ours = NNRegressor(loss, **kw, max_iter=1, dtype="float64").fit(X, y)
        ours.coefs_ = [c.copy() for c in theirs.coefs_]
        ours.intercepts_ = [b.copy() for b in theirs.intercepts_]
        theirs._optimizer.learning_rate = kw["learning_rate_init"]
        theirs.partial_fit(X, y, sample_weight=w)
        ours.partial_fit(X, y, sample_weight=w)
    assert ours.loss_curve_[-1] == pytest.approx(theirs.loss_curve_[-1], rel=1e-10)
    mine, its = ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_
    for a, b in zip(mine, its, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
