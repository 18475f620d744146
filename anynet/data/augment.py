"""Data augmentation on the device: random crops of a zero-padded image, and horizontal flips.

The random numbers are drawn on the host, from a generator named by ``(seed, epoch, batch)``,
and only those few numbers (three per image) go to the device, where the images are cropped
and flipped by one ``xp.take``. So every backend sees the same augmentation for the same
``(seed, epoch, batch)``, and a run resumed at epoch e, batch b draws what an uninterrupted one
drew there: no generator state to save.

>>> import numpy as np
>>> from anynet.data import RandomCropFlip
>>> augment = RandomCropFlip(padding=2)
>>> X = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
>>> augment(X, seed=0, epoch=0, batch=0).shape
(2, 1, 4, 4)
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device_of

from anynet.checks import check_flag, check_int, fail

__all__ = ["AUGMENT_STREAM", "RandomCropFlip"]

#: The last word of the seed sequence's spawn key ``(epoch, batch, AUGMENT_STREAM)``: the
#: training loop's dropout masks use ``(epoch, batch, 1)``, and the two must not share draws.
AUGMENT_STREAM = 2


class RandomCropFlip:
    """Pad each image with zeros, crop a random window of its own size, and flip it at random.

    The crop and the flip of torchvision's ``RandomCrop(size, padding)`` followed by
    ``RandomHorizontalFlip(0.5)``, for a whole batch at once and on the batch's device:
    each image is shifted by up to ``padding`` pixels in each direction, zeros entering at the
    edges, and mirrored left to right with probability one half.

    Parameters
    ----------
    padding : int
        Pixels of zeros added on every side before the crop (0: no shift). Fashion-MNIST's
        28 x 28 images are usually padded by 2 to 4.
    flip : bool
        Mirror each image along its width with probability 0.5. Right for clothes and most
        photographs; wrong where left and right differ in meaning (digits, text).

    Notes
    -----
    The images are the last two axes: a batch of shape (N, H, W) or (N, C, H, W), every
    channel of an image shifted and flipped alike. The draws of a batch are a pure function of
    ``(seed, epoch, batch)`` (see :meth:`draw`), so the same arguments give the same result on
    NumPy, CuPy, PyTorch and array-api-strict.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], dtype=np.uint8)
    >>> flip_only = RandomCropFlip(padding=0, flip=True)
    >>> flip_only.apply(X, np.array([[0, 0, 1]]))  # the draws: top, left, flip
    array([[[3, 2, 1],
            [6, 5, 4],
            [9, 8, 7]]], dtype=uint8)
    >>> RandomCropFlip(padding=1, flip=False).apply(X, np.array([[0, 2, 0]]))  # down, left
    array([[[0, 0, 0],
            [2, 3, 0],
            [5, 6, 0]]], dtype=uint8)
    """

    def __init__(self, padding: int = 2, flip: bool = True):
        self.padding = check_int(
            "padding", padding, minimum=0, hint="It is the pixels of zeros added on each side"
        )
        self.flip = check_flag("flip", flip)
        if self.padding == 0 and not self.flip:
            raise fail(
                "padding",
                "at least 1 when flip=False",
                padding,
                "With neither a shift nor a flip every image stays as it is: pass augment=None",
            )

    def draw(self, n: int, *, seed: int, epoch: int, batch: int) -> np.ndarray:
        """The random numbers of batch ``batch`` of epoch ``epoch``, on the host.

        Returns an int64 array of shape (n, 3): per image the top and left corner of the crop
        in the padded image (0 to ``2 * padding``; ``padding`` is no shift, 0 moves the image
        down or right by ``padding``) and the flip (0 or 1). A pure function of its arguments.
        """
        n = check_int("n", n, minimum=0)
        seed, epoch, batch = (
            check_int(name, value, minimum=0)
            for name, value in (("seed", seed), ("epoch", epoch), ("batch", batch))
        )
        key = np.random.SeedSequence(seed, spawn_key=(epoch, batch, AUGMENT_STREAM))
        rng = np.random.default_rng(key)
        draws = np.zeros((n, 3), dtype=np.int64)
        draws[:, :2] = rng.integers(0, 2 * self.padding + 1, size=(n, 2))
        if self.flip:
            draws[:, 2] = rng.integers(0, 2, size=n)
        return draws

    def apply(self, X: Any, draws: Any) -> Any:
        """Crop and flip the images ``X`` as ``draws`` (from :meth:`draw`, on X's device) say.

        ``X`` has shape (N, H, W) or (N, C, H, W), of any dtype; the result has its shape,
        dtype and device and is a new array.
        """
        xp = array_namespace(X)
        if X.ndim not in (3, 4):
            raise fail(
                "X",
                "a batch of images of shape (N, H, W) or (N, C, H, W)",
                f"an array of shape {tuple(X.shape)}",
                "Reshape flat rows to images first, e.g. X.reshape(-1, 1, 28, 28)",
            )
        n, H, W = X.shape[0], X.shape[-2], X.shape[-1]
        if tuple(draws.shape) != (n, 3):
            raise fail("draws", f"of shape ({n}, 3) for {n} images", tuple(draws.shape))
        C = prod(X.shape[1:-2])  # 1 for (N, H, W)
        planes, p, dev = n * C, self.padding, device_of(X)
        images = xp.reshape(X, (planes, H, W))
        if p:
            # Zeros by concatenation: the standard has no pad (array-api-extra's is an extra).
            rows = xp.zeros((planes, p, W), dtype=X.dtype, device=dev)
            images = xp.concat((rows, images, rows), axis=1)
            cols = xp.zeros((planes, H + 2 * p, p), dtype=X.dtype, device=dev)
            images = xp.concat((cols, images, cols), axis=2)
        Hp, Wp = H + 2 * p, W + 2 * p
        top, left, flip = (xp.astype(draws[:, k : k + 1], xp.int64, copy=False) for k in range(3))
        i = xp.arange(H, dtype=xp.int64, device=dev)
        j = xp.arange(W, dtype=xp.int64, device=dev)
        # Per image: output row r is row top + r of the padded image; output column c is
        # column left + c, or left + (W - 1 - c) when flipped.
        rows_at = (top + i) * Wp  # (n, H)
        cols_at = left + j + flip * (W - 1 - 2 * j)  # (n, W)
        planes_at = xp.arange(planes, dtype=xp.int64, device=dev) * (Hp * Wp)
        index = (
            xp.reshape(planes_at, (n, C, 1, 1))
            + xp.reshape(rows_at, (n, 1, H, 1))
            + xp.reshape(cols_at, (n, 1, 1, W))
        )
        out = xp.take(xp.reshape(images, (-1,)), xp.reshape(index, (-1,)), axis=0)
        return xp.reshape(out, X.shape)

    def __call__(self, X: Any, *, seed: int, epoch: int, batch: int) -> Any:
        """Augment batch ``batch`` of epoch ``epoch``: :meth:`draw` on the host, then
        :meth:`apply` on X's device."""
        xp = array_namespace(X)
        host = self.draw(X.shape[0], seed=seed, epoch=epoch, batch=batch)
        return self.apply(X, xp.asarray(host, device=device_of(X)))

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"
