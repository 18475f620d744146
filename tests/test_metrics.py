"""anynet.metrics: hand-made cases, scikit-learn as the outside oracle, and every input check."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from anynet.errors import DataError
from anynet.metrics import accuracy, classification_report, confusion_matrix, precision_recall

sk_metrics = pytest.importorskip("sklearn.metrics")

NAMES = ["cat", "dog", "bird"]


def random_labels(seed: int, n: int, k: int, *, missing_pred: int | None = None):
    """Noisy predictions of random labels; optionally one class is never predicted."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    if missing_pred is not None:
        y_pred[y_pred == missing_pred] = (missing_pred + 1) % k
    return y_true, y_pred


# --- scikit-learn as oracle --------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "n", "k", "missing_pred"),
    [(0, 500, 10, None), (1, 37, 3, None), (2, 200, 10, 4), (3, 15, 10, None), (4, 1, 2, None)],
)
def test_matches_sklearn(seed, n, k, missing_pred):
    y_true, y_pred = random_labels(seed, n, k, missing_pred=missing_pred)
    labels = list(range(k))

    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, k),
        sk_metrics.confusion_matrix(y_true, y_pred, labels=labels),
    )
    precision, recall, support = precision_recall(y_true, y_pred, k)
    kw = {"labels": labels, "average": None, "zero_division": 0}
    np.testing.assert_allclose(precision, sk_metrics.precision_score(y_true, y_pred, **kw))
    np.testing.assert_allclose(recall, sk_metrics.recall_score(y_true, y_pred, **kw))
    np.testing.assert_array_equal(support, np.bincount(y_true, minlength=k))
    assert accuracy(y_true, y_pred) == pytest.approx(sk_metrics.accuracy_score(y_true, y_pred))


def test_report_numbers_match_sklearn():
    y_true, y_pred = random_labels(5, 300, 10, missing_pred=3)
    names = [f"class {i}" for i in range(10)]
    report = classification_report(y_true, y_pred, names, digits=4)
    theirs = sk_metrics.classification_report(
        y_true, y_pred, labels=range(10), target_names=names, output_dict=True, zero_division=0
    )
    for name in names:
        row = next(line for line in report.splitlines() if line.startswith(name + " "))
        p, r, s = row[len(name) :].split()
        assert float(p) == pytest.approx(theirs[name]["precision"], abs=5e-5)
        assert float(r) == pytest.approx(theirs[name]["recall"], abs=5e-5)
        assert int(s) == theirs[name]["support"]
    macro = next(line for line in report.splitlines() if line.startswith("macro avg"))
    p, r, s = macro[len("macro avg") :].split()
    assert float(p) == pytest.approx(theirs["macro avg"]["precision"], abs=5e-5)
    assert float(r) == pytest.approx(theirs["macro avg"]["recall"], abs=5e-5)
    acc_line = report.splitlines()[-1].split()
    assert acc_line[0] == "accuracy"
    assert float(acc_line[1]) == pytest.approx(theirs["accuracy"], abs=5e-5)
    assert int(acc_line[2]) == 300


# --- hand-made cases ---------------------------------------------------------------------


def test_hand_made_confusion_matrix():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2])
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.dtype == np.int64
    assert cm.sum() == 6


def test_rows_are_true_columns_predicted():
    # Every sample of class 0 predicted as 1: the count sits in row 0, column 1.
    cm = confusion_matrix([0, 0, 0], [1, 1, 1])
    np.testing.assert_array_equal(cm, [[0, 3], [0, 0]])


def test_n_classes_adds_empty_rows_and_columns():
    cm = confusion_matrix([0, 1], [0, 1], n_classes=4)
    assert cm.shape == (4, 4)
    np.testing.assert_array_equal(cm, np.diag([1, 1, 0, 0]))


def test_hand_made_precision_recall():
    # class 0: predicted twice, right once; class 1: predicted once, right once; 2 never.
    precision, recall, support = precision_recall([0, 1, 2, 0], [0, 1, 0, 0], n_classes=3)
    np.testing.assert_allclose(precision, [2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(support, [2, 1, 1])
    assert precision.dtype == recall.dtype == np.float64
    assert support.dtype == np.int64


def test_zero_division_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Class 1 is never predicted (precision 0/0); class 2 never occurs (recall 0/0).
        precision, recall, support = precision_recall([0, 0, 1], [0, 2, 0], n_classes=3)
        report = classification_report([0, 0, 1], [0, 2, 0], NAMES)
    np.testing.assert_allclose(precision, [0.5, 0.0, 0.0])
    np.testing.assert_allclose(recall, [0.5, 0.0, 0.0])
    np.testing.assert_array_equal(support, [2, 1, 0])
    assert "nan" not in report


def test_perfect_and_all_wrong():
    y = np.array([0, 1, 2, 1])
    assert accuracy(y, y) == 1.0
    assert accuracy(y, (y + 1) % 3) == 0.0
    precision, recall, _ = precision_recall(y, y)
    np.testing.assert_array_equal(precision, 1.0)
    np.testing.assert_array_equal(recall, 1.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.uint64])
def test_integer_dtypes_and_lists(dtype):
    y_true = np.array([0, 1, 2, 2], dtype=dtype)
    y_pred = np.array([0, 2, 2, 2], dtype=dtype)
    assert accuracy(y_true, y_pred) == 0.75
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred), confusion_matrix(y_true.tolist(), y_pred.tolist())
    )


