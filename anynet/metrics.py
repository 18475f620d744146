"""Classification metrics on the host: accuracy, confusion matrix, precision and recall, a report.

These run on NumPy after a model has predicted, so they take host arrays (or anything
``numpy.asarray`` accepts); move device arrays first with ``backend.to_numpy``. Labels are
integer class indices ``0 .. n_classes - 1``. Every check raises
:class:`~anynet.errors.DataError` (a ``ValueError``) that names the argument, what was
expected and what came.

The definitions follow scikit-learn's (its functions are the oracle in the tests), with one
choice made explicit: a ratio with a zero denominator — the precision of a class never
predicted, the recall of a class absent from ``y_true`` — is ``0.0``, silently.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from anynet.errors import DataError

__all__ = ["accuracy", "classification_report", "confusion_matrix", "precision_recall"]


def _as_labels(name: str, y: Any) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array of non-negative labels, or raise naming ``name``."""
    try:
        y = np.asarray(y)
    except Exception as exc:  # e.g. a CuPy array, which refuses implicit host copies
        raise DataError(
            f"{name} must be a host array of integer labels, got {type(y).__name__} "
            f"({exc}); move device arrays first with backend.to_numpy()"
        ) from exc
    if y.ndim != 1:
        hint = "; take argmax over the class axis first" if y.ndim == 2 else ""
        raise DataError(f"{name} must be 1-D, got an array of shape {y.shape}{hint}")
    # An empty list becomes float64; let it through as the empty label array it means.
    if y.size == 0:
        return y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(
            f"{name} must hold integer class labels, got dtype {y.dtype}; "
            "convert with .astype(int) (from probabilities: argmax over the class axis)"
        )
    if y.min() < 0:
        raise DataError(f"{name} must hold labels >= 0, got {y.min()}")
    return y.astype(np.int64, copy=False)


def _check_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate both label arrays and that they have the same length."""
    y_true = _as_labels("y_true", y_true)
    y_pred = _as_labels("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise DataError(
            f"y_true and y_pred must have the same length, got {y_true.shape[0]} and "
            f"{y_pred.shape[0]}"
        )
    return y_true, y_pred


def _n_classes(n_classes: Any, *labels: np.ndarray) -> int:
    """Check ``n_classes`` against the labels, or infer it as the largest label plus one."""
    seen = max((int(y.max()) + 1 for y in labels if y.size), default=0)
    if n_classes is None:
        return seen
    if isinstance(n_classes, bool):
        raise TypeError(f"n_classes must be an integer, got {n_classes!r}")
    n_classes = operator.index(n_classes)
    if n_classes < 1:
        raise DataError(f"n_classes must be >= 1, got {n_classes}")
    for name, y in zip(("y_true", "y_pred"), labels, strict=True):
        if y.size and y.max() >= n_classes:
            raise DataError(
                f"{name} must hold labels in [0, {n_classes - 1}] for {n_classes} classes, "
                f"got {y.max()}"
            )
    return n_classes


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the true label.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (n_samples,)
        True and predicted class labels, non-negative integers.

    Returns
    -------
    float
        ``mean(y_true == y_pred)``, in ``[0, 1]``.

    Raises
    ------
    DataError
        If the labels are not 1-D non-negative integers of equal, non-zero length.

    Examples
    --------
    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if y_true.size == 0:
        raise DataError("y_true and y_pred are empty: accuracy needs at least one sample")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """Count each (true, predicted) pair of labels.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (n_samples,)
        True and predicted class labels in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes. Default: the largest label seen in either array, plus one. Pass it
        so that classes absent from a small sample still get their row and column.

    Returns
    -------
    numpy.ndarray of int64, shape (n_classes, n_classes)
        ``cm[i, j]`` is the number of samples of true class ``i`` predicted as ``j``: rows are
        true classes, columns predicted ones, the diagonal is the correct predictions.

    Raises
    ------
    DataError
        If the labels are not 1-D non-negative integers of equal length, or a label is
        ``>= n_classes``.

    Examples
    --------
    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2])
    array([[1, 0, 0],
           [0, 1, 1],
           [0, 0, 1]])
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    k = _n_classes(n_classes, y_true, y_pred)
    # One bincount over the flattened (true, pred) index: O(n), no Python loop over samples.
    counts = np.bincount(y_true * k + y_pred, minlength=k * k)
    return counts.reshape(k, k).astype(np.int64, copy=False)


