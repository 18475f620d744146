"""Pictures of a classifier: learning curves, prediction grids, probabilities, confusion, t-SNE.

Plotting is optional: matplotlib comes with ``pip install 'anynet-nn[plot]'`` and is imported
only when a function here is called. Every function builds a :class:`matplotlib.figure.Figure`
directly, without pyplot, so nothing needs a display, no global figure state is left behind
and nothing has to be closed; it returns the figure and, given ``path``, also saves it
(PNG for a ``.png`` name; the extension picks the format).

Inputs are host arrays (NumPy, or anything ``numpy.asarray`` accepts). Images are
``(N, H, W)`` or flattened ``(N, H * W)`` with square ``H == W`` (Fashion-MNIST: 28 x 28),
uint8 in ``0..255`` or floats. Bad shapes raise :class:`~anynet.errors.DataError`
(a ``ValueError``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from anynet.errors import DataError
from anynet.metrics import _as_labels, _check_pair

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_confusion_matrix",
    "plot_image_probabilities",
    "plot_learning_curves",
    "plot_predictions",
    "plot_tsne",
]

_MISTAKE = "tab:red"
_CORRECT = "black"


def _figure(**kwargs: Any) -> Figure:
    """A new pyplot-free Figure, or a clear error when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ModuleNotFoundError(
            "plotting needs matplotlib: pip install 'anynet-nn[plot]'", name="matplotlib"
        ) from None
    return Figure(layout="constrained", **kwargs)


def _finish(fig: Figure, path: str | os.PathLike[str] | None, dpi: int) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    """Class names as a list of str, at least one."""
    if isinstance(class_names, str) or len(class_names) == 0:
        raise DataError(f"class_names must be a non-empty sequence of names, got {class_names!r}")
    return [str(c) for c in class_names]


def _check_in_range(name: str, y: np.ndarray, n_classes: int) -> None:
    if y.size and y.max() >= n_classes:
        raise DataError(
            f"{name} must hold labels in [0, {n_classes - 1}] to index the {n_classes} "
            f"class_names, got {y.max()}"
        )


def _as_images(images: Any, name: str = "images") -> np.ndarray:
    """``(N, H, W)`` or ``(N, H * W)`` with a square image -> ``(N, H, W)``."""
    images = np.asarray(images)
    if images.ndim == 3:
        return images
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side == images.shape[1] and side > 0:
            return images.reshape(images.shape[0], side, side)
        raise DataError(
            f"{name} of shape {images.shape} are flattened, but {images.shape[1]} pixels is "
            "no square image; pass them as (N, H, W)"
        )
    raise DataError(
        f"{name} must be (N, H, W) or flattened (N, H * W), e.g. (N, 28, 28) or (N, 784); "
        f"got shape {images.shape}"
    )


