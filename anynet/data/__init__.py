"""Feeding data to the engine: a loader that keeps the data set on the backend's device.

>>> from anynet.data import DataLoader
>>> from anynet.datasets import load_fashion_mnist
>>> X, y = load_fashion_mnist("train")  # doctest: +SKIP
>>> loader = DataLoader(X, y, batch_size=256, seed=0)  # doctest: +SKIP
>>> for X_batch, y_batch in loader: ...  # doctest: +SKIP

Training batches can be augmented on the device, with random numbers named by
``(seed, epoch, batch)``, so that a resumed run sees the batches an uninterrupted one saw:

>>> from anynet.data import RandomCropFlip
>>> augment = RandomCropFlip(padding=2, flip=True)
>>> loader = DataLoader(X, y, 256, seed=0, flatten=False, augment=augment)  # doctest: +SKIP

The readers of data files live in :mod:`anynet.datasets`.
"""

from anynet.data.augment import RandomCropFlip
from anynet.data.loader import NORMALIZATIONS, DataLoader
from anynet.data.standardizer import Standardizer

__all__ = ["NORMALIZATIONS", "DataLoader", "RandomCropFlip", "Standardizer"]
