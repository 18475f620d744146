"""A user's own data for ``train``, ``evaluate`` and ``predict``: ``--data`` a ``.npz`` of ``X``
and ``y``, a CSV table, or a folder of images in one sub-folder per class; the validation split
held out of the training data; and the checks that new data matches what a model was
trained on (its ``data_format_``, kept in the model file).

Every error names the flag (``--data``) or the argument, the file, what was expected and what
came (see :mod:`anynet.datasets.tables` and :mod:`anynet.datasets.image_folder`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anynet.cli.arguments import fraction
from anynet.errors import AnynetError, DataError

#: ``--data``'s help, for train and evaluate.
DATA_HELP = (
    "your own data instead of Fashion-MNIST: a .npz of arrays X and y (and optionally X_test "
    "and y_test, the test set), a .csv table with a header row (labels in --target's column), "
    "or a folder of images with one sub-folder per class (default: Fashion-MNIST)"
)
#: The validation split's default for your own data (Fashion-MNIST's is 0: its test set).
OWN_VALIDATION_FRACTION = 0.1


def add_train_data(group) -> None:
    """``--data``, ``--target`` and ``--validation-fraction`` in ``train``'s ``group``."""
    group.add_argument("--data", type=Path, default=None, metavar="PATH", help=DATA_HELP)
    group.add_argument(
        "--target",
        default=None,
        metavar="COLUMN",
        help="the label column of a --data .csv table (default: its last column)",
    )
    group.add_argument(
        "--validation-fraction",
        type=fraction,
        default=None,
        metavar="F",
        help="hold out this fraction of the training data, stratified by class and drawn by "
        "--seed, for each epoch's validation metrics; the test set is then scored once, at "
        f"the end; default {OWN_VALIDATION_FRACTION} with --data, 0 for Fashion-MNIST, "
        "whose epochs are then scored on its test set (as the README's results)",
    )


@dataclass
class TrainingData:
    """What ``train`` trains on, monitors each epoch and reports at the end."""

    X: np.ndarray
    y: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None  # per-epoch metrics
    test: tuple[np.ndarray, np.ndarray] | None  # the final report
    source: str  # the log's first line: what was read
    data_format: dict[str, Any] | None  # kept in the model file; None for Fashion-MNIST
    monitors_test: bool  # the epochs' validation metrics are the test set's

    def what(self) -> str:
        """``1,200 samples of 4 features (133 more held out for validation)``; Fashion-MNIST's
        ``60,000 images``, as before ``--data``."""
        shape = self.X.shape[1:]
        size = f"{shape[0]} features" if len(shape) == 1 else "x".join(map(str, shape)) + " images"
        size = f"samples of {size}" if self.data_format is not None else "images"
        held = (
            f" ({len(self.validation[0]):,} more held out for validation)"
            if self.validation is not None and not self.monitors_test
            else ""
        )
        return f"{len(self.X):,} {size}{held}"


def data_error(path: Path, exc: Exception, flag: str = "--data") -> AnynetError:
    """A refusal of the data, naming the flag: ``--data my.csv: row 3, column 'a': ...``."""
    message = str(exc).removeprefix(f"{path}: ")  # the path is said once, after the flag
    return AnynetError(f"{flag} {path}: {message}")


def check_train_flags(args: argparse.Namespace) -> None:
    """Refuse flags that do not go with ``--data`` (or its absence), before any work."""
    if args.data is None:
        if args.target is not None:
            raise AnynetError("--target names a column of a --data .csv table; give --data too")
        return
    if args.data_dir is not None or args.no_download:
        given = "--data-dir" if args.data_dir is not None else "--no-download"
        raise AnynetError(
            f"{given} is for Fashion-MNIST, and --data {args.data} is your own data: "
            f"leave out {given}"
        )
    if args.target is not None and _kind(args.data) != "csv":
        raise AnynetError(f"--target names a column of a .csv table; --data {args.data} is not one")


def _kind(path: Path) -> str:
    """What ``path`` is taken for: ``images`` (a folder), ``npz`` or ``csv`` (by suffix)."""
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    if suffix in (".npz", ".csv"):
        return suffix[1:]
    raise AnynetError(
        f"--data {path}: expected a .npz file, a .csv file or a folder of class sub-folders"
        + ("" if path.exists() else " (and it does not exist)")
    )