def _gray_limits(images: np.ndarray) -> tuple[float, float]:
    """One grey scale for all images shown, so brightness means the same in every cell."""
    if images.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = float(np.min(images)), float(np.max(images))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _show_image(ax: Axes, image: np.ndarray, limits: tuple[float, float]) -> None:
    ax.imshow(image, cmap="gray", vmin=limits[0], vmax=limits[1], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_learning_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str] | None = None,
    *,
    val_label: str = "validation",
    dpi: int = 120,
) -> Figure:
    """Loss and accuracy per epoch, in two panels side by side.

    Parameters
    ----------
    history : mapping of str to sequence of float
        Per-epoch values. ``'loss'`` (training loss) is required; ``'val_loss'``,
        ``'train_accuracy'`` and ``'val_accuracy'`` are drawn when present. Each must have one
        value per epoch, as many as ``'loss'``. Other keys are ignored.
    val_label : str
        Legend name of the ``val_*`` series (``anynet train`` monitors the test set: "test").
    path : str or path-like, optional
        Also save the figure here.
    dpi : int
        Resolution of the saved file.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: loss (left), accuracy (right; says so when no accuracy was recorded).
        Epochs are numbered from 1.

    Raises
    ------
    DataError
        If ``'loss'`` is missing or empty, or a series is not 1-D or has another length.
    """
    if "loss" not in history:
        raise DataError(
            f"history must have a 'loss' entry (one value per epoch), got keys {sorted(history)}"
        )
    series = {}
    for key in ("loss", "val_loss", "train_accuracy", "val_accuracy"):
        if key in history:
            values = np.asarray(history[key], dtype=np.float64)
            if values.ndim != 1:
                raise DataError(
                    f"history[{key!r}] must be one value per epoch, got shape {values.shape}"
                )
            series[key] = values
    n_epochs = series["loss"].size
    if n_epochs == 0:
        raise DataError("history['loss'] is empty: nothing to plot")
    for key, values in series.items():
        if values.size != n_epochs:
            raise DataError(
                f"history[{key!r}] has {values.size} values but history['loss'] has "
                f"{n_epochs}: every series needs one value per epoch"
            )

    from matplotlib.ticker import MaxNLocator

    fig = _figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, n_epochs + 1)
    # Markers make a handful of epochs readable; on long runs they would only add noise.
    marker = "o" if n_epochs <= 30 else None
    panels = (
        (ax_loss, "loss", (("loss", "train"), ("val_loss", val_label))),
        (ax_acc, "accuracy", (("train_accuracy", "train"), ("val_accuracy", val_label))),
    )
    for ax, quantity, keys in panels:
        drawn = False
        for key, label in keys:
            if key in series:
                ax.plot(epochs, series[key], marker=marker, markersize=4, label=label)
                drawn = True
        ax.set_title(quantity)
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(
                0.5,
                0.5,
                f"no {quantity} recorded",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="gray",
            )
    return _finish(fig, path, dpi)


