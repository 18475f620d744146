"""Data sets: the IDX reader and Fashion-MNIST, found offline, verified, downloaded if need be.

>>> from anynet.datasets import load_fashion_mnist, FASHION_MNIST_CLASSES
>>> X, y = load_fashion_mnist("train")  # doctest: +SKIP

See :func:`load_fashion_mnist` for where the files are looked for, in which order.
"""

from anynet.datasets.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    MIRRORS,
    fashion_mnist_path,
    load_fashion_mnist,
)
from anynet.datasets.idx import read_idx, read_idx_header, read_idx_pair

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "MIRRORS",
    "fashion_mnist_path",
    "load_fashion_mnist",
    "read_idx",
    "read_idx_header",
    "read_idx_pair",
]
