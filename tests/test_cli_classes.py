"""`anynet predict` and `evaluate` with a model whose classes are not Fashion-MNIST's labels.

A model fitted in Python on labels 1 to 10, or on words, and saved with ``anynet.save`` is a
valid model file. predict used to name its classes by indexing Fashion-MNIST's names with
them: class 10 crashed with an IndexError, the others got another class's name. evaluate
scored it against the test set's labels 0 to 9 without a word. No Fashion-MNIST needed: the
models are trained on made-up images whose class is their brightness, and evaluate refuses
before it looks for the data."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import anynet_cmd

import anynet

Image = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

#: Labels for the ten brightness levels, darkest first.
LABELS = {
    "0 to 9": np.arange(10),
    "1 to 10": np.arange(1, 11),
    "words": np.array(
        ["ink", "coal", "slate", "ash", "iron", "fog", "pearl", "mist", "bone", "snow"]
    ),
    "0.0 to 9.0": np.arange(10, dtype=np.float64),
    "0 to 2": np.array([0, 1, 2]),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    out = {}
    for name, labels in LABELS.items():
        level = np.arange(1500) % len(labels)
        X = level[:, None] * (250 // len(labels)) + rng.integers(0, 20, (1500, 784))
        clf = anynet.NNClassifier((16,), max_iter=15, random_state=0)
        clf.fit(X.astype(np.uint8), labels[level])
        out[name] = str(anynet.save(clf, folder / f"{name}.safetensors"))
    return out


@pytest.fixture(scope="module")
def brightest(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("images") / "bright.png"
    Image.fromarray(np.full((28, 28), 250, np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("name", ["1 to 10", "words", "0 to 2"])
def test_predict_names_other_classes_by_their_labels(name, models, brightest):
    out = anynet_cmd("predict", models[name], brightest, "--top", "10")
    assert out.returncode == 0, out.stderr
    clf = anynet.load(models[name])
    expected = clf.predict(np.asarray(Image.open(brightest)).reshape(1, 784))[0]
    answer, top = out.stdout.strip().split(": ", 1)[1].split("  ", 1)
    assert answer == str(expected)
    # Every class is listed by its own label, none by a Fashion-MNIST name.
    listed = [item.rsplit(" ", 1)[0] for item in top.strip("()").split(", ")]
    assert sorted(listed) == sorted(str(c) for c in clf.classes_)


@pytest.mark.parametrize("name", ["0 to 9", "0.0 to 9.0"])
def test_predict_names_fashion_mnist_labels(name, models, brightest):
    out = anynet_cmd("predict", models[name], brightest)
    assert out.returncode == 0, out.stderr
    label = int(anynet.load(models[name]).predict(np.full((1, 784), 250, np.uint8))[0])
    names = anynet.datasets.FASHION_MNIST_CLASSES
    assert out.stdout.startswith(f"{brightest}: {names[label]}  (")


@pytest.mark.parametrize(
    ("name", "shown"), [("1 to 10", "1, 2, 3"), ("words", "'ash', 'bone', 'coal'")]
)
def test_evaluate_refuses_classes_that_are_not_fashion_mnist_labels(name, shown, models, tmp_path):
    # Refused before the data is looked for: an empty --data-dir would be the error otherwise.
    (tmp_path / "no-data").mkdir()
    out = anynet_cmd(
        "evaluate", models[name], "--data-dir", str(tmp_path / "no-data"), "--no-download"
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"anynet evaluate: error: {models[name]}: the model's classes are")
    assert shown in out.stderr and "integers 0 to 9" in out.stderr
    assert "y_pred" not in out.stderr and "astype" not in out.stderr  # Python's words


def test_evaluate_warns_of_a_model_that_knows_some_classes(models, tmp_path):
    (tmp_path / "no-data").mkdir()
    out = anynet_cmd(
        "evaluate", models["0 to 2"], "--data-dir", str(tmp_path / "no-data"), "--no-download"
    )
    warning = out.stderr.splitlines()[0]
    assert warning.startswith(f"anynet evaluate: warning: {models['0 to 2']}: the model knows 3")
    assert "(3, 4, 5, 6, 7, 8, 9)" in warning


def test_which_classes_are_fashion_mnist_labels():
    from anynet.cli.data import class_names, integer_labels

    names = list(anynet.datasets.FASHION_MNIST_CLASSES)
    assert class_names(np.arange(10)) == names
    assert class_names(np.arange(10, dtype=np.uint8)) == names
    assert class_names(np.arange(10.0)) == names
    assert class_names(np.arange(1, 11)) == [str(i) for i in range(1, 11)]
    assert class_names(np.array([0, 1, 2])) == ["0", "1", "2"]
    assert class_names(np.array([False, True])) == ["False", "True"]
    assert integer_labels(np.array([0, 1, 2])) == [0, 1, 2]
    for classes in ([0.5, 1.0], [True, False], ["0", "1"], [-1, 0], [0, 10], [np.nan, 1.0]):
        assert integer_labels(np.array(classes)) is None, classes
