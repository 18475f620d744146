"""Sample and class weights: a weight of 2 is a sample counted twice, 0 a sample left out, on
the generic and fused steps, through the loader's shuffle, shards and resumes, and in the
estimator (scikit-learn's weighted average, ``sum(w * loss) / sum(w)`` per batch)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from anynet import NNClassifier, nn
from anynet.data import DataLoader
from anynet.errors import CheckpointMismatchError, DataError
from anynet.training import Callback, select_step

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] + X[:, 1] ** 2 + 0.3 * rng.normal(size=60) > 0.5).astype(np.int64)
    y[::7] = 2
    return X, y


def _model():
    return nn.Sequential(nn.Dense(5, 7), nn.Tanh(), nn.Dense(7, 3))


@pytest.mark.parametrize("fast", [False, True], ids=["generic", "fused"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy"])
def test_one_step_with_weight_2_is_the_step_on_duplicated_samples(backend, data, fast, loss):
    """Loss and gradients of a batch where some samples weigh 2 (weights scaled to average 1,
    as the loader hands them out) equal those of the batch holding them twice."""
    X, y = data
    twice = np.arange(10)
    w = np.ones(len(X))
    w[twice] = 2.0
    w_scaled = w * len(X) / w.sum()
    Xd, yd = np.concatenate([X, X[twice]]), np.concatenate([y, y[twice]])
    be = backend
    params = _model().init_params(rng=be.host_generator(0), backend=be, dtype="float64")
    results = []
    for Xb, yb, wb in ((X, y, w_scaled), (Xd, yd, None)):
        step = select_step(
            _model(), nn.sgd(0.1), params, backend=be, loss=loss, fast=fast, reduction="mean"
        )
        weights = None if wb is None else be.asarray(wb, dtype="float64")
        value = step.compute_grads(
            be.asarray(Xb, dtype="float64"), be.asarray(yb), l2=0.01, sample_weight=weights
        )
        grads = {k: be.to_numpy(g) for k, g in step.grads.items()}
        results.append((float(value), grads, step.name))
    (lw, gw, name), (ld, gd, _) = results
    assert fast == (name != "generic") or be.name != "numpy"
    assert lw == pytest.approx(ld, rel=1e-12)
    for k in gd:
        np.testing.assert_allclose(gw[k], gd[k], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_fit_with_weight_2_equals_fit_on_duplicated_samples(backend, data, solver):
    """Full-batch runs without shuffling (the batches are then the same samples): the fitted
    parameters agree to rounding, the L2 penalty (divided by the weights' sum) included."""
    X, y = data
    w = np.ones(len(X))
    w[:10] = 2.0
    kw = dict(
        hidden_layer_sizes=(7,), solver=solver, max_iter=8, shuffle=False,
        random_state=0, dtype="float64", alpha=0.01, backend=backend, n_iter_no_change=1000,
    )  # fmt: skip
    weighted = NNClassifier(**kw).fit(X, y, sample_weight=w)
    duplicated = NNClassifier(**kw).fit(np.concatenate([X, X[:10]]), np.concatenate([y, y[:10]]))
    for k in duplicated.params_:
        np.testing.assert_allclose(weighted.params_[k], duplicated.params_[k], atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, duplicated.loss_curve_, rtol=1e-12)


def test_zero_weights_equal_removed_samples(data):
    X, y = data
    w = np.ones(len(X))
    w[40:] = 0.0
    kw = dict(
        hidden_layer_sizes=(7,), max_iter=5, shuffle=False, random_state=0,
        dtype="float64", alpha=0.01,
    )  # fmt: skip
    weighted = NNClassifier(**kw).fit(X, y, sample_weight=w)
    removed = NNClassifier(**kw).fit(X[:40], y[:40])
    for k in removed.params_:
        np.testing.assert_allclose(weighted.params_[k], removed.params_[k], atol=1e-12)


def test_weights_of_1_change_nothing(data):
    X, y = data
    kw = dict(hidden_layer_sizes=(7,), batch_size=16, max_iter=3, random_state=0, alpha=0.01)
    plain = NNClassifier(**kw).fit(X, y)
    ones = NNClassifier(**kw).fit(X, y, sample_weight=np.ones(len(X)))
    for k in plain.params_:
        np.testing.assert_allclose(ones.params_[k], plain.params_[k], rtol=1e-5, atol=1e-6)


def test_the_loader_carries_weights_through_shuffles_shards_and_resumes():
    n, B = 23, 5
    X = np.arange(n, dtype=np.float64)[:, None]  # each sample's row is its index
    y = np.zeros(n, dtype=np.int64)
    w = np.arange(n) % 4 + 0.5
    kw = dict(batch_size=B, seed=3, normalize=None, dtype="float64", backend="numpy")
    loader = DataLoader(X, y, sample_weight=w, **kw)
    loader.set_epoch(2)
    whole = list(loader)
    for b, (Xb, _, wb) in enumerate(whole):
        ids = Xb[:, 0].astype(int)
        np.testing.assert_allclose(wb, w[ids] * len(ids) / w[ids].sum())
        assert loader.batch_weight(b) == pytest.approx(w[ids].sum())
    # a rank's part of every batch, and the ranks together the whole batch
    parts = []
    for rank in range(3):
        shard = DataLoader(X, y, sample_weight=w, shard=(rank, 3), **kw)
        shard.set_epoch(2)
        parts.append(list(shard))
    for b, (Xb, _, wb) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[b][0] for p in parts]), Xb)
        np.testing.assert_array_equal(np.concatenate([p[b][2] for p in parts]), wb)
    # an epoch resumed at batch 2 gives the weights the whole epoch had there
    loader.set_epoch(2, batch=2)
    for (Xb, _, wb), (Xw, _, ww) in zip(loader, whole[2:], strict=True):
        np.testing.assert_array_equal(Xb, Xw)
        np.testing.assert_array_equal(wb, ww)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (-np.ones(60), "sample_weight must be .* got -1.0 at position 0"),
        (np.ones(59), r"sample_weight must be .* got shape \(59,\)"),
        (np.r_[np.nan, np.ones(59)], "sample_weight must be .* got nan at position 0"),
        (np.zeros(60), "sample_weight .* every weight is zero"),
        (np.ones((60, 2)), r"sample_weight .* got shape \(60, 2\)"),
    ],
    ids=["negative", "wrong length", "nan", "all zero", "2-d"],
)
def test_bad_weights_are_refused_by_name(data, weights, match):
    X, y = data
    with pytest.raises(DataError, match=match):
        NNClassifier((4,), max_iter=1).fit(X, y, sample_weight=weights)
    with pytest.raises(DataError, match=match):
        NNClassifier((4,), max_iter=1).partial_fit(X, y, sample_weight=weights, classes=[0, 1, 2])


