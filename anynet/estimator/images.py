"""Images in, for networks that take them: the shape an estimator's network takes, found from
its ``image_shape`` or from ``X``, and held to at predict.

scikit-learn's estimators take ``X`` as rows, and anynet's validate it as rows (``n_features_in_``
counts pixels); a network other than the MLP gets each row back as the image it was, so a
convolution sees ``(channels, height, width)``. Kept apart from the classifier so that every
anynet estimator takes images the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from anynet.checks import fail
from anynet.errors import DataError

__all__ = ["ImageInputs"]


class ImageInputs:
    """Mixin of an estimator with ``network`` and ``image_shape``: the fitted ``image_shape_``
    (``None`` for flat rows), and ``X`` shaped for the network."""

    @staticmethod
    def _sample_shape(X: Any) -> tuple[int, ...] | None:
        """The shape of one sample of ``X`` if it is more than a row (images), else ``None``."""
        shape = getattr(X, "shape", None)
        if shape is None:  # nested lists; anything else without a shape is left to validation
            shape = np.shape(X) if isinstance(X, list | tuple) else ()
        return tuple(int(n) for n in shape[1:]) if len(shape) > 2 else None

    def _fit_image_shape(self, sample: tuple[int, ...] | None, n_features: int) -> Any:
        """The ``(channels, height, width)`` the network takes, from ``image_shape`` or the
        shape of one sample of ``X`` (``sample``); ``None`` for flat rows."""
        if self.network is None:
            return None
        if self.image_shape is not None:
            shape = tuple(int(v) for v in self.image_shape)
        elif sample is not None and len(sample) in (2, 3):
            shape = (1, *sample) if len(sample) == 2 else tuple(sample)
        elif sample is not None:
            raise DataError(
                f"X has samples of shape {sample}; images are (height, width) or (channels, "
                "height, width)"
            )
        elif self.network == "cnn":
            raise DataError(
                f"network='cnn' trains on images, and X has flat rows of {n_features} features: "
                "pass X as (n, height, width) or (n, channels, height, width), or pass "
                "image_shape=(channels, height, width)"
            )
        else:
            return None
        if math.prod(shape) != n_features:
            raise fail(
                "image_shape",
                f"a shape of {n_features} values, the features of X",
                self.image_shape,
            )
        return shape

    def _check_image_shape(self, sample: tuple[int, ...] | None) -> None:
        """Refuse images shaped otherwise than those the model was fitted on (the same number
        of pixels differently arranged would be silently rearranged)."""
        want = getattr(self, "image_shape_", None)
        if want is None or sample is None:
            return
        if tuple(sample) not in (want, want[1:] if want[0] == 1 else want):
            raise DataError(
                f"X has images of shape {tuple(sample)}; this model was fitted on images of "
                f"shape {want} (channels, height, width)"
            )

    def _shaped(self, X: np.ndarray) -> np.ndarray:
        """Rows of ``X`` as the network takes them: images of ``image_shape_`` or flat."""
        shape = getattr(self, "image_shape_", None)
        return X if shape is None else X.reshape(len(X), *shape)

    @property
    def _eval_batch(self) -> int:
        """Samples per batch to predict or validate: fewer for images, whose convolutions hold
        a copy of each batch per kernel offset (4,096 28x28 images took a gigabyte)."""
        return 4096 if getattr(self, "image_shape_", None) is None else 500
