"""The DataLoader's arguments: what each may be, and the check that says so.

Each check takes what it needs explicitly and returns the value in the form the loader keeps;
each error names the argument, what came, and what to do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anynet.backends import Backend, host_dtype
from anynet.checks import check_choice, check_flag, check_int, fail
from anynet.data.augment import RandomCropFlip
from anynet.data.standardizer import Standardizer
from anynet.errors import DataError

__all__ = [
    "NORMALIZATIONS",
    "check_X",
    "check_augment",
    "check_batch_size",
    "check_budget",
    "check_dtype",
    "check_normalize",
    "check_pin_memory",
    "check_sample_weight",
    "check_seed",
    "check_standardizer",
    "check_values",
    "check_y",
]

#: The values ``DataLoader(normalize=...)`` takes, and what each does to a pixel ``x``.
NORMALIZATIONS = {
    "unit": "x / 255, in [0, 1]",
    "standardize": "(x - mean) / std per feature, statistics from the training set",
    "symmetric": "(x / 255 - 0.5) / 0.5, in [-1, 1] (torchvision's Normalize((0.5,), (0.5,)))",
    None: "no scaling: the stored values cast to the batch dtype",
}


def check_X(X: Any) -> np.ndarray:
    """``X`` as a host array of at least one sample, uint8 or finite floats."""
    try:
        X = np.asarray(X)
    except Exception as exc:
        raise DataError(
            f"X must be a host array (NumPy or anything NumPy accepts); got "
            f"{type(X).__name__}, which NumPy cannot read ({exc}). Move it to the host "
            "first (e.g. backend.to_numpy(X))."
        ) from None
    if X.ndim < 2:
        raise DataError(
            f"X must have samples along axis 0 and features after it (ndim >= 2); got "
            f"shape {X.shape}. Reshape a single feature column with X.reshape(-1, 1)."
        )
    if X.shape[0] == 0:
        raise DataError(f"X holds no samples (shape {X.shape}); a loader needs at least one")
    if X.dtype != np.uint8 and X.dtype.kind != "f":
        raise DataError(
            f"X must be uint8 pixels (0-255) or floating point; got dtype {X.dtype}. "
            "Cast it, e.g. X.astype('uint8') for pixel values or X.astype('float32')."
        )
    if X.dtype.kind == "f" and not np.all(np.isfinite(X)):
        raise DataError("X holds NaN or infinite values; clean them before loading")
    return X


def check_batch_size(batch_size: Any, n_samples: int, drop_last: bool) -> int:
    """A batch size of at least 1 that leaves an epoch some batches."""
    value = check_int("batch_size", batch_size, minimum=1, hint="Use e.g. 64")
    if drop_last and value > n_samples:
        raise ValueError(
            f"batch_size={value} exceeds the {n_samples} samples and drop_last=True: "
            "every epoch would be empty. Lower batch_size or set drop_last=False."
        )
    return value


def check_y(y: Any, n_samples: int, num_classes: int | None) -> tuple[np.ndarray, int]:
    """The labels as int64, and the number of classes (``num_classes`` or max + 1)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(
            f"y must be a 1-D array of class labels; got shape {y.shape}. (One-hot labels? "
            "Pass y.argmax(axis=1).)"
        )
    if y.shape[0] != n_samples:
        raise DataError(
            f"X and y have different lengths: X has {n_samples} samples, y has "
            f"{y.shape[0]} labels; pass the labels that belong to X"
        )
    if y.dtype.kind not in "iu":
        raise DataError(
            f"y must hold integer class labels; got dtype {y.dtype}. If they are whole "
            "numbers, cast them with y.astype('int64')."
        )
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, minimum=1)
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise DataError(
            f"y holds the label {low}; class labels must be 0 or more (0 to n_classes - 1)"
        )
    if num_classes is not None and high >= num_classes:
        raise DataError(
            f"y holds the label {high}, out of range for num_classes={num_classes} (labels "
            f"0 to {num_classes - 1}); raise num_classes or fix the labels"
        )
    n_classes = int(num_classes) if num_classes is not None else high + 1
    return y.astype(np.int64, copy=False), n_classes


def check_values(y: Any, n_samples: int, host: np.dtype) -> np.ndarray:
    """Regression targets as ``host`` floats: shape (N,) or (N, n_outputs), all finite."""
    try:
        y = np.asarray(y, dtype=host)
    except (TypeError, ValueError):
        raise DataError(
            "y must hold numbers (targets='values': one value per sample, or a row per "
            f"sample); got values that are not numbers ({type(y).__name__})"
        ) from None
    if y.ndim not in (1, 2) or y.shape[0] != n_samples:
        raise DataError(
            f"y must be of shape ({n_samples},) or ({n_samples}, n_outputs): one target (or "
            f"row of targets) per sample of X; got shape {y.shape}"
        )
    if not np.all(np.isfinite(y)):
        at = int(np.flatnonzero(~np.isfinite(y).reshape(n_samples, -1).all(axis=1))[0])
        raise DataError(
            f"y holds a NaN or infinite target at sample {at} (or beyond the range of the "
            "batch dtype); drop or fix those samples"
        )
    return y


def check_dtype(dtype: Any, backend: Backend) -> tuple[Any, np.dtype]:
    """The batch dtype as ``backend.xp``'s, and as NumPy's."""
    try:
        value = backend.dtype(dtype)
        floating = backend.xp.isdtype(value, "real floating")
    except Exception:
        floating = False
    if not floating:
        raise ValueError(
            f"dtype must be a real floating dtype such as 'float32' or 'float64'; got {dtype!r}"
        )
    return value, host_dtype(value)


