"""anynet.save and anynet.load: a fitted NNClassifier round trips, and every value its file
holds is checked against a closed set before it is used: the class labels and their dtype, the
hyper-parameters a model may carry, the input scaling, the counts and curves."""

from __future__ import annotations

import os
import threading
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

import anynet
from anynet import io
from anynet.errors import ModelFileError


@pytest.fixture(scope="module")
def fitted() -> anynet.NNClassifier:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.array(["ankle boot", "bag", "coat"])[rng.integers(0, 3, size=60)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch does not converge
        return anynet.NNClassifier(
            (3,), max_iter=1, standardize=True, random_state=0, backend="numpy"
        ).fit(X, y)


@pytest.fixture
def saved(fitted, tmp_path) -> Path:
    return anynet.save(fitted, tmp_path / "model.safetensors")


def tamper(path: Path, **changes) -> Path:
    """Rewrite ``path`` with its classifier metadata changed (None deletes an entry), digest
    and all: what anyone who can write the file can do."""
    arrays, meta = io.read_arrays(path)
    user = meta["metadata"]["$dict"]
    for key, value in changes.items():
        if value is None:
            del user[key]
        else:
            user[key] = value
    return io.write_arrays(path, arrays, meta)


def tamper_params(path: Path, **changes) -> Path:
    """Rewrite ``path`` with its stored hyper-parameters changed."""
    arrays, meta = io.read_arrays(path)
    meta["metadata"]["$dict"]["params"]["$dict"].update(changes)
    return io.write_arrays(path, arrays, meta)


def refused(path: Path, match: str) -> ModelFileError:
    with pytest.raises(ModelFileError, match=match) as info:
        anynet.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "; " in message  # "<file>: <problem>; <advice>"
    return info.value


def test_round_trip(fitted, saved):
    clf = anynet.load(saved, backend="numpy")
    assert clf.classes_.tolist() == fitted.classes_.tolist()
    assert clf.classes_.dtype == fitted.classes_.dtype
    X = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_array_equal(clf.predict_proba(X), fitted.predict_proba(X))


# --------------------------------------------------------------------------------------------
# Class labels: a dtype from a small allow-list, sorted, unique, held exactly


def test_a_huge_label_dtype_is_refused_before_it_is_allocated(saved):
    # 'U50000000' would allocate 200 MB per class: refused by its name, in bounded memory.
    path = tamper(saved, classes_dtype="<U50000000")
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            anynet.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    refused(path, r"classes_dtype '<U50000000' is not one anynet writes")


@pytest.mark.parametrize(
    "dtype",
    ["object", "V8", "M8[s]", "complex128", "S5", ">i8", "<U0", "float128", 5, ["int64"]],
    ids=str,
)
def test_only_label_dtypes_anynet_writes_are_read(saved, dtype):
    refused(tamper(saved, classes_dtype=dtype), "classes_dtype .* is not one anynet writes")


@pytest.mark.parametrize(
    ("classes", "dtype", "match"),
    [
        (["coat", "bag", "ankle boot"], "<U10", "not sorted and unique"),
        (["bag", "bag", "coat"], "<U10", "not sorted and unique"),
        ([2, 0, 1], "int64", "not sorted and unique"),
        ([0, 1, 300], "uint8", "cannot hold"),
        (["ankle boot", "bag", "coat"], "<U2", "cannot hold"),
        ([0.1, 0.2, 0.3], "float16", "cannot hold"),
        ([0, 1, 2], "bool", "cannot hold"),
        ([0, "bag", "coat"], "<U10", "cannot hold"),
        ([0.5, {"$float": "nan"}, 2.0], "float64", "cannot hold|not sorted"),
        ({"$dict": {}}, "int64", "not a non-empty list"),
        ([], "int64", "not a non-empty list"),
    ],
    ids=[
        "unsorted",
        "duplicate",
        "unsorted ints",
        "overflow",
        "truncated",
        "rounded",
        "bools",
        "mixed",
        "nan",
        "dict",
        "empty",
    ],
)
def test_classes_must_be_sorted_unique_and_held_exactly(saved, classes, dtype, match):
    refused(tamper(saved, classes=classes, classes_dtype=dtype), match)


def test_a_label_longer_than_the_cap_is_not_saved(fitted, tmp_path):
    clf = anynet.NNClassifier().set_params(**fitted.get_params())
    clf.__dict__.update(fitted.__dict__)
    clf.classes_ = np.array(["a", "b", "x" * 2000])
    with pytest.raises(ValueError, match="2000 characters"):
        anynet.save(clf, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Hyper-parameters: only those a model may carry; where and how a run happens, never


@pytest.mark.parametrize(
    "setting",
    [
        {"checkpoint_dir": "/tmp/elsewhere"},
        {"backend": "cupy"},
        {"random_state": 5},
        {"n_jobs": 4},
    ],
    ids=lambda s: next(iter(s)),
)
def test_settings_no_model_file_carries_are_refused(saved, setting):
    refused(tamper_params(saved, **setting), f"{next(iter(setting))}.* never carries")


def test_run_settings_older_files_hold_are_never_applied(saved):
    # anynet before this check wrote these; they are read and dropped, never used.
    older = {
        "warm_start": True,
        "resume": True,
        "verbose": True,
        "checkpoint_every": 7,
        "checkpoint_steps": 3,
    }
    clf = anynet.load(tamper_params(saved, **older))
    defaults = anynet.NNClassifier().get_params()
    for key in (*older, "checkpoint_dir", "random_state"):
        assert getattr(clf, key) == defaults[key], key


def test_a_new_file_holds_only_model_hyper_parameters(saved):
    _, meta = io.read_arrays(saved)
    stored = set(meta["metadata"]["$dict"]["params"]["$dict"])
    for key in ("warm_start", "resume", "verbose", "checkpoint_dir", "backend", "random_state"):
        assert key not in stored


def test_every_parameter_is_either_a_model_parameter_or_a_run_setting():
    # A new NNClassifier or NNRegressor parameter must be classified before files can hold it.
    from anynet.estimator import files

    classifier = set(anynet.NNClassifier().get_params())
    regressor = set(anynet.NNRegressor().get_params())
    assert files.MODEL_PARAMS | files.RUN_SETTINGS == classifier | regressor
    assert not files.MODEL_PARAMS & files.RUN_SETTINGS
    # and what one of them has alone is refused in the other's files
    assert files._OWN == {
        "NNClassifier": classifier - regressor,
        "NNRegressor": regressor - classifier,
    }


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"activation": {"$dict": {"x": 1}}}, "activation"),
        ({"activation": "gelu2"}, "activation"),
        ({"hidden_layer_sizes": "3"}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": [3.5]}, "hidden_layer_sizes"),
        ({"shuffle": "yes"}, "shuffle"),
        ({"learning_rate_init": -1.0}, "learning_rate_init"),
        ({"hidden_layer_sizes": [4]}, "does not match"),
    ],
    ids=["dict", "unknown activation", "string sizes", "float size", "flag", "negative", "other"],
)
def test_invalid_hyper_parameters_are_refused(saved, changes, match):
    refused(tamper_params(saved, **changes), match)