def precision_recall(
    y_true: Any, y_pred: Any, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and support.

    Precision of class ``c`` is the fraction of samples predicted ``c`` that truly are ``c``;
    recall is the fraction of samples truly ``c`` that were predicted ``c``. A class that is
    never predicted has precision ``0.0``, and one absent from ``y_true`` has recall ``0.0``:
    0/0 is defined as 0.0, without a warning (scikit-learn's ``zero_division=0``).

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (n_samples,)
        True and predicted class labels in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes. Default: the largest label seen in either array, plus one.

    Returns
    -------
    precision : numpy.ndarray of float64, shape (n_classes,)
    recall : numpy.ndarray of float64, shape (n_classes,)
    support : numpy.ndarray of int64, shape (n_classes,)
        Number of samples of each true class.

    Raises
    ------
    DataError
        As :func:`confusion_matrix`.

    Examples
    --------
    >>> p, r, s = precision_recall([0, 0, 1, 1], [0, 1, 1, 1])
    >>> p.tolist(), r.tolist(), s.tolist()
    ([1.0, 0.6666666666666666], [0.5, 1.0], [2, 2])
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    true_positives = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    # `where=` skips the zero denominators entirely, so there is no 0/0 warning to silence.
    precision = np.divide(
        true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0
    )
    recall = np.divide(
        true_positives, support, out=np.zeros_like(true_positives), where=support > 0
    )
    return precision, recall, support


def classification_report(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str] | None = None,
    *,
    digits: int = 3,
) -> str:
    """A text table of per-class precision, recall and support, with overall accuracy.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (n_samples,)
        True and predicted class labels.
    class_names : sequence of str, optional
        Name of each class, in label order; its length fixes the number of classes. Default:
        the labels themselves, ``0 .. max label``.
    digits : int
        Decimal places for precision, recall and accuracy.

    Returns
    -------
    str
        Aligned lines, no trailing newline: a header, one row per class, a ``macro avg`` row
        (the unweighted mean over classes) and an ``accuracy`` row whose support is the number
        of samples. 0/0 counts as 0.0, as in :func:`precision_recall`.

    Raises
    ------
    DataError
        As :func:`confusion_matrix`, or if the arrays are empty.

    Examples
    --------
    >>> print(classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"]))
    class      precision  recall  support
    cat            1.000   0.500        2
    dog            0.667   1.000        2
    <BLANKLINE>
    macro avg      0.833   0.750        4
    accuracy               0.750        4
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    n_classes = None if class_names is None else len(class_names)
    if n_classes == 0:
        raise DataError("class_names must name at least one class, got an empty sequence")
    acc = accuracy(y_true, y_pred)
    precision, recall, support = precision_recall(y_true, y_pred, n_classes)
    names = [str(c) for c in range(len(support))] if class_names is None else list(class_names)
    names = [str(n) for n in names]

    rows = [
        (name, f"{p:.{digits}f}", f"{r:.{digits}f}", str(s))
        for name, p, r, s in zip(names, precision, recall, support, strict=True)
    ]
    macro = ("macro avg", f"{precision.mean():.{digits}f}", f"{recall.mean():.{digits}f}")
    # The accuracy row sits under the recall column: accuracy is the support-weighted recall.
    summary = [(*macro, str(y_true.size)), ("accuracy", "", f"{acc:.{digits}f}", str(y_true.size))]
    header = ("class", "precision", "recall", "support")

    everything = [header, *rows, *summary]
    widths = [max(len(row[i]) for row in everything) for i in range(4)]

    def line(row: tuple[str, str, str, str]) -> str:
        first = row[0].ljust(widths[0] + 2)
        rest = "  ".join(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))
        return (first + rest).rstrip()

    return "\n".join([line(header), *map(line, rows), "", *map(line, summary)])
