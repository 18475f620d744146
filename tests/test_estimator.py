"""NNClassifier: scikit-learn's own check suite, and what anynet promises beyond it."""

from __future__ import annotations

import contextlib
import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import anynet
from anynet import NNClassifier
from anynet.errors import NonFiniteLossError
from anynet.training import Callback

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# Weights equal repeated samples only to rounding, which float32 cannot hold to the check's
# rtol of 1e-7; the check passes in float64 (below), as scikit-learn runs its own MLPs' with
# other parameters (solver='lbfgs') than their defaults.
_ROUNDING = {"check_sample_weight_equivalence_on_dense_data": "float32 rounding; see below"}


@parametrize_with_checks(
    [NNClassifier((16,), max_iter=100, random_state=0)],
    expected_failed_checks=lambda estimator: _ROUNDING,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_sklearn_sample_weight_equivalence_in_float64():
    """scikit-learn's check that weights equal removed or repeated samples, in float64."""
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    estimator = NNClassifier((16,), max_iter=100, random_state=0, dtype="float64")
    check_sample_weight_equivalence_on_dense_data("NNClassifier", estimator)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(
        n_samples=300, n_features=12, n_informative=8, n_classes=3, class_sep=2.0, random_state=1
    )
    return X, y


def test_sklearn_array_api_check_on_each_backend(backend):
    """scikit-learn's own check that array-API input gives output of the same namespace."""
    import os

    from sklearn.utils.estimator_checks import check_array_api_input

    if os.environ.get("SCIPY_ARRAY_API") != "1":
        pytest.skip("needs SCIPY_ARRAY_API=1 before scikit-learn is imported (nox sets it)")
    allow = contextlib.nullcontext()
    if backend.name == "array_api_strict":
        import array_api_strict

        namespace, device = "array_api_strict", None
        # scikit-learn's accuracy_score (behind ClassifierMixin.score) calls unique_values, a
        # data-dependent shape that conftest forbids for anynet's sake: allow it here only.
        allow = array_api_strict.ArrayAPIStrictFlags(data_dependent_shapes=True)
    else:
        namespace, device = backend.name, str(backend.device)
    with allow:
        check_array_api_input(
            "NNClassifier",
            NNClassifier((8,), max_iter=20, random_state=0),
            array_namespace=namespace,
            device_name=device,
            dtype_name="float64",
        )


def test_learns_an_easy_problem_like_mlpclassifier(blobs):
    X, y = blobs
    ours = NNClassifier((32,), max_iter=150, random_state=0).fit(X, y)
    theirs = MLPClassifier((32,), max_iter=150, random_state=0).fit(X, y)
    assert ours.score(X, y) > 0.95
    assert ours.score(X, y) >= theirs.score(X, y) - 0.03
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        assert a.shape == b.shape
    for attr in ("n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.n_iter_ == len(ours.loss_curve_) and ours.t_ == ours.n_iter_ * len(X)
    assert ours.best_loss_ == min(ours.loss_curve_) and ours.validation_scores_ is None


def test_trains_on_every_backend_to_the_same_weights(backend, blobs):
    """Same seed, same weights; shuffling is off because each backend shuffles with its own
    library's generator (deterministic per backend, not across them)."""
    X, y = blobs
    kw = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=3, dtype="float64", shuffle=False)
    ref = NNClassifier(**kw, backend="numpy").fit(X, y)
    got = NNClassifier(**kw, backend=backend).fit(X, y)
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_arrays_in_arrays_out(backend, blobs):
    """NumPy in gives NumPy out; the backend's arrays in give the backend's arrays out."""
    X, y = blobs
    clf = NNClassifier((8,), max_iter=3, random_state=0, backend=backend).fit(X, y)
    assert isinstance(clf.predict_proba(X), np.ndarray)
    assert isinstance(clf.predict(X), np.ndarray)
    Xd = backend.asarray(X, dtype="float32")
    proba, labels = clf.predict_proba(Xd), clf.predict(Xd)
    if backend.name == "numpy":
        assert isinstance(proba, np.ndarray) and isinstance(labels, np.ndarray)
    else:
        assert anynet.backends.backend_of(proba).spec == backend.spec
        assert anynet.backends.backend_of(labels).spec == backend.spec
    np.testing.assert_array_equal(backend.to_numpy(labels), clf.predict(X.astype(np.float32)))


def test_backend_none_follows_the_input_arrays(backend, blobs, monkeypatch):
    monkeypatch.delenv("ANYNET_BACKEND", raising=False)
    X, y = blobs
    Xd = backend.asarray(X, dtype="float32")
    yd = backend.asarray(y)
    clf = NNClassifier((8,), max_iter=2, random_state=0).fit(Xd, yd)
    out = clf.predict_proba(Xd)
    if backend.name == "numpy":
        assert isinstance(out, np.ndarray)
    else:
        assert anynet.backends.backend_of(out).spec == backend.spec
    assert isinstance(clf.coefs_[0], np.ndarray)


def test_coefs_set_by_the_user_are_used(blobs):
    X, y = blobs
    clf = NNClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    clf.coefs_ = [np.zeros_like(W) for W in clf.coefs_]
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    np.testing.assert_allclose(clf.predict_proba(X[:4]), 1 / 3, rtol=1e-6)
    # A warm-started fit continues from the zeros with a fresh optimizer: the hidden units stay
    # identical only if training really started from the arrays the user set.
    clf.set_params(warm_start=True, max_iter=3).fit(X, y)
    W = clf.coefs_[0]
    np.testing.assert_allclose(W, W[:, :1].repeat(W.shape[1], axis=1), atol=1e-7)


def test_partial_fit_needs_classes_first_and_accumulates(blobs):
    X, y = blobs
    clf = NNClassifier((8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_any_hashable_labels_and_images(blobs):
    X, y = blobs
    names = np.array(["coat", "bag", "shirt"], dtype=object)[y]
    clf = NNClassifier((8,), max_iter=30, random_state=0).fit(X, names)
    assert set(clf.classes_) == {"bag", "coat", "shirt"}
    assert set(clf.predict(X)) <= set(clf.classes_)
    images = np.random.default_rng(0).integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    clf = NNClassifier((8,), max_iter=2, random_state=0, standardize="unit")
    clf.fit(images, np.arange(40) % 2)
    assert clf.n_features_in_ == 784 and clf.predict(images).shape == (40,)


def test_pipeline_and_grid_search(blobs):
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), NNClassifier(batch_size=32, max_iter=30, random_state=0))
    search = GridSearchCV(pipe, {"nnclassifier__hidden_layer_sizes": [(4,), (16,)]}, cv=3)
    search.fit(X, y)
    assert search.best_score_ > 0.8
    assert search.best_params_["nnclassifier__hidden_layer_sizes"] in [(4,), (16,)]


def test_early_stopping_attributes(blobs):
    X, y = blobs
    clf = NNClassifier(
        (16,), max_iter=200, early_stopping=True, n_iter_no_change=3, random_state=0
    ).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_validation_data_is_recorded_per_epoch(blobs):
    X, y = blobs
    clf = NNClassifier((8,), max_iter=4, random_state=0).fit(X, y, validation_data=(X, y))
    assert len(clf.history_["val_accuracy"]) == 4
    np.testing.assert_allclose(clf.history_["val_accuracy"][-1], clf.score(X, y), atol=1e-9)


def test_max_iter_reached_warns(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        with warnings.catch_warnings():
            warnings.simplefilter("default", ConvergenceWarning)
            NNClassifier((4,), max_iter=2, random_state=0).fit(X, y)


def test_output_variants_learn(blobs):
    X, y = blobs
    for output in ("softmax", "log_softmax", "sigmoid"):
        clf = NNClassifier((16,), batch_size=32, max_iter=60, output=output, random_state=0)
        clf.fit(X, y)
        proba = clf.predict_proba(X)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
        assert clf.score(X, y) > 0.9, output


def test_dropout_l1_and_sgd_train(blobs):
    X, y = blobs
    clf = NNClassifier(
        (32,),
        solver="sgd",
        learning_rate_init=0.05,
        dropout=0.2,
        l1=1e-4,
        max_iter=40,
        random_state=0,
    ).fit(X, y)
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("hidden_layer_sizes", (0,), "hidden_layer_sizes"),
        ("activation", "swish", "activation"),
        ("solver", "lbfgs", "lbfgs needs the whole data set"),
        ("alpha", -1.0, "alpha"),
        ("batch_size", 0, "batch_size"),
        ("dropout", 1.0, "dropout"),
        ("dtype", "float16", "dtype"),
        ("output", "linear", "output"),
        ("standardize", "minmax", "standardize"),
        ("backend", "tensorflow", "unknown backend"),
    ],
)
def test_bad_parameters_are_named(blobs, param, value, match):
    X, y = blobs
    with pytest.raises(ValueError, match=match):
        NNClassifier(max_iter=1, **{param: value}).fit(X, y)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # NumPy's own, on the way to inf
