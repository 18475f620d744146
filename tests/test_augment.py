"""Augmentation on the device: RandomCropFlip (the ``backend`` fixture)."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

from anynet.data import RandomCropFlip

N = 70


def images(n: int = N, shape: tuple[int, ...] = (2, 5, 6), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(n, *shape), dtype=np.uint8)


def reference(X: np.ndarray, padding: int, draws: np.ndarray) -> np.ndarray:
    """The augmentation written the plain way, one image at a time: pad, slice, mirror."""
    H, W = X.shape[-2:]
    pad = [(0, 0)] * (X.ndim - 2) + [(padding, padding)] * 2
    out = np.empty_like(X)
    for k, (top, left, flip) in enumerate(draws):
        crop = np.pad(X[k], pad[1:])[..., top : top + H, left : left + W]
        out[k] = crop[..., ::-1] if flip else crop
    return out


def host(backend, x) -> np.ndarray:
    return backend.to_numpy(x)


# --- RandomCropFlip on a batch ------------------------------------------------------------------


def test_a_hand_computed_shift_lets_zeros_in_at_the_edges():
    X = np.arange(1, 10, dtype=np.uint8).reshape(1, 1, 3, 3)
    shift = RandomCropFlip(padding=1, flip=False)
    # top 0, left 2: the window starts one row above the image and one column right of it,
    # so the image moves down by one and left by one.
    got = shift.apply(X, np.array([[0, 2, 0]]))
    np.testing.assert_array_equal(got[0, 0], [[0, 0, 0], [2, 3, 0], [5, 6, 0]])
    # top 2, left 0: up by one, right by one.
    got = shift.apply(X, np.array([[2, 0, 0]]))
    np.testing.assert_array_equal(got[0, 0], [[0, 4, 5], [0, 7, 8], [0, 0, 0]])
    # padding, padding: no shift; with the flip bit, a mirror image.
    np.testing.assert_array_equal(shift.apply(X, np.array([[1, 1, 0]])), X)
    got = shift.apply(X, np.array([[1, 1, 1]]))
    np.testing.assert_array_equal(got[0, 0], [[3, 2, 1], [6, 5, 4], [9, 8, 7]])


def test_flips_mirror_along_the_width_only():
    X = images(6)
    draws = np.array([[0, 0, f] for f in (1, 0, 1, 1, 0, 0)])
    got = RandomCropFlip(padding=0).apply(X, draws)
    for k, flipped in enumerate(draws[:, 2]):
        np.testing.assert_array_equal(got[k], X[k, :, :, ::-1] if flipped else X[k])


@pytest.mark.parametrize("shape", [(1, 6, 5), (3, 4, 4), (7, 3)], ids=["C1", "C3", "NHW"])
@pytest.mark.parametrize(("padding", "flip"), [(1, True), (3, False), (0, True), (8, True)])
def test_every_image_is_a_shifted_copy_of_itself(backend, shape, padding, flip):
    X = images(20, shape)
    augment = RandomCropFlip(padding, flip)
    draws = augment.draw(20, seed=1, epoch=2, batch=3)
    got = augment.apply(backend.asarray(X), backend.asarray(draws))
    assert array_api_compat.device(got) == backend.device
    assert got.dtype == backend.xp.uint8 and tuple(got.shape) == X.shape
    np.testing.assert_array_equal(host(backend, got), reference(X, padding, draws))


def test_the_draws_stay_in_range_and_flip_about_half():
    draws = RandomCropFlip(padding=3).draw(4000, seed=0, epoch=0, batch=0)
    assert draws.dtype == np.int64 and draws.shape == (4000, 3)
    assert draws[:, :2].min() == 0 and draws[:, :2].max() == 6
    assert set(np.unique(draws[:, 2])) == {0, 1} and 0.45 < draws[:, 2].mean() < 0.55
    assert not RandomCropFlip(padding=3, flip=False).draw(100, seed=0, epoch=0, batch=0)[:, 2].any()


def test_same_seed_epoch_and_batch_same_batch_any_other_differs():
    X, augment = images(), RandomCropFlip(padding=2)
    first = augment(X, seed=5, epoch=1, batch=2)
    np.testing.assert_array_equal(augment(X, seed=5, epoch=1, batch=2), first)
    for other in ({"seed": 6, "epoch": 1, "batch": 2}, {"seed": 5, "epoch": 2, "batch": 2},
                  {"seed": 5, "epoch": 1, "batch": 3}):  # fmt: skip
        assert not np.array_equal(augment(X, **other), first)


def test_the_same_batch_on_every_backend(backend):
    """The draws come from the host: every backend augments alike, float batches too."""
    X = images().astype(np.float32) / 255
    augment = RandomCropFlip(padding=2)
    want = augment(X, seed=3, epoch=4, batch=5)
    got = augment(backend.asarray(X), seed=3, epoch=4, batch=5)
    assert array_api_compat.device(got) == backend.device
    np.testing.assert_array_equal(host(backend, got), want)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"padding": -1}, "padding must be an integer >= 0; got -1"),
        ({"padding": 1.5}, "padding must be an integer >= 0; got 1.5"),
        ({"padding": True}, "padding must be an integer >= 0; got True"),
        ({"flip": "yes"}, "flip must be True or False; got 'yes'"),
        ({"padding": 0, "flip": False}, "padding must be at least 1 when flip=False.*augment=None"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomCropFlip(**kwargs)


def test_bad_batches_and_keys_are_named():
    augment = RandomCropFlip()
    with pytest.raises(ValueError, match=r"X must be a batch of images .* shape \(4, 784\)"):
        augment(np.zeros((4, 784), dtype=np.uint8), seed=0, epoch=0, batch=0)
    with pytest.raises(ValueError, match=r"draws must be of shape \(4, 3\)"):
        augment.apply(np.zeros((4, 5, 5)), np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="epoch must be an integer >= 0; got -1"):
        augment.draw(3, seed=0, epoch=-1, batch=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0; got None"):
        augment.draw(3, seed=None, epoch=0, batch=0)
    assert repr(augment) == "RandomCropFlip(padding=2, flip=True)"