def read_labelled(path: Path, target: str | None = None) -> dict[str, Any]:
    """``--data``: ``{"X", "y", "test" (``(X_test, y_test)`` or None), "format"}``; X as the
    file gave it (a folder's images as ``(n, channels, height, width)``)."""
    from anynet.datasets.image_folder import read_image_folder
    from anynet.datasets.tables import read_csv, read_npz

    kind = _kind(path)
    try:
        if kind == "npz":
            arrays = read_npz(path)
            X, y = arrays["X"], arrays["y"]
            test = (arrays["X_test"], arrays["y_test"]) if "X_test" in arrays else None
            data_format = {"kind": "npz", "shape": list(X.shape[1:])}
        elif kind == "csv":
            X, y, columns, target = read_csv(path, target=target)
            test = None
            data_format = {"kind": "csv", "columns": columns, "target": target}
        else:
            X, y, _ = read_image_folder(path)
            test = None
            data_format = {"kind": "images", "shape": list(X.shape[1:])}
    except DataError as exc:
        raise data_error(path, exc) from None
    classes = np.unique(y)
    if len(classes) < 2:
        raise AnynetError(
            f"--data {path}: every sample has the label {classes[0].item()!r}; a classifier "
            "needs two or more classes"
        )
    if test is not None:
        unknown = sorted(set(np.unique(test[1]).tolist()) - set(classes.tolist()))
        if unknown:
            raise AnynetError(
                f"--data {path}: y_test has labels {unknown[:10]} that y (the training "
                "labels) lacks: the model could never predict them"
            )
    return {"X": X, "y": y, "test": test, "format": data_format}


def training_data(args: argparse.Namespace, fashion_mnist, first) -> TrainingData:
    """The data ``train`` takes: ``--data``'s (else Fashion-MNIST, from ``fashion_mnist()``),
    its first ``--limit`` samples (``first``), less the ``--validation-fraction`` held out."""
    from anynet.datasets.split import stratified_split

    if args.data is None:
        (X, y, X_test, y_test), source = fashion_mnist()
        test, data_format = (X_test, y_test), None
        share = args.validation_fraction or 0.0
    else:
        read = read_labelled(args.data, args.target)
        X, y, test, data_format = read["X"], read["y"], read["test"], read["format"]
        source = f"data: {args.data} ({_format_words(data_format)})" + (
            ", its X_test and y_test the test set" if test is not None else ""
        )
        share = (
            OWN_VALIDATION_FRACTION
            if args.validation_fraction is None
            else args.validation_fraction
        )
    if args.model == "cnn" and X.ndim < 3:
        raise AnynetError(
            f"--model cnn trains on images, and --data {args.data} holds rows of "
            f"{X.shape[1]} features: give a folder of images, or a .npz whose X is "
            "(samples, height, width) or (samples, channels, height, width)"
        )
    if args.model == "mlp" and X.ndim > 2:  # the MLP takes each image as a row of pixels
        X = X.reshape(len(X), -1)
        test = None if test is None else (test[0].reshape(len(test[0]), -1), test[1])
    if args.limit:
        X, y = first(args.limit, X, y)
    validation = None
    if share > 0:
        try:
            train, held = stratified_split(y, share, args.seed)
        except DataError as exc:
            flag = f"--data {args.data}" if args.data is not None else "the training data"
            raise AnynetError(
                f"--validation-fraction {share}: {flag}: {exc} (or give --validation-fraction 0)"
            ) from None
        X, y, validation = X[train], y[train], (X[held], y[held])
    monitors_test = validation is None and test is not None
    if monitors_test:
        validation = test
    return TrainingData(X, y, validation, test, source, data_format, monitors_test)


def _format_words(data_format: dict[str, Any]) -> str:
    if data_format["kind"] == "csv":
        n, target = len(data_format["columns"]), data_format["target"]
        return f"a table of {n} features, labels in {target!r}"
    shape = data_format["shape"]
    if data_format["kind"] == "npz" and len(shape) == 1:
        return f"arrays of {shape[0]} features"
    shape = "x".join(map(str, shape))
    return f"images of {shape}" if data_format["kind"] == "images" else f"arrays of {shape} images"