def test_balanced_class_weight_equals_its_sample_weights(data):
    X, y = data
    kw = dict(hidden_layer_sizes=(7,), batch_size=16, max_iter=3, random_state=0)
    balanced = NNClassifier(**kw, class_weight="balanced").fit(X, y)
    counts = np.bincount(y)
    expected = len(y) / (3 * counts)
    by_hand = NNClassifier(**kw).fit(X, y, sample_weight=expected[y])
    for k in by_hand.params_:
        np.testing.assert_array_equal(balanced.params_[k], by_hand.params_[k])
    # a dict, and class weights times sample weights
    w = np.linspace(0.5, 2.0, len(y))
    as_dict = NNClassifier(**kw, class_weight={2: 3.0}).fit(X, y, sample_weight=w)
    by_hand = NNClassifier(**kw).fit(X, y, sample_weight=w * np.where(y == 2, 3.0, 1.0))
    for k in by_hand.params_:
        np.testing.assert_array_equal(as_dict.params_[k], by_hand.params_[k])


def test_bad_class_weights_are_refused(data):
    X, y = data
    with pytest.raises(ValueError, match="class_weight names the label 5"):
        NNClassifier((4,), max_iter=1, class_weight={5: 1.0}).fit(X, y)
    with pytest.raises(ValueError, match=r"class_weight\[0\] must be a finite number >= 0"):
        NNClassifier((4,), max_iter=1, class_weight={0: -1.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced' or a dict"):
        NNClassifier((4,), max_iter=1, class_weight="even").fit(X, y)
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        NNClassifier((4,), class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])


def test_a_saved_class_weight_loads_back(tmp_path, data):
    import anynet

    X, y = data
    labels = np.array(["a", "b", "c"])[y]
    clf = NNClassifier((4,), max_iter=2, random_state=0, class_weight={"c": 2.5}).fit(X, labels)
    anynet.save(clf, tmp_path / "m.safetensors")
    back = anynet.load(tmp_path / "m.safetensors")
    assert back.class_weight == {"a": 1.0, "b": 1.0, "c": 2.5}
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))


