"""anynet.plots: what each figure holds (axes, text colours, bar lengths, heatmap values,
scatter points, legend), the PNGs it writes, its input checks, and its optional imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # belt and braces: the module under test never touches pyplot anyway

from matplotlib.colors import to_rgba  # noqa: E402

from anynet import plots  # noqa: E402
from anynet.errors import DataError  # noqa: E402

NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RED = to_rgba("tab:red")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels(rng):
    y_true = rng.integers(0, 10, 30)
    y_pred = y_true.copy()
    y_pred[[0, 3, 7, 12]] = (y_true[[0, 3, 7, 12]] + 1) % 10
    return y_true, y_pred


def assert_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is suspiciously small ({len(data)} bytes)"


# --- learning curves ---------------------------------------------------------------------

HISTORY = {
    "loss": [1.2, 0.7, 0.5, 0.45],
    "val_loss": [0.9, 0.65, 0.6, 0.62],
    "train_accuracy": [0.6, 0.75, 0.82, 0.85],
    "val_accuracy": [0.7, 0.77, 0.8, 0.79],
    "lr": [0.1, 0.1, 0.01, 0.01],  # an extra key is ignored
}


def test_learning_curves_draw_every_series_from_epoch_one():
    fig = plots.plot_learning_curves(HISTORY)
    ax_loss, ax_acc = fig.axes
    drawn = {}
    for ax in (ax_loss, ax_acc):
        for line in ax.get_lines():
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
            drawn[(ax.get_title(), line.get_label())] = line.get_ydata()
    np.testing.assert_allclose(drawn[("loss", "train")], HISTORY["loss"])
    np.testing.assert_allclose(drawn[("loss", "validation")], HISTORY["val_loss"])
    np.testing.assert_allclose(drawn[("accuracy", "train")], HISTORY["train_accuracy"])
    np.testing.assert_allclose(drawn[("accuracy", "validation")], HISTORY["val_accuracy"])
    assert len(drawn) == 4
    assert ax_loss.get_xlabel() == ax_acc.get_xlabel() == "epoch"


def test_learning_curves_with_loss_only():
    fig = plots.plot_learning_curves({"loss": [3.0, 2.0]})
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.get_lines()) == 1
    assert ax_acc.get_lines() == []
    assert [t.get_text() for t in ax_acc.texts] == ["no accuracy recorded"]


def test_learning_curves_checks():
    with pytest.raises(DataError, match=r"history must have a 'loss' entry.*val_loss"):
        plots.plot_learning_curves({"val_loss": [1.0]})
    with pytest.raises(DataError, match=r"history\['loss'\] is empty"):
        plots.plot_learning_curves({"loss": []})
    with pytest.raises(DataError, match=r"history\['val_accuracy'\] has 1 values .* has 2"):
        plots.plot_learning_curves({"loss": [1.0, 0.5], "val_accuracy": [0.5]})
    with pytest.raises(DataError, match=r"history\['loss'\] must be one value per epoch"):
        plots.plot_learning_curves({"loss": [[1.0, 0.5]]})


# --- prediction grid ---------------------------------------------------------------------


def test_predictions_grid_titles_and_colours(images, labels):
    y_true, y_pred = labels
    fig = plots.plot_predictions(images, y_true, y_pred, NAMES, n=25)
    assert len(fig.axes) == 25
    for i, ax in enumerate(fig.axes):
        title = ax.title
        assert title.get_text() == f"{NAMES[y_pred[i]]} ({NAMES[y_true[i]]})"
        is_red = to_rgba(title.get_color()) == RED
        assert is_red == (y_true[i] != y_pred[i]), f"image {i}: {title.get_text()}"
        np.testing.assert_array_equal(ax.images[0].get_array(), images[i])
    assert fig.get_suptitle() == "predicted (true): 4 of 25 wrong"


def test_predictions_fewer_images_than_n_and_flat_images(images, labels):
    y_true, y_pred = labels
    flat = images[:7].reshape(7, 784).astype(np.float32) / 255
    fig = plots.plot_predictions(flat, y_true[:7], y_pred[:7], NAMES)
    assert len(fig.axes) == 7
    np.testing.assert_allclose(fig.axes[6].images[0].get_array(), flat[6].reshape(28, 28))
    # Floats share one grey scale across the grid.
    assert {ax.images[0].get_clim() for ax in fig.axes} == {(flat.min(), flat.max())}


def test_predictions_checks(images, labels):
    y_true, y_pred = labels
    with pytest.raises(DataError, match="30 images, 29 labels"):
        plots.plot_predictions(images, y_true[:29], y_pred[:29], NAMES)
    with pytest.raises(DataError, match=r"y_pred must hold labels in \[0, 2\] .* 3 class_names"):
        plots.plot_predictions(images, y_true % 3, y_pred, NAMES[:3])
    with pytest.raises(DataError, match="780 pixels is no square image"):
        plots.plot_predictions(np.zeros((30, 780)), y_true, y_pred, NAMES)
    with pytest.raises(DataError, match=r"images must be \(N, H, W\)"):
        plots.plot_predictions(np.zeros(30), y_true, y_pred, NAMES)
    with pytest.raises(DataError, match="n must be >= 1"):
        plots.plot_predictions(images, y_true, y_pred, NAMES, n=0)
    with pytest.raises(DataError, match="class_names must be a non-empty sequence"):
        plots.plot_predictions(images, y_true, y_pred, "abc")


# --- one image and its probabilities ------------------------------------------------------


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_image_probabilities_bars(images, rng):
    probs = softmax(rng.normal(size=10) * 2)
    fig = plots.plot_image_probabilities(images[0], probs, NAMES, true_label=3)
    ax_img, ax_bar = fig.axes
    np.testing.assert_array_equal(ax_img.images[0].get_array(), images[0])
    bars = ax_bar.patches
    assert len(bars) == 10
    # Horizontal bars: a bar's length (its width) is the probability.
    np.testing.assert_allclose([b.get_width() for b in bars], probs)
    np.testing.assert_allclose([b.get_y() + b.get_height() / 2 for b in bars], np.arange(10))
    assert [t.get_text() for t in ax_bar.get_yticklabels()] == NAMES
    assert ax_bar.yaxis_inverted()  # the first class on top

    predicted = int(np.argmax(probs))
    colours = [b.get_facecolor() for b in bars]
    assert colours.count(colours[predicted]) == 1, "the predicted bar stands out"
    assert ax_bar.get_yticklabels()[predicted].get_fontweight() == "bold"
    assert ax_bar.get_title() == f"predicted: {NAMES[predicted]}"
    assert ax_img.get_title() == f"true: {NAMES[3]}"
    assert to_rgba(ax_bar.get_yticklabels()[3].get_color()) == to_rgba("tab:green")


def test_image_probabilities_right_and_wrong_colours(images):
    probs = np.full(10, 0.02)
    probs[5] = 0.82
    right = plots.plot_image_probabilities(images[0], probs, NAMES, true_label=5)
    wrong = plots.plot_image_probabilities(images[0], probs, NAMES, true_label=2)
    unknown = plots.plot_image_probabilities(images[0].ravel(), probs, NAMES)
    assert right.axes[1].patches[5].get_facecolor() == to_rgba("tab:green")
    assert wrong.axes[1].patches[5].get_facecolor() == RED
    assert unknown.axes[1].patches[5].get_facecolor() == to_rgba("tab:blue")
    assert unknown.axes[0].get_title() == ""


def test_image_probabilities_checks(images):
    probs = np.full(10, 0.1)
    with pytest.raises(
        DataError, match=r"one value per class \(10 class_names\), got shape \(9,\)"
    ):
        plots.plot_image_probabilities(images[0], probs[:9], NAMES)
    with pytest.raises(DataError, match="are these logits"):
        plots.plot_image_probabilities(images[0], probs * 20 - 5, NAMES)
    with pytest.raises(DataError, match="are these logits"):
        plots.plot_image_probabilities(images[0], np.full(10, np.nan), NAMES)
    with pytest.raises(DataError, match=r"true_label must hold labels in \[0, 9\]"):
        plots.plot_image_probabilities(images[0], probs, NAMES, true_label=10)
    with pytest.raises(DataError, match="image must be"):
        plots.plot_image_probabilities(images[:2], probs, NAMES)


# --- confusion matrix --------------------------------------------------------------------

CM = np.array([[5, 1, 0], [2, 6, 2], [0, 0, 0]])  # the last class never occurs


def test_confusion_heatmap_normalized():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the empty row must not divide 0 by 0 noisily
        fig = plots.plot_confusion_matrix(CM, NAMES[:3])
    ax = fig.axes[0]
    expected = np.array([[5 / 6, 1 / 6, 0], [0.2, 0.6, 0.2], [0, 0, 0]])
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert len(fig.axes) == 2  # heatmap and colour bar
    cells = [t.get_text() for t in ax.texts]
    assert cells == ["0.83", "0.17", "0.00", "0.20", "0.60", "0.20", "0.00", "0.00", "0.00"]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES[:3]
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES[:3]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")


def test_confusion_heatmap_counts():
    fig = plots.plot_confusion_matrix(CM, NAMES[:3], normalize=False)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), CM)
    assert [t.get_text() for t in ax.texts][:3] == ["5", "1", "0"]
    # Text stays readable: white on the darkest cell, black on the lightest.
    assert to_rgba(ax.texts[4].get_color()) == to_rgba("white")
    assert to_rgba(ax.texts[2].get_color()) == to_rgba("black")


def test_confusion_checks():
    with pytest.raises(DataError, match=r"one row and column per class \(2 class_names\)"):
        plots.plot_confusion_matrix(CM, NAMES[:2])
    with pytest.raises(DataError, match=r"got shape \(2, 3\)"):
        plots.plot_confusion_matrix(CM[:2], NAMES[:3])
    with pytest.raises(DataError, match="non-negative"):
        plots.plot_confusion_matrix(-CM, NAMES[:3])


# --- t-SNE -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clusters():
    """300 points in 784-D around 10 well-separated centres; class 7 deliberately absent."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(10, 784)) * 5
    y = rng.choice([c for c in range(10) if c != 7], size=300)
    X = centres[y] + rng.normal(size=(300, 784))
    return X.astype(np.float32), y