def final_line(clf, data: TrainingData, seconds: float, out: Path) -> str:
    """The run's last line: the test accuracy if there is a test set, with the validation
    accuracy of the epochs where they are another set; the model's file."""
    history = clf.history_
    parts = []
    if data.validation is not None and not data.monitors_test:
        val = history["val_accuracy"]
        parts.append(f"validation accuracy {val[-1]:.2%} (best {max(val):.2%})")
    if data.monitors_test:
        test = history["val_accuracy"]
        parts.insert(
            0, f"test accuracy {test[-1]:.2%} after {clf.n_iter_} epochs (best {max(test):.2%})"
        )
    elif data.test is not None:
        parts.insert(0, f"test accuracy {clf.score(*data.test):.2%} after {clf.n_iter_} epochs")
    elif parts:
        parts[0] += f" after {clf.n_iter_} epochs"
    else:
        parts.append(
            f"loss {clf.loss_curve_[-1]:.4f} after {clf.n_iter_} epochs (no validation split "
            "and no test set to score)"
        )
    return f"{', '.join(parts)}, {seconds:.0f} s; model: {out}"


# ---- evaluate and predict: new data held to the model's data format ---------------------------


def model_format(clf) -> dict[str, Any] | None:
    return getattr(clf, "data_format_", None)


def read_for_model(clf, path: Path, flag: str, labels: bool):
    """``(X, y, names)`` from ``path`` for the model ``clf``: samples as the model takes them
    (rows, or images of its shape), their labels (None where the file has none and ``labels``
    is False; an error where it is True), and what to call each sample (``x.csv row 2``,
    ``x.npz[0]``, an image's path). ``flag`` names the argument in errors."""
    from anynet.datasets.image_folder import image_files, read_images
    from anynet.datasets.tables import read_csv, read_npz

    want = model_format(clf)
    kind = _kind_for(path, flag)
    trained = trained_words(clf)
    if kind == "csv" and (want is None or want["kind"] != "csv"):
        raise AnynetError(
            f"{flag} {path}: a CSV table, and the model was trained on {trained}, without "
            "column names to match: give data of that kind"
        )
    if kind in ("images", "image") and (want is None or want["kind"] != "images"):
        raise AnynetError(
            f"{flag} {path}: images, and the model was trained on {trained}: give data of that kind"
        )
    try:
        if kind == "npz":
            arrays = read_npz(path, labels=labels)
            test = "X_test" in arrays and labels
            X, y = (arrays["X_test"], arrays["y_test"]) if test else (arrays["X"], arrays.get("y"))
            _check_sample_shape(clf, path, flag, X.shape[1:])
            names = [f"{path}[{i}]" for i in range(len(X))]
        elif kind == "csv":
            X, y, _, _ = read_csv(path, target=want["target"], columns=want["columns"])
            if labels and y is None:
                raise DataError(f"{path}: has no label column {want['target']!r}; it is needed")
            names = [f"{path} row {r}" for r in range(2, len(X) + 2)]
        elif kind == "images" and labels:
            files, y = _class_folder(path, image_files)
            X = read_images(files, shape=tuple(want["shape"]))
            names = [str(f) for f in files]
        else:
            files = [path] if kind == "image" else _all_images(path, image_files)
            X, y = read_images(files, shape=tuple(want["shape"])), None
            names = [str(f) for f in files]
    except DataError as exc:
        raise data_error(path, exc, flag) from None
    return X, y, names


def _class_folder(path: Path, image_files) -> tuple[list[Path], np.ndarray]:
    """The images of a folder of class sub-folders, and their labels (the folders' names)."""
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{path}: has no sub-folders; expected one sub-folder of images per class, as "
            "at training"
        )
    files, labels = [], []
    for name in classes:
        found = image_files(path / name)
        files += found
        labels += [name] * len(found)
    if not files:
        raise DataError(f"{path}: its class sub-folders hold no .png or .jpg images")
    return files, np.array(labels, dtype=str)


def images_in(folder: Path) -> list[Path]:
    """The images in ``folder`` and in its sub-folders (a class folder's layout), sorted;
    an error naming it if there are none."""
    from anynet.datasets.image_folder import image_files

    try:
        return _all_images(folder, image_files)
    except DataError as exc:
        raise data_error(folder, exc, "INPUT") from None


def _all_images(folder: Path, image_files) -> list[Path]:
    """The images in ``folder`` and in its sub-folders (a class folder's layout), sorted."""
    files = image_files(folder)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files += image_files(sub)
    if not files:
        raise DataError(f"{folder}: holds no .png or .jpg images (nor do its sub-folders)")
    return files


def _kind_for(path: Path, flag: str) -> str:
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        return "image"
    if suffix in (".npz", ".csv"):
        return suffix[1:]
    raise AnynetError(
        f"{flag} {path}: expected a .npz, a .csv, an image or a folder of images"
        + ("" if path.exists() else " (and it does not exist)")
    )


