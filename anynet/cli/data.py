"""Fashion-MNIST for ``train`` and ``evaluate``, found as ``--data-dir`` and
``--no-download`` say, and what its labels mean to a model's classes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from anynet.cli.messages import in_flags
from anynet.errors import AnynetError


def load_data(args: argparse.Namespace, splits: Sequence[str] = ("train", "test")) -> list:
    """``X, y`` of each split, found as ``--data-dir`` and ``--no-download`` say."""
    from anynet.datasets import load_fashion_mnist

    folder = args.data_dir
    if folder is not None and folder.exists() and not folder.is_dir():
        raise AnynetError(f"--data-dir {folder} is a file, not a folder")
    if folder is not None and not folder.exists() and args.no_download:
        # Without --no-download the data is downloaded into it: a new folder is fine then.
        raise AnynetError(f"--data-dir {folder} does not exist (and --no-download is given)")
    out = []
    with in_flags():
        for split in splits:
            out += load_fashion_mnist(split, data_dir=folder, download=not args.no_download)
    return out


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