def test_non_finite_loss_stops_with_epoch_and_step(blobs):
    X, y = blobs
    # Finite in float32, but the first layer's sums overflow it. (Merely huge logits would not
    # do: the max-shifted cross-entropy stays finite for any finite logits.)
    X = X * 1e37
    clf = NNClassifier((8,), max_iter=5, random_state=0)
    with pytest.raises(NonFiniteLossError, match=r"epoch \d+, step \d+ of the epoch"):
        clf.fit(X, y)


def test_data_that_overflows_the_dtype_is_refused_up_front(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match=r"float32.*dtype='float64'"):
        NNClassifier(max_iter=1).fit(X * 1e300, y)


def test_unknown_label_in_partial_fit_is_refused_on_the_host(blobs):
    X, y = blobs
    clf = NNClassifier((4,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"labels \[7\]"):
        clf.partial_fit(X[:5], np.array([0, 1, 7, 0, 1]))


def test_pickle_round_trip_keeps_predictions(blobs):
    X, y = blobs
    clf = NNClassifier((8,), max_iter=5, random_state=0, backend="numpy").fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


class _InterruptAt(Callback):
    """A stand-in for Ctrl-C at an exact optimizer step (the loop cannot tell the difference)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop_step", [7, 14, 23])  # mid-epoch, on an epoch boundary, later
def test_interrupted_mid_epoch_resumes_bit_identical(tmp_path, blobs, stop_step):
    """Ctrl-C at any step saves a checkpoint; resuming gives the uninterrupted run's weights,
    dropout masks and shuffles included."""
    X, y = blobs
    kw = dict(
        hidden_layer_sizes=(16,),
        batch_size=43,
        max_iter=4,
        dropout=0.3,
        random_state=5,
        backend="numpy",
    )
    straight = NNClassifier(**kw).fit(X, y)  # 7 steps per epoch

    with pytest.raises(KeyboardInterrupt):
        NNClassifier(**kw, checkpoint_dir=tmp_path).fit(X, y, callbacks=[_InterruptAt(stop_step)])
    resumed = NNClassifier(**kw, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    for a, b in zip(
        resumed.coefs_ + resumed.intercepts_, straight.coefs_ + straight.intercepts_, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # The interrupted epoch's loss is summed in two parts (before and after the interrupt):
    # equal up to rounding. The weights above are equal exactly.
    np.testing.assert_allclose(resumed.loss_curve_, straight.loss_curve_, rtol=1e-6)


def test_checkpoint_every_n_steps_is_written(tmp_path, blobs):
    from anynet.io import load_checkpoint

    X, y = blobs
    NNClassifier(
        (8,),
        batch_size=50,
        max_iter=1,
        checkpoint_dir=tmp_path,
        checkpoint_every=5,
        checkpoint_steps=4,
        random_state=0,
    ).fit(X, y)
    ckpt = load_checkpoint(tmp_path / "checkpoint.safetensors", backend="numpy")
    assert ckpt.step == 4 and ckpt.epoch == 0 and ckpt.extra["batch"] == 4  # 6 steps: last at 4


def test_pytorch_init_draws_weights_and_biases_like_torch_linear(blobs):
    X, y = blobs
    clf = NNClassifier(
        (64,), init="pytorch", max_iter=1, learning_rate_init=1e-12, random_state=0
    ).fit(X, y)
    for W, b in zip(clf.coefs_, clf.intercepts_, strict=True):
        bound = 1 / np.sqrt(W.shape[0])
        assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
        assert np.abs(W).max() > 0.9 * bound and np.abs(b).max() > 0.5 * bound  # biases drawn


def test_interrupted_during_validation_resumes_with_the_whole_history(tmp_path, blobs):
    """A Ctrl-C while an epoch is being validated: the resumed run validates that epoch again,
    so the history has every epoch once."""
    from anynet.estimator import classifier as estimator

    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), batch_size=50, max_iter=3, random_state=2)
    straight = NNClassifier(**kw).fit(X, y, validation_data=(X, y))
    real_validator = estimator._validator
    calls = []

    def interrupting_validator(*args, **kwargs):
        validate = real_validator(*args, **kwargs)

        def wrapped(params):
            calls.append(1)
            if len(calls) == 2:  # during the second epoch's validation
                raise KeyboardInterrupt
            return validate(params)

        return wrapped

    estimator._validator = interrupting_validator
    try:
        with pytest.raises(KeyboardInterrupt):
            NNClassifier(**kw, checkpoint_dir=tmp_path).fit(X, y, validation_data=(X, y))
    finally:
        estimator._validator = real_validator
    resumed = NNClassifier(**kw, checkpoint_dir=tmp_path, resume=True)
    resumed.fit(X, y, validation_data=(X, y))
    assert resumed.n_iter_ == 3 and len(resumed.history_["val_accuracy"]) == 3
    np.testing.assert_allclose(resumed.history_["val_accuracy"], straight.history_["val_accuracy"])
    for a, b in zip(resumed.coefs_, straight.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