def trained_words(clf) -> str:
    """What ``clf`` was trained on, in words: ``a table of 4 features, labels in 'kind'``."""
    want = model_format(clf)
    if want is None:
        return f"rows of {clf.n_features_in_} features (Fashion-MNIST's 28x28 images, or arrays)"
    return _format_words(want)


def _check_sample_shape(clf, path: Path, flag: str, shape: tuple[int, ...]) -> None:
    want = model_format(clf)
    if want is not None and want["kind"] in ("npz", "images"):
        ok = list(shape) == want["shape"] or (
            want["kind"] == "images" and int(np.prod(shape)) == clf.n_features_in_
        )
        expected = "x".join(map(str, want["shape"]))
    else:
        ok = int(np.prod(shape)) == clf.n_features_in_
        expected = f"{clf.n_features_in_} features"
    if not ok:
        raise AnynetError(
            f"{flag} {path}: samples of shape {'x'.join(map(str, shape))}; the model was "
            f"trained on {expected} ({trained_words(clf)}): give data of that shape"
        )


def as_model_input(clf, X: np.ndarray) -> np.ndarray:
    """Samples as the model takes them: images for a network that takes images, else rows."""
    if getattr(clf, "image_shape_", None) is not None:
        return X.reshape(len(X), *clf.image_shape_)
    return X.reshape(len(X), -1)


def label_codes(clf, path: Path, flag: str, y: np.ndarray) -> np.ndarray:
    """``y`` as positions in the model's classes, matched by their text (a CSV's ``3`` is the
    class 3); an error listing labels the model does not know."""
    lookup = {str(c): i for i, c in enumerate(clf.classes_.tolist())}
    texts = [str(v) for v in y.tolist()]
    unknown = sorted({t for t in texts if t not in lookup})
    if unknown:
        raise AnynetError(
            f"{flag} {path}: labels {unknown[:10]} that the model does not know; its classes "
            f"are {list(lookup)[:20]}"
        )
    return np.array([lookup[t] for t in texts], dtype=np.int64)


def own_scores(clf, path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``evaluate --data``: the true and predicted classes of ``path``'s samples, as positions
    in the model's classes, and the classes' names; the data's source said on stderr."""
    import sys

    X, y, _ = read_for_model(clf, path, "--data", labels=True)
    codes = label_codes(clf, path, "--data", y)
    print(f"data: {path}, {len(X):,} labelled samples", file=sys.stderr)
    proba = clf.predict_proba(as_model_input(clf, X))
    return codes, np.asarray(proba).argmax(axis=1), [str(c) for c in clf.classes_.tolist()]


def write_plots(clf, data: TrainingData, directory: Path) -> list[str]:
    """``train --data --plots``: the learning curves; on the test set (else the validation
    split) the confusion matrix and a t-SNE map, and for gray images a grid of predictions
    and one image's probabilities. Returns the files written."""
    from anynet import metrics, plots

    directory.mkdir(parents=True, exist_ok=True)
    history = {k: v for k, v in clf.history_.items() if k != "epoch_seconds"}
    monitored = "test" if data.monitors_test else "validation"
    plots.plot_learning_curves(history, path=directory / "learning_curves.png", val_label=monitored)
    written = ["learning_curves.png"]
    scored = data.test if data.test is not None else data.validation
    if scored is None:
        return written
    X, y = scored
    names = [str(c) for c in clf.classes_.tolist()]
    codes = np.searchsorted(clf.classes_, y)
    proba = np.asarray(clf.predict_proba(X))
    pred = proba.argmax(axis=1)
    cm = metrics.confusion_matrix(codes, pred, n_classes=len(names))
    plots.plot_confusion_matrix(cm, names, path=directory / "confusion_matrix.png")
    written.append("confusion_matrix.png")
    shape = data.data_format["shape"] if "shape" in data.data_format else None
    gray = shape is not None and (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1))
    if gray:  # the images as they are, not their rows
        images = X.reshape(len(X), *shape[-2:])
        plots.plot_predictions(
            images[:25], codes[:25], pred[:25], names, path=directory / "predictions.png"
        )
        plots.plot_image_probabilities(
            images[0], proba[0], names, true_label=int(codes[0]),
            path=directory / "probabilities.png",
        )  # fmt: skip
        written += ["predictions.png", "probabilities.png"]
    if len(X) >= 5:
        flat = X.reshape(len(X), -1)
        plots.plot_tsne(flat, codes, names, n_samples=2000, path=directory / "tsne.png")
        written.append("tsne.png")
    return written
