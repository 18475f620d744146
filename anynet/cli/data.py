"""Fashion-MNIST for ``train`` and ``evaluate``, found as ``--data-dir`` and
``--no-download`` say."""

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