def test_accuracy_returns_python_float():
    assert type(accuracy(np.array([1, 0]), np.array([1, 1]))) is float


def test_empty_labels():
    cm = confusion_matrix([], [], n_classes=2)
    np.testing.assert_array_equal(cm, np.zeros((2, 2)))
    with pytest.raises(DataError, match="empty"):
        accuracy([], [])


# --- the report --------------------------------------------------------------------------


def test_report_layout():
    report = classification_report([0, 0, 1, 2], [0, 1, 1, 2], ["T-shirt/top", "Bag", "Coat"])
    lines = report.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "support"]
    assert [line.split()[0] for line in lines[1:4]] == ["T-shirt/top", "Bag", "Coat"]
    assert lines[4] == ""
    assert lines[5].startswith("macro avg")
    assert lines[6].startswith("accuracy")
    assert not report.endswith("\n")
    # Right-aligned numeric columns: every class row ends at the same column as the header,
    # and each number's last digit lines up with its header's last letter.
    assert len({len(line) for line in lines[:4]}) == 1
    for header_word in ("precision", "recall", "support"):
        end = lines[0].index(header_word) + len(header_word)
        for line in lines[1:4]:
            assert line[end - 1] != " " and (end == len(line) or line[end] == " ")
    # The accuracy sits in the recall column.
    recall_end = lines[0].index("recall") + len("recall")
    assert lines[6][recall_end - 5 : recall_end] == "0.750"


def test_report_default_names_and_digits():
    report = classification_report([0, 1, 1], [0, 1, 0], digits=2)
    lines = report.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["0", "1"]
    assert lines[1].split()[1:] == ["0.50", "1.00", "1"]
    assert lines[-1].split() == ["accuracy", "0.67", "3"]


def test_report_lists_classes_absent_from_the_sample():
    report = classification_report([0, 0], [0, 0], NAMES)
    assert [line.split()[0] for line in report.splitlines()[1:4]] == NAMES
    assert report.splitlines()[3].split()[1:] == ["0.000", "0.000", "0"]


# --- input checks ------------------------------------------------------------------------

ALL = [accuracy, confusion_matrix, precision_recall, classification_report]


@pytest.mark.parametrize("fn", ALL)
def test_unequal_lengths(fn):
    with pytest.raises(
        DataError, match=r"y_true and y_pred must have the same length, got 3 and 2"
    ):
        fn([0, 1, 1], [0, 1])


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("which", ["y_true", "y_pred"])
def test_not_1d(fn, which):
    good = np.zeros(4, dtype=int)
    bad = np.zeros((4, 10))
    args = (bad, good) if which == "y_true" else (good, bad)
    with pytest.raises(DataError, match=rf"{which} must be 1-D, got .*\(4, 10\).*argmax"):
        fn(*args)


@pytest.mark.parametrize("fn", ALL)
def test_float_labels_refused(fn):
    with pytest.raises(
        DataError, match=r"y_pred must hold integer class labels, got dtype float64"
    ):
        fn([0, 1], [0.0, 1.0])


@pytest.mark.parametrize("fn", ALL)
def test_negative_labels_refused(fn):
    with pytest.raises(DataError, match=r"y_true must hold labels >= 0, got -1"):
        fn([-1, 1], [0, 1])


@pytest.mark.parametrize("fn", [confusion_matrix, precision_recall])
def test_labels_beyond_n_classes(fn):
    with pytest.raises(
        DataError, match=re.escape("y_pred must hold labels in [0, 2] for 3 classes, got 3")
    ):
        fn([0, 1], [0, 3], n_classes=3)


def test_labels_beyond_class_names():
    with pytest.raises(
        DataError, match=re.escape("y_true must hold labels in [0, 2] for 3 classes, got 5")
    ):
        classification_report([0, 5], [0, 1], NAMES)


@pytest.mark.parametrize("n_classes", [0, -2])
def test_bad_n_classes(n_classes):
    with pytest.raises(DataError, match=f"n_classes must be >= 1, got {n_classes}"):
        confusion_matrix([0], [0], n_classes=n_classes)


@pytest.mark.parametrize("n_classes", [True, 2.5, "3"])
def test_n_classes_must_be_an_integer(n_classes):
    with pytest.raises(TypeError):
        confusion_matrix([0], [0], n_classes=n_classes)


def test_empty_class_names():
    with pytest.raises(DataError, match="class_names must name at least one class"):
        classification_report([0], [0], [])


def test_errors_are_value_errors():
    with pytest.raises(ValueError, match="y_true"):
        accuracy([[0]], [0])
