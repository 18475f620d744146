"""`anynet train --data`: a .npz, a CSV table or a folder of images, trained on, evaluated and
predicted from the command line, as a user would; the validation split held out of the
training data, stratified and seeded; the model file keeping what the data was.

Each data set is tiny and made here (a few hundred samples whose class is plain to see), each
run a few epochs of a small network.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import anynet
from anynet.cli import main
from anynet.datasets.split import stratified_split
from anynet.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = ["--epochs", "4", "--hidden", "16", "--lr", "0.01", "--batch-size", "32", "--quiet"]


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 4 features, far apart: any trained network tells them apart."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 4)) + 4 * np.eye(3, 4)[y]
    return X.astype(np.float32), y


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def accuracy_of(line: str, what: str) -> float:
    """``what accuracy 97.50% ...`` in a line, as a fraction."""
    return float(line.split(f"{what} accuracy ")[1].split("%")[0]) / 100


def write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---- the three forms -------------------------------------------------------------------------


def test_npz_trains_evaluates_and_predicts(tmp_path, capsys):
    X, y = blobs()
    X_test, y_test = blobs(90, seed=1)
    data = tmp_path / "my.npz"
    np.savez(data, X=X, y=y, X_test=X_test, y_test=y_test)
    model = tmp_path / "m.safetensors"
    code, out, err = run(capsys, "train", "--data", str(data), *SMALL, "--out", str(model))
    assert code == 0, err
    assert f"data: {data} (arrays of 4 features), its X_test and y_test the test set" in err
    # 10% of 300, stratified: 10 of each class held out, 270 trained on.
    assert "4-16-3 relu MLP" in err and "on 270 samples of 4 features (30 more held out" in err
    assert accuracy_of(out, "test") > 0.9 and accuracy_of(out, "validation") > 0.9

    clf = anynet.load(model)
    assert clf.data_format_ == {"kind": "npz", "shape": [4]}
    assert clf.classes_.tolist() == [0, 1, 2]
    # The epochs were scored on the held-out split; the test set only at the end.
    assert clf.history_["val_accuracy"][-1] == accuracy_of(out, "validation")

    code, out, err = run(capsys, "evaluate", str(model), "--data", str(data))
    assert code == 0, err
    assert "90 labelled samples" in err  # X_test and y_test, not X and y
    assert "accuracy" in out and "confusion matrix" in out

    np.savez(tmp_path / "new.npz", X=X_test[:3])  # samples alone, no labels
    code, out, err = run(capsys, "predict", str(model), str(tmp_path / "new.npz"))
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"{tmp_path / 'new.npz'}[{i}]" for i in range(3)
    ]
    assert [int(line.split(": ")[1].split()[0]) for line in lines] == y_test[:3].tolist()


def test_csv_with_string_labels_and_a_target_column(tmp_path, capsys):
    X, y = blobs()
    names = np.array(["setosa", "versicolor", "virginica"])
    # The label column first, chosen with --target: not the default (last) column.
    rows = [[names[c], *map(float, x)] for x, c in zip(X, y, strict=True)]
    data = write_csv(tmp_path / "iris.csv", ["species", "a", "b", "c", "d"], rows)
    model = tmp_path / "m.safetensors"
    code, out, err = run(
        capsys, "train", "--data", str(data), "--target", "species", *SMALL, "--out", str(model)
    )
    assert code == 0, err
    assert "a table of 4 features, labels in 'species'" in err
    assert "test accuracy" not in out and accuracy_of(out, "validation") > 0.9
    clf = anynet.load(model)
    assert clf.data_format_ == {"kind": "csv", "columns": ["a", "b", "c", "d"], "target": "species"}
    assert clf.classes_.tolist() == names.tolist()

    code, out, err = run(capsys, "evaluate", str(model), "--data", str(data))
    assert code == 0, err
    assert "setosa" in out and "300 labelled samples" in err

    # Rows to predict: the feature columns in another order, no label column.
    new = write_csv(tmp_path / "new.csv", ["d", "c", "b", "a"], [X[i, ::-1] for i in range(3)])
    code, out, err = run(capsys, "predict", str(model), str(new))
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"{new} row {r}" for r in (2, 3, 4)]
    assert [line.split(": ")[1].split()[0] for line in lines] == names[y[:3]].tolist()


def write_images(root: Path, n: int = 40, colour: bool = False, size=(10, 12)) -> Path:
    """Two classes of images (``size`` is width x height): a bright bar across, or down."""
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = size
    for name in ("across", "down"):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 60, (height, width, 3 if colour else 1), dtype=np.uint8)
            if name == "across":
                pixels[height // 2 - 1 : height // 2 + 1, :, 0] = 250
            else:
                pixels[:, width // 2 - 1 : width // 2 + 1, 0] = 250
            Image.fromarray(pixels if colour else pixels[..., 0]).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "rgb"])
def test_image_folder_trains_an_mlp(tmp_path, capsys, colour):
    pytest.importorskip("PIL")
    data = write_images(tmp_path / "bars", colour=colour)
    model = tmp_path / "m.safetensors"
    code, out, err = run(capsys, "train", "--data", str(data), *SMALL, "--out", str(model))
    assert code == 0, err
    channels = 3 if colour else 1
    assert f"images of {channels}x12x10" in err
    assert accuracy_of(out, "validation") == 1.0
    clf = anynet.load(model)
    assert clf.data_format_ == {"kind": "images", "shape": [channels, 12, 10]}
    assert clf.classes_.tolist() == ["across", "down"]

    code, out, err = run(capsys, "evaluate", str(model), "--data", str(data))
    assert code == 0, err
    assert "80 labelled samples" in err

    # One image, and a folder of class folders (every image in it, sorted).
    one = data / "down" / "3.png"
    code, out, err = run(capsys, "predict", str(model), str(one), str(data))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{one}: down")
    assert len(lines) == 1 + 80 and lines[1].startswith(f"{data / 'across' / '0.png'}: across")


def test_image_folder_trains_the_cnn(tmp_path, capsys):
    pytest.importorskip("PIL")
    data = write_images(tmp_path / "bars", n=30, colour=True)
    model = tmp_path / "cnn.safetensors"
    argv = ["--epochs", "1", "--batch-size", "16", "--no-augment", "--quiet"]
    code, out, err = run(
        capsys, "train", "--data", str(data), "--model", "cnn", *argv, "--out", str(model)
    )
    assert code == 0, err
    assert "the default CNN" in err and "54 samples of 3x12x10 images (6 more held out" in err
    clf = anynet.load(model)
    assert clf.network == "cnn" and clf.image_shape_ == (3, 12, 10)
    code, out, err = run(capsys, "predict", str(model), str(data / "across" / "0.png"))
    assert code == 0, err
    assert out.split(": ")[1].split()[0] in ("across", "down")


def test_validation_fraction_zero_trains_on_all(tmp_path, capsys):
    X, y = blobs()
    data = tmp_path / "my.npz"
    np.savez(data, X=X, y=y)
    model = tmp_path / "m.safetensors"
    argv = ["train", "--data", str(data), "--validation-fraction", "0", *SMALL]
    code, out, err = run(capsys, *argv, "--out", str(model))
    assert code == 0, err
    assert "on 300 samples of 4 features, backend" in err
    assert "no validation split and no test set to score" in out
    assert "val_accuracy" not in anynet.load(model).history_


# ---- the split --------------------------------------------------------------------------------


def test_the_split_is_stratified_and_seeded():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, held = stratified_split(y, 0.1, seed=3)
    assert np.bincount(y[held]).tolist() == [5, 3, 2]  # each class's share, rounded
    assert np.bincount(y[train]).tolist() == [45, 27, 18]
    assert sorted([*train, *held]) == list(range(100))  # each sample in one part, once
    again, held_again = stratified_split(y, 0.1, seed=3)
    assert held_again.tolist() == held.tolist() and again.tolist() == train.tolist()
    assert stratified_split(y, 0.1, seed=4)[1].tolist() != held.tolist()


def test_the_split_keeps_every_class_on_both_sides():
    y = np.array(["a"] * 2 + ["b"] * 98)
    train, held = stratified_split(y, 0.01, seed=0)
    assert set(y[held]) == {"a", "b"} and set(y[train]) == {"a", "b"}
    with pytest.raises(DataError, match=r"single sample: \['c'\]"):
        stratified_split(np.array(["a", "a", "c"]), 0.5, seed=0)


def test_the_split_is_taken_from_the_training_data_and_seeded(tmp_path, capsys):
    X, y = blobs()
    data = tmp_path / "my.npz"
    np.savez(data, X=X, y=y)
    histories = []
    for seed in ("0", "0", "1"):
        model = tmp_path / f"m{len(histories)}.safetensors"
        code, _, err = run(
            capsys, "train", "--data", str(data), *SMALL, "--seed", seed, "--out", str(model),
            "--validation-fraction", "0.2",
        )  # fmt: skip
        assert code == 0, err
        assert "240 samples of 4 features (60 more held out for validation)" in err
        histories.append(anynet.load(model).history_["val_loss"])
    assert histories[0] == histories[1] != histories[2]


def test_plots_of_own_data(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    data = write_images(tmp_path / "bars", n=20)
    plots = tmp_path / "plots"
    argv = ["train", "--data", str(data), *SMALL, "--plots", str(plots)]
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "m.safetensors"))
    assert code == 0, err
    drawn = ["learning_curves.png", "confusion_matrix.png", "predictions.png", "probabilities.png"]
    assert f"plots: {plots}/ ({', '.join(drawn)})" in out  # 4 validation images: no t-SNE map
    assert sorted(p.name for p in plots.iterdir()) == sorted(drawn)
    assert all((plots / name).stat().st_size > 1000 for name in drawn)