def scatter_points(fig):
    return np.concatenate([c.get_offsets() for c in fig.axes[0].collections])


def test_tsne_points_and_legend(clusters):
    pytest.importorskip("sklearn")
    X, y = clusters
    fig = plots.plot_tsne(X, y, NAMES, n_samples=150)
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert scatter_points(fig).shape == (150, 2)
    present = sorted(set(y.tolist()))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [NAMES[c] for c in present]  # 150 of 300 points: all 9 classes drawn
    assert "Sneaker" not in legend  # class 7 never occurs, so it gets no legend entry
    # One scatter per class drawn, each point in the scatter of its own class.
    assert [c.get_label() for c in ax.collections] == legend
    assert len({tuple(c.get_facecolor()[0]) for c in ax.collections}) == len(legend)


def test_tsne_is_deterministic_and_subsamples(clusters):
    pytest.importorskip("sklearn")
    X, y = clusters
    a = scatter_points(plots.plot_tsne(X, y, NAMES, n_samples=60, random_state=3))
    b = scatter_points(plots.plot_tsne(X, y, NAMES, n_samples=60, random_state=3))
    np.testing.assert_array_equal(a, b)
    # More points asked for than exist: all are drawn. uint8 images (N, H, W) are accepted.
    small = (np.abs(X[:40]) * 10).clip(0, 255).astype(np.uint8).reshape(40, 28, 28)
    assert scatter_points(plots.plot_tsne(small, y[:40], NAMES, n_samples=2000)).shape == (40, 2)