def check_normalize(normalize: Any, X: np.ndarray) -> str | None:
    """One of :data:`NORMALIZATIONS`, and one that fits X's dtype."""
    check_choice("normalize", normalize, NORMALIZATIONS)
    if normalize in ("unit", "symmetric") and X.dtype != np.uint8:
        raise DataError(
            f"normalize={normalize!r} divides by 255 and needs uint8 pixels, but X is "
            f"{X.dtype}. Pass normalize='standardize' or None for data already scaled."
        )
    return normalize


def check_seed(seed: Any) -> int:
    """The shuffle seed: the one given, or one drawn from the OS."""
    if seed is None:
        # Drawn once, so that set_epoch still reproduces this loader's own epochs.
        return int(np.random.SeedSequence().generate_state(1)[0])
    return check_int("seed", seed, minimum=0, hint="Or pass None for a seed drawn once.")


def check_standardizer(
    standardizer: Any, normalize: str | None, X: np.ndarray
) -> Standardizer | None:
    """The statistics to standardize with: the ones given, else fitted on ``X``; ``None``
    unless ``normalize='standardize'``."""
    if standardizer is not None and normalize != "standardize":
        raise ValueError(
            f"standardizer is used only with normalize='standardize'; got normalize={normalize!r}"
        )
    if normalize != "standardize":
        return None
    if standardizer is None:
        return Standardizer.fit(X)
    if not isinstance(standardizer, Standardizer):
        raise TypeError(
            f"standardizer must be a Standardizer (e.g. train_loader.standardizer); got "
            f"{type(standardizer).__name__}"
        )
    if standardizer.mean.shape not in (X.shape[1:], (int(np.prod(X.shape[1:])),)):
        raise DataError(
            f"the standardizer was fitted on samples of shape {standardizer.mean.shape}, "
            f"but X's samples have shape {X.shape[1:]}"
        )
    return standardizer


def check_augment(augment: Any, X: np.ndarray) -> RandomCropFlip | None:
    """An augmentation (anything with ``draw`` and ``apply``), and X images it can act on."""
    if augment is None:
        return None
    if not (callable(getattr(augment, "draw", None)) and callable(getattr(augment, "apply", None))):
        raise fail("augment", "a RandomCropFlip or None", augment)
    if X.ndim not in (3, 4):
        raise DataError(
            f"augment crops and flips images, so X must have shape (N, H, W) or "
            f"(N, C, H, W); got {X.shape}. Reshape rows of pixels to images first, e.g. "
            "X.reshape(-1, 1, 28, 28); flatten=True still gives flat batches."
        )
    return augment


def check_budget(max_device_bytes: Any, backend: Backend) -> int | None:
    """The device memory the data set may take: by default half the free memory of a GPU,
    and no limit on the CPU (host memory is the data's home)."""
    if max_device_bytes is None:
        free = backend.free_device_memory()
        return None if free is None else free // 2
    return check_int("max_device_bytes", max_device_bytes, minimum=1)


def check_pin_memory(pin_memory: Any, streaming: bool, backend: Backend) -> bool:
    """Whether to stream through pinned memory: by default where the backend can."""
    if pin_memory is None:
        return streaming and backend.pinned_streaming
    pin = check_flag("pin_memory", pin_memory)
    if pin and not backend.pinned_streaming:
        raise ValueError(
            f"pin_memory=True needs the 'cupy' backend; this loader runs on "
            f"{backend.spec!r}. Leave pin_memory=None."
        )
    return pin and streaming


def check_shard(shard: Any) -> tuple[int, int] | None:
    """``(rank, size)``: this process's part of every batch in a data-parallel run, or None."""
    if shard is None:
        return None
    expected = "None or a pair (rank, size) of integers with 0 <= rank < size"
    hint = "In a data-parallel run pass (communicator.rank, communicator.size)"
    if not isinstance(shard, tuple | list) or len(shard) != 2:
        raise fail("shard", expected, shard, hint)
    size = check_int("shard's size", shard[1], minimum=1, hint=hint)
    rank = check_int("shard's rank", shard[0], minimum=0, maximum=size - 1, hint=hint)
    return rank, size


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """One finite, non-negative weight per sample, as float64, not all zero; or None."""
    if sample_weight is None:
        return None
    what = f"an array of {n_samples} finite weights >= 0, one per sample, not all 0"
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"sample_weight must be {what}; got values that are not numbers "
            f"({type(sample_weight).__name__}). Pass numbers, e.g. np.ones(n_samples)."
        ) from None
    if w.ndim == 0:  # a scalar weighs every sample alike, as in scikit-learn
        w = np.full(n_samples, float(w))
    if w.shape != (n_samples,):
        raise DataError(
            f"sample_weight must be {what}; got shape {w.shape}. Pass the weights of X's "
            "samples, in X's order."
        )
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        raise DataError(
            f"sample_weight must be {what}; got {float(w[bad[0]])!r} at position {int(bad[0])} "
            f"({len(bad)} such). Weights are counts or importances: give those samples 0 to "
            "leave them out."
        )
    if not w.any():
        raise DataError(
            f"sample_weight must be {what}; every weight is zero, so no sample would count. "
            "Give some samples a positive weight."
        )
    return w