class _StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def test_a_weighted_run_resumes_exactly_and_refuses_other_weights(tmp_path, data):
    X, y = data
    w = np.arange(len(X)) % 3 + 1.0
    kw = dict(hidden_layer_sizes=(7,), batch_size=16, max_iter=3, random_state=2, alpha=0.01)
    straight = NNClassifier(**kw).fit(X, y, sample_weight=w)
    with pytest.raises(KeyboardInterrupt):
        NNClassifier(**kw, checkpoint_dir=tmp_path).fit(
            X, y, sample_weight=w, callbacks=[_StopAt(6)]
        )
    for other in (None, w[::-1].copy()):
        with pytest.raises(CheckpointMismatchError, match="sample_weight"):
            NNClassifier(**kw, checkpoint_dir=tmp_path, resume=True).fit(X, y, sample_weight=other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = NNClassifier(**kw, checkpoint_dir=tmp_path, resume=True).fit(
            X, y, sample_weight=w
        )
    for k in straight.params_:
        np.testing.assert_array_equal(resumed.params_[k], straight.params_[k])


@pytest.mark.parametrize("loss", sorted(nn.losses.LOSSES))
def test_a_weight_of_2_is_a_sample_counted_twice_in_every_loss(loss):
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(6, 3))
    targets = rng.dirichlet(np.ones(3), size=6)
    w = np.array([2.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    keep = np.array([0, 0, 1, 2, 4, 5])  # sample 0 twice, sample 3 left out
    fn = nn.losses.LOSSES[loss]
    value, grad = fn(pred, targets, reduction="sum", sample_weight=w)
    value_d, grad_d = fn(pred[keep], targets[keep], reduction="sum")
    assert float(value) == pytest.approx(float(value_d), rel=1e-12)
    np.testing.assert_allclose(grad[0], grad_d[0] + grad_d[1], rtol=1e-12)
    np.testing.assert_allclose(grad[3], 0.0)


def test_early_stopping_scores_the_split_with_its_weights(data):
    """The held-out part keeps its samples' weights: the validation accuracy is scikit-learn's
    weighted accuracy on it (one epoch, so the kept parameters are the scored ones)."""
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    from anynet.backends import derive_seed

    X, y = data
    w = np.linspace(0.0, 3.0, len(X))
    clf = NNClassifier(
        (7,), max_iter=1, early_stopping=True, validation_fraction=0.3, random_state=0
    ).fit(X, y, sample_weight=w)
    # the split the fit made: stratified, seeded from the run's seed (random_state=0)
    _, X_val, _, y_val, _, w_val = train_test_split(
        X, y, w, test_size=0.3, stratify=y, random_state=derive_seed(0, 0, 3)
    )
    expected = accuracy_score(y_val, clf.predict(X_val), sample_weight=w_val)
    unweighted = accuracy_score(y_val, clf.predict(X_val))
    assert clf.validation_scores_ == [pytest.approx(expected, abs=1e-6)]
    assert expected != pytest.approx(unweighted)  # the weights do change the score here


def test_one_classifier_step_from_the_same_weights_is_mlpclassifiers(data):
    """An outside oracle: from MLPClassifier's initial weights, one full-batch SGD step with
    sample weights (summing to 1.5 n) and alpha gives its loss and its new weights."""
    from sklearn.neural_network import MLPClassifier

    X, y = data  # three classes: a softmax output in both
    w = np.linspace(0.0, 3.0, len(X))
    kw = dict(
        hidden_layer_sizes=(7,), solver="sgd", learning_rate_init=0.05, momentum=0.0,
        batch_size=len(X), shuffle=False, random_state=0, alpha=0.1, max_iter=1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = MLPClassifier(**{**kw, "learning_rate_init": 1e-300}).fit(X, y)
        ours = NNClassifier(**kw, dtype="float64").fit(X, y)
        ours.coefs_ = [c.copy() for c in theirs.coefs_]
        ours.intercepts_ = [b.copy() for b in theirs.intercepts_]
        theirs._optimizer.learning_rate = kw["learning_rate_init"]  # its first optimizer's
        theirs.partial_fit(X, y, sample_weight=w)
        ours.partial_fit(X, y, sample_weight=w)
    assert ours.step_name_ != "generic"  # the fused step
    assert ours.loss_curve_[-1] == pytest.approx(theirs.loss_curve_[-1], rel=1e-10)
    mine, its = ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_
    for a, b in zip(mine, its, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