def plot_predictions(
    images: Any,
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    n: int = 25,
    path: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 120,
) -> Figure:
    """A grid of images titled ``"predicted (true)"``, mistakes in red.

    Parameters
    ----------
    images : array_like, shape (N, H, W) or (N, H * W)
        Images, uint8 or float; floats share one grey scale across the grid.
    y_true, y_pred : array_like of int, shape (N,)
        True and predicted labels, indices into ``class_names``.
    class_names : sequence of str
        Name of each class.
    n : int
        Show the first ``min(n, N)`` images, in a near-square grid.
    path : str or path-like, optional
        Also save the figure here.
    dpi : int
        Resolution of the saved file.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per image shown. A correct prediction's title is black; a mistake's is red and
        bold (bold so it still stands out to a reader who does not see red). The figure's
        title counts the mistakes.

    Raises
    ------
    DataError
        If the shapes disagree, a label is out of range, or ``n < 1``.
    """
    X = _as_images(images)
    y_true, y_pred = _check_pair(y_true, y_pred)
    names = _check_class_names(class_names)
    if y_true.size != X.shape[0]:
        raise DataError(f"images and labels must match: {X.shape[0]} images, {y_true.size} labels")
    _check_in_range("y_true", y_true, len(names))
    _check_in_range("y_pred", y_pred, len(names))
    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    k = min(n, X.shape[0])
    if k == 0:
        raise DataError("images is empty: nothing to plot")

    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    fig = _figure(figsize=(2.0 * cols, 2.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[k:]:
        ax.remove()  # so len(fig.axes) is the number of images
    limits = _gray_limits(X[:k])
    for ax, image, t, p in zip(axes, X[:k], y_true[:k], y_pred[:k], strict=False):
        _show_image(ax, image, limits)
        wrong = t != p
        ax.set_title(
            f"{names[p]} ({names[t]})",
            fontsize=9,
            color=_MISTAKE if wrong else _CORRECT,
            fontweight="bold" if wrong else "normal",
        )
    mistakes = int(np.sum(y_true[:k] != y_pred[:k]))
    fig.suptitle(f"predicted (true): {mistakes} of {k} wrong")
    return _finish(fig, path, dpi)


def plot_image_probabilities(
    image: Any,
    probabilities: Any,
    class_names: Sequence[str],
    true_label: int | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 120,
) -> Figure:
    """One image beside horizontal bars of its class probabilities.

    Parameters
    ----------
    image : array_like, shape (H, W) or (H * W,)
        The image, uint8 or float.
    probabilities : array_like of float, shape (n_classes,)
        The model's probability for each class (after softmax), each in ``[0, 1]``.
    class_names : sequence of str
        Name of each class, ``len(class_names) == n_classes``.
    true_label : int, optional
        The true class; when given it is named above the image, its name on the bar axis is
        green, and the predicted bar is green if right, red if wrong.
    path : str or path-like, optional
        Also save the figure here.
    dpi : int
        Resolution of the saved file.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the image (left) and one bar per class (right), the first class at the top.
        The predicted class (the largest probability) has a coloured bar, a bold name and its
        probability written beside it; other bars are grey.

    Raises
    ------
    DataError
        If ``probabilities`` is not 1-D with one value per class in ``[0, 1]``, the image is
        not 2-D (or flattened square), or ``true_label`` is out of range.
    """
    names = _check_class_names(class_names)
    image = _as_images(np.asarray(image)[np.newaxis], name="image")[0]
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 1 or probs.size != len(names):
        raise DataError(
            f"probabilities must be 1-D with one value per class ({len(names)} class_names), "
            f"got shape {probs.shape}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise DataError(
            f"probabilities must lie in [0, 1], got values in [{probs.min()}, {probs.max()}]; "
            "are these logits? apply softmax first"
        )
    if true_label is not None:
        true_label = int(_as_labels("true_label", [true_label])[0])
        _check_in_range("true_label", np.asarray([true_label]), len(names))
    predicted = int(np.argmax(probs))

    fig = _figure(figsize=(7.5, 3.5))
    ax_img, ax_bar = fig.subplots(1, 2, width_ratios=(1, 1.4))
    _show_image(ax_img, image, _gray_limits(image))
    if true_label is not None:
        ax_img.set_title(f"true: {names[true_label]}")

    if true_label is None:
        highlight = "tab:blue"
    else:
        highlight = "tab:green" if predicted == true_label else _MISTAKE
    colours = ["lightgray"] * len(names)
    colours[predicted] = highlight
    positions = np.arange(len(names))
    ax_bar.barh(positions, probs, color=colours)
    ax_bar.set_yticks(positions, names)
    ax_bar.invert_yaxis()  # first class on top, reading order
    ticklabels = ax_bar.get_yticklabels()
    ticklabels[predicted].set_fontweight("bold")
    if true_label is not None:
        # The true class's name is green wherever its bar is, so a miss shows what was right.
        ticklabels[true_label].set_color("tab:green")
        ticklabels[true_label].set_fontweight("bold")
    ax_bar.text(probs[predicted] + 0.02, predicted, f"{probs[predicted]:.2f}", va="center")
    ax_bar.set_xlim(0, 1.1)  # room for the label beside a bar at 1.0
    ax_bar.set_xlabel("probability")
    ax_bar.set_title(f"predicted: {names[predicted]}")
    return _finish(fig, path, dpi)


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str],
    normalize: bool = True,
    path: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 120,
) -> Figure:
    """An annotated heatmap of a confusion matrix: rows true classes, columns predicted.

    Parameters
    ----------
    cm : array_like, shape (n_classes, n_classes)
        Counts, as from :func:`anynet.metrics.confusion_matrix`: ``cm[i, j]`` samples of true
        class ``i`` predicted as ``j``.
    class_names : sequence of str
        Name of each class.
    normalize : bool
        Divide each row by its total, so a cell is the fraction of the true class predicted as
        the column's class and the diagonal is per-class recall. A row with no samples stays 0.
    path : str or path-like, optional
        Also save the figure here.
    dpi : int
        Resolution of the saved file.

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap axes (its image holds the matrix drawn, normalized or not) and a colour bar.

    Raises
    ------
    DataError
        If ``cm`` is not square with one row per class, or has negative or non-finite entries.
    """
    names = _check_class_names(class_names)
    counts = np.asarray(cm, dtype=np.float64)
    k = len(names)
    if counts.shape != (k, k):
        raise DataError(
            f"cm must be square with one row and column per class ({k} class_names), "
            f"got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise DataError("cm must hold finite, non-negative counts")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        data = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        vmax = 1.0
    else:
        data = counts
        vmax = max(float(counts.max()), 1.0)

    side = max(4.0, 0.6 * k + 2.0)
    fig = _figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    heat = ax.imshow(data, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(heat, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    ticks = np.arange(k)
    ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    # Dark cells get white text; the threshold is half the colour scale.
    for i in range(k):
        for j in range(k):
            value = data[i, j]
            text = f"{value:.2f}" if normalize else f"{value:.0f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > vmax / 2 else "black",
            )
    ax.set_title("confusion matrix" + (" (rows normalized)" if normalize else ""))
    return _finish(fig, path, dpi)


def plot_tsne(
    X: Any,
    y: Any,
    class_names: Sequence[str],
    n_samples: int = 2000,
    random_state: int = 0,
    path: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 120,
) -> Figure:
    """A 2-D t-SNE map of the data, one colour per class.

    Needs scikit-learn (``pip install scikit-learn``). A random subset of ``n_samples``
    points, drawn from ``random_state``, is first reduced to 50 dimensions with PCA (the usual
    step before t-SNE: it removes noise and makes the neighbour search fast), then embedded.
    The defaults take some seconds; t-SNE's cost grows faster than linearly in ``n_samples``.

    Parameters
    ----------
    X : array_like, shape (N, D) or (N, H, W)
        The samples, e.g. flattened images. uint8 is scaled to ``[0, 1]``.
    y : array_like of int, shape (N,)
        Labels, indices into ``class_names``.
    class_names : sequence of str
        Name of each class.
    n_samples : int
        How many points to embed (all of them if ``N`` is smaller).
    random_state : int
        Seed of both the subsample and t-SNE: the same call draws the same picture.
    path : str or path-like, optional
        Also save the figure here.
    dpi : int
        Resolution of the saved file.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one scatter per class present and a legend naming them. The axes have no
        ticks: t-SNE coordinates have no units, only neighbourhoods mean something.

    Raises
    ------
    DataError
        If ``X`` and ``y`` disagree in length, a label is out of range, or fewer than 5 points
        would be embedded.
    ModuleNotFoundError
        If scikit-learn is not installed.
    """
    names = _check_class_names(class_names)
    X = np.asarray(X)
    if X.ndim < 2:
        raise DataError(f"X must be (N, D) or (N, H, W), got shape {X.shape}")
    X = X.reshape(X.shape[0], -1)
    labels = _as_labels("y", y)
    if labels.size != X.shape[0]:
        raise DataError(f"X and y must match: {X.shape[0]} samples, {labels.size} labels")
    _check_in_range("y", labels, len(names))
    m = min(int(n_samples), X.shape[0])
    # t-SNE's perplexity must stay below the number of points; under ~5 there is no map.
    if m < 5:
        raise DataError(f"t-SNE needs at least 5 points, got {m} (n_samples={n_samples})")
    try:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
    except ImportError:
        raise ModuleNotFoundError(
            "plot_tsne needs scikit-learn: pip install scikit-learn", name="sklearn"
        ) from None

    rng = np.random.default_rng(random_state)
    # Sorted, so the subset is also a deterministic function of the seed in its order.
    index = np.sort(rng.choice(X.shape[0], size=m, replace=False))
    points = X[index].astype(np.float32)
    if X.dtype == np.uint8:
        points /= 255.0
    labels = labels[index]
    if points.shape[1] > 50 and m > 50:
        points = PCA(n_components=50, random_state=random_state).fit_transform(points)
    perplexity = min(30.0, (m - 1) / 3.0)
    embedding = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=random_state,
    ).fit_transform(points)

    fig = _figure(figsize=(8, 6.5))
    ax = fig.subplots()
    from matplotlib import colormaps

    # tab10 fits Fashion-MNIST's ten classes exactly; beyond 20 classes colours repeat.
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    for c in np.unique(labels):
        mask = labels == c
        ax.scatter(
            embedding[mask, 0],
            embedding[mask, 1],
            s=6,
            color=palette(c % palette.N),
            label=names[c],
            alpha=0.8,
            linewidths=0,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {m} samples")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, frameon=False)
    return _finish(fig, path, dpi)
