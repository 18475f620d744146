"""A held-out validation split, stratified by class and seeded."""

from __future__ import annotations

import numpy as np

from anynet.errors import DataError

__all__ = ["stratified_split"]


def stratified_split(y, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)`` of the samples with labels ``y``: from each class,
    ``round(fraction * its count)`` samples drawn at random for validation, at least one and
    never all of it, so each class is in both parts in about the proportion it has in ``y``.

    The draw depends on ``seed`` alone (and ``y``): the same arguments give the same split.
    Both index arrays are sorted, keeping the samples' order.

    Raises
    ------
    DataError
        A class with a single sample, which cannot be in both parts.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1); got {fraction!r}")
    y = np.asarray(y)
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        alone = classes[counts < 2].tolist()
        raise DataError(
            f"classes with a single sample: {alone[:10]}; such a sample cannot be both trained "
            "on and held out for validation: add samples of each, or remove them"
        )
    rng = np.random.default_rng(seed)
    held = []
    for k, count in enumerate(counts):
        members = np.flatnonzero(codes == k)
        n_held = min(max(1, round(fraction * count)), count - 1)
        held.append(rng.permutation(members)[:n_held])
    validation = np.sort(np.concatenate(held))
    mask = np.ones(len(y), dtype=bool)
    mask[validation] = False
    return np.flatnonzero(mask), validation