def test_tsne_checks(clusters):
    X, y = clusters
    with pytest.raises(DataError, match="300 samples, 299 labels"):
        plots.plot_tsne(X, y[:299], NAMES)
    with pytest.raises(DataError, match="at least 5 points"):
        plots.plot_tsne(X, y, NAMES, n_samples=4)
    with pytest.raises(DataError, match=r"y must hold labels in \[0, 4\]"):
        plots.plot_tsne(X, y, NAMES[:5])


# --- files, and optional dependencies ----------------------------------------------------


@pytest.mark.parametrize(
    "draw",
    [
        lambda path, im, y: plots.plot_learning_curves(HISTORY, path=path),
        lambda path, im, y: plots.plot_predictions(im, y[0], y[1], NAMES, n=9, path=path),
        lambda path, im, y: plots.plot_image_probabilities(
            im[0], np.full(10, 0.1), NAMES, 1, path=path
        ),
        lambda path, im, y: plots.plot_confusion_matrix(np.eye(10) * 9 + 1, NAMES, path=path),
    ],
    ids=["learning_curves", "predictions", "image_probabilities", "confusion_matrix"],
)
def test_saves_png(tmp_path, images, labels, draw):
    path = tmp_path / "figure.png"
    fig = draw(path, images, labels)
    assert_png(path)
    assert fig.__class__.__name__ == "Figure"


def test_tsne_saves_png(tmp_path, clusters):
    pytest.importorskip("sklearn")
    path = tmp_path / "tsne.png"
    plots.plot_tsne(*clusters, NAMES, n_samples=50, path=str(path))
    assert_png(path)


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    # None in sys.modules makes the import fail as if matplotlib were not installed.
    for module in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        ModuleNotFoundError, match=r"plotting needs matplotlib: pip install 'anynet-nn\[plot\]'"
    ) as info:
        plots.plot_learning_curves(HISTORY)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_sklearn_is_a_clear_error(monkeypatch, clusters):
    for module in ("sklearn", "sklearn.decomposition", "sklearn.manifold"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        ModuleNotFoundError, match="plot_tsne needs scikit-learn: pip install scikit-learn"
    ):
        plots.plot_tsne(*clusters, NAMES, n_samples=20)


def test_no_pyplot_and_lazy_import():
    # In a fresh interpreter: importing anynet.plots imports no matplotlib, and drawing never
    # imports pyplot (so no global figure registry, no display, nothing to close).
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import anynet.plots as plots
        assert "matplotlib" not in sys.modules, "anynet.plots imported matplotlib eagerly"
        plots.plot_learning_curves({"loss": [1.0, 0.5]})
        plots.plot_predictions(np.zeros((4, 28, 28)), [0, 1, 0, 1], [0, 1, 1, 1], ["a", "b"])
        plots.plot_image_probabilities(np.zeros(784), [0.3, 0.7], ["a", "b"])
        plots.plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b"])
        assert "matplotlib" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