# --------------------------------------------------------------------------------------------
# Input scaling, counts and curves


def test_invalid_standardizers_are_refused(saved):
    good_arrays, _ = io.read_arrays(saved)
    mean, std = good_arrays["metadata/standardizer/mean"], good_arrays["metadata/standardizer/std"]
    cases = {
        "wrong shape": (np.zeros(3), std, r"shape \(3,\)"),
        "2-D": (mean.reshape(2, 2), std, r"shape \(2, 2\)"),
        "not finite": (np.full(4, np.nan), std, "mean has 4 NaN or infinite entries"),
        "infinite std": (mean, np.full(4, np.inf), "std has 4 NaN or infinite entries"),
        "negative std": (mean, -std, r"std for feature \d is -\d.* never negative"),
        "integers": (mean.astype(np.int64), std, "dtype int64"),
        "huge mean": (
            np.array([0, 0, 1e300, 0]),
            std,
            r"mean for feature 2 is 1e\+300, beyond the largest float32",
        ),
        "huge std": (mean, np.array([1, 1, 1, 1e39]), r"std for feature 3 is 1e\+39, beyond"),
    }
    for name, (m, s, match) in cases.items():
        arrays, meta = io.read_arrays(saved)
        arrays["metadata/standardizer/mean"], arrays["metadata/standardizer/std"] = m, s
        path = io.write_arrays(saved.parent / f"{name}.safetensors", arrays, meta)
        refused(path, match)


