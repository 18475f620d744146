"""Fashion-MNIST for ``train`` and ``evaluate``, found as ``--data-dir`` and
``--no-download`` say, and what its labels mean to a model's classes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from anynet.cli.messages import in_flags
from anynet.errors import AnynetError


def load_data(
    args: argparse.Namespace, splits: Sequence[str] = ("train", "test")
) -> tuple[list, str]:
    """``[X, y]`` of each split, found as ``--data-dir`` and ``--no-download`` say, and a line
    that says which copy was read (``data: Fashion-MNIST train and test, SHA-256 verified,
    from /usr/share/datasets/fashion-mnist``), for the log of the run."""
    from anynet.datasets import load_fashion_mnist

    folder = args.data_dir
    if folder is not None:
        _check_data_dir(folder, splits, args.no_download)
    out, paths = [], []
    with in_flags():
        for split in splits:
            X, y, read = load_fashion_mnist(
                split, data_dir=folder, download=not args.no_download, return_paths=True
            )
            out += [X, y]
            paths += read
    return out, _source(splits, paths)


def _source(splits: Sequence[str], paths: Sequence[Path]) -> str:
    """Which copy of Fashion-MNIST these files are: their folder, or each file where they
    come from several (a file downloaded into the cache beside others found elsewhere)."""
    what = f"Fashion-MNIST {' and '.join(splits)}, SHA-256 verified"
    folders = list(dict.fromkeys(path.parent for path in paths))
    if len(folders) == 1:
        return f"data: {what}, from {folders[0]}"
    return f"data: {what}, from {', '.join(str(path) for path in paths)}"


def _check_data_dir(folder: Path, splits: Sequence[str], no_download: bool) -> None:
    """Refuse a ``--data-dir`` that is not a folder, saying what it is, and a Fashion-MNIST file
    in it that is not a regular file: the loader would pass it over as missing (and download
    a copy over it)."""
    from anynet.datasets import FASHION_MNIST_FILES

    kind = _kind(folder)
    if kind == "missing" and no_download:
        # Without --no-download the data is downloaded into it: a new folder is fine then.
        raise AnynetError(f"--data-dir {folder} does not exist (and --no-download is given)")
    if kind not in ("missing", "a folder"):
        raise AnynetError(
            f"--data-dir {folder} is {kind}, not a folder; expected the folder holding "
            "Fashion-MNIST's files (or, without --no-download, one to download them into)"
        )
    if kind == "missing":
        return
    prefixes = tuple({"train": "train-", "test": "t10k-"}[split] for split in splits)
    for name in FASHION_MNIST_FILES:
        for path in (folder / f"{name}.gz", folder / name):
            kind = _kind(path)
            if name.startswith(prefixes) and kind not in ("missing", "a file"):
                raise AnynetError(
                    f"--data-dir {folder}: {path.name} in it is {kind}, not a regular file; "
                    "expected Fashion-MNIST's file of that name (or nothing, to have it "
                    "downloaded there): remove it, or give another --data-dir"
                )


def _kind(path: Path) -> str:
    """What ``path`` is, in words: ``"a folder"``, ``"a file"`` (regular), ``"missing"``, ``"a
    FIFO"``, ``"a symlink to X, which does not exist"``..."""
    import os
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"a symlink to {os.readlink(path)}, which does not exist"
        return "missing"
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def integer_labels(classes) -> list[int] | None:
    """A model's ``classes_`` as Python ints when each is a whole number (an integer, or a
    float such as ``3.0``) from 0 to 9, one of Fashion-MNIST's labels; else None (strings,
    booleans, ``10``, ``2.5``...)."""
    import numpy as np

    classes = np.asarray(classes)
    if classes.dtype.kind not in "iuf" or classes.ndim != 1:
        return None
    if not np.all(np.isfinite(classes)) or not np.all(classes == np.round(classes)):
        return None
    labels = [int(c) for c in classes]
    return labels if all(0 <= c <= 9 for c in labels) else None


def class_names(classes) -> list[str]:
    """What ``predict`` calls each of a model's classes: Fashion-MNIST's names when its classes
    are exactly Fashion-MNIST's labels, 0 to 9; else the labels themselves (a model trained in
    Python on labels 1 to 10, or on words, names its own classes)."""
    from anynet.datasets import FASHION_MNIST_CLASSES as NAMES

    if integer_labels(classes) == list(range(len(NAMES))):
        return list(NAMES)
    return [str(c) for c in classes]


def load_classifier(path: Path, backend: str | None):
    """The classifier in the model file at ``path`` (the ``MODEL`` argument); a regressor's
    file is refused by name: ``evaluate`` and ``predict`` report classes."""
    import anynet

    model = anynet.load(path, backend=backend)
    if not isinstance(model, anynet.NNClassifier):
        raise AnynetError(
            f"{path} holds an {type(model).__name__}, not a classifier: anynet evaluate and "
            "predict report classes. Use it from Python: anynet.load(path).predict(X), "
            ".score(X, y)"
        )
    return model