def test_constant_features_load_as_anynet_wrote_them(tmp_path):
    # A feature constant on the training set (a border pixel) has std 0, or rounding noise
    # near 0: fit writes it, load takes it, and the scaling multiplies it by 0.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    X[:, 1], X[:, 3] = 0.0, 0.1  # 0.1 sums with rounding: a std of noise, not exactly 0
    y = rng.integers(0, 2, size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = anynet.NNClassifier((3,), max_iter=1, standardize=True, random_state=0).fit(X, y)
    std = clf._standardizer.std
    assert std[1] == 0.0 and 0 <= std[3] < 1e-15
    again = anynet.load(anynet.save(clf, tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(again._standardizer.std, std)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("scaling", [False, "unit"])
def test_a_standardizer_must_go_with_standardize_true(saved, scaling):
    refused(
        tamper_params(saved, standardize=scaling),
        f"its standardize hyper-parameter is {scaling!r}, but it holds the standardizer",
    )


def test_standardize_true_without_a_standardizer_is_refused(saved):
    arrays, meta = io.read_arrays(saved)
    del meta["metadata"]["$dict"]["standardizer"]
    for name in ("metadata/standardizer/mean", "metadata/standardizer/std"):
        del arrays[name]
    path = io.write_arrays(saved, arrays, meta)
    refused(path, "its standardize hyper-parameter is True, but it lacks the standardizer")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_features_in": -1}, "n_features_in"),
        ({"n_features_in": True}, "n_features_in"),
        ({"n_features_in": "4"}, "n_features_in"),
        ({"n_features_in": 10**30}, "does not match"),
        ({"n_iter": -1}, "n_iter"),
        ({"loss_curve": ["a"]}, "loss_curve"),
        ({"loss_curve": [True]}, "loss_curve"),
        ({"history": {"$dict": {"loss": "x"}}}, "history"),
        ({"history": [1]}, "history"),
        ({"standardizer": [1]}, "standardizer"),
        ({"estimator": "MLPClassifier"}, "not an NNClassifier"),
        ({"classes": None}, "lacks"),
        ({"params": None}, "lacks"),
        ({"params": [1]}, "hyper-parameters are not a mapping"),
    ],
    ids=str,
)
def test_invalid_counts_and_curves_are_refused(saved, changes, match):
    refused(tamper(saved, **changes), match)


# --------------------------------------------------------------------------------------------
# Non-finite weights; special files


def test_non_finite_weights_are_neither_saved_nor_loaded(fitted, tmp_path):
    clf = anynet.NNClassifier().set_params(**fitted.get_params())
    clf.__dict__.update(fitted.__dict__)
    clf.params_ = {k: v.copy() for k, v in fitted.params_.items()}
    clf.params_["0.W"][0, :2] = np.nan
    with pytest.raises(ValueError, match=r"parameter '0.W' has 2 NaN or infinite entries"):
        anynet.save(clf, tmp_path / "m.safetensors")
    path = anynet.save(fitted, tmp_path / "m.safetensors")
    arrays, meta = io.read_arrays(path)
    arrays["0.W"][1, 1] = np.inf
    io.write_arrays(path, arrays, meta)
    refused(path, r"parameter '0.W' has 1 NaN or infinite entries")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    outcome: dict = {}

    def target():
        try:
            anynet.load(fifo)
        except BaseException as exc:  # handed to the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # release the reader, then fail: never hang the suite
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail("anynet.load blocked on a FIFO")
    assert isinstance(outcome.get("error"), ModelFileError)
    assert "is a FIFO" in str(outcome["error"])
