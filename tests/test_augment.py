"""Augmentation on the device: RandomCropFlip alone, and in the loader (the ``backend`` fixture)."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import anynet
from anynet import nn
from anynet.data import DataLoader, RandomCropFlip
from anynet.errors import DataError

N, B = 70, 16


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


# --- in the loader ------------------------------------------------------------------------------


def loader_batches(loader: DataLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    be = loader.backend
    return [(be.to_numpy(xb), be.to_numpy(yb)) for xb, yb in loader]


def same(a, b) -> bool:
    pairs = list(zip(a, b, strict=True))
    return all(np.array_equal(xa, xb) and np.array_equal(ya, yb) for (xa, ya), (xb, yb) in pairs)


@pytest.mark.parametrize("streaming", [False, True])
def test_each_training_batch_is_the_stored_batch_augmented(backend, streaming):
    X, y = images(), np.arange(N) % 10
    augment = RandomCropFlip(padding=2)
    budget = {"max_device_bytes": 2 * B * (60 + 8)} if streaming else {}
    kw = dict(backend=backend, seed=4, flatten=False, normalize=None, **budget)
    plain = DataLoader(X, y, B, **kw)
    augmented = DataLoader(X, y, B, augment=augment, **kw)
    assert augmented.streaming == streaming
    for epoch in range(2):
        got, stored = loader_batches(augmented), loader_batches(plain)
        assert not same(got, stored)
        for b, ((xa, ya), (xs, ys)) in enumerate(zip(got, stored, strict=True)):
            draws = augment.draw(len(xs), seed=4, epoch=epoch, batch=b)
            np.testing.assert_array_equal(xa, reference(xs, 2, draws).astype(np.float32))
            np.testing.assert_array_equal(ya, ys)  # labels follow their images


def test_augmentation_comes_before_the_normalization():
    """Padding is black pixels: -1 after the symmetric scaling, as torchvision's order gives."""
    X, y = images(4, (1, 3, 3)), np.zeros(4, dtype=np.int64)
    aug = RandomCropFlip(padding=3, flip=False)
    loader = DataLoader(X, y, 4, backend="numpy", seed=0, normalize="symmetric", augment=aug)
    xb, _ = next(iter(loader))
    draws = aug.draw(4, seed=0, epoch=0, batch=0)
    order = loader.order(0)
    want = (reference(X[order], 3, draws).reshape(4, 9) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(xb, want, rtol=1e-6)
    assert (xb == -1).any()


def test_flat_batches_of_augmented_images():
    X, y = images(), np.arange(N) % 10
    aug = RandomCropFlip(padding=1)
    flat = DataLoader(X, y, B, backend="numpy", seed=2, augment=aug, normalize=None)
    shaped = DataLoader(
        X, y, B, backend="numpy", seed=2, augment=aug, normalize=None, flatten=False
    )
    for (xf, _), (xs, _) in zip(loader_batches(flat), loader_batches(shaped), strict=True):
        assert xf.shape == (len(xs), 60)
        np.testing.assert_array_equal(xf, xs.reshape(len(xs), 60))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("streaming", [False, True])
def test_an_epoch_started_at_batch_k_sees_the_batches_of_a_whole_one(backend, shuffle, streaming):
    X, y = images(), np.arange(N) % 10
    budget = {"max_device_bytes": 2 * B * (60 + 8)} if streaming else {}
    kw = dict(backend=backend, seed=8, shuffle=shuffle, augment=RandomCropFlip(2), **budget)
    whole = DataLoader(X, y, B, **kw)
    epochs = [loader_batches(whole) for _ in range(3)]
    for k in range(len(whole) + 1):
        resumed = DataLoader(X, y, B, **kw)
        resumed.set_epoch(1, batch=k)
        assert same(loader_batches(resumed), epochs[1][k:])
        assert same(loader_batches(resumed), epochs[2])  # then whole epochs again


def test_evaluation_loaders_are_never_augmented(backend):
    X, y = images(), np.arange(N) % 10
    kw = dict(backend=backend, shuffle=False, normalize=None, flatten=False)
    train = DataLoader(X, y, B, augment=RandomCropFlip(2), **kw)
    evaluation = DataLoader(X, y, B, **kw)  # what a validation or prediction loader is
    assert evaluation.augment is None and train.augment is not None
    got = np.concatenate([x for x, _ in loader_batches(evaluation)])
    np.testing.assert_array_equal(got, X.astype(np.float32))
    assert not np.array_equal(np.concatenate([x for x, _ in loader_batches(train)]), got)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"X": images(8, (12,))}, DataError, r"X must have shape \(N, H, W\) or \(N, C, H, W\)"),
        ({"X": images(8, (1, 1, 2, 2))}, DataError, r"got \(8, 1, 1, 2, 2\)"),
        ({"augment": "crop"}, ValueError, "augment must be a RandomCropFlip or None; got 'crop'"),
    ],
)
def test_the_loader_refuses_what_it_cannot_augment(kwargs, error, message):
    args = {"X": images(8), "y": np.arange(8), "batch_size": 4, "backend": "numpy"}
    args |= {"augment": RandomCropFlip()} | kwargs
    with pytest.raises(error, match=message):
        DataLoader(**args)


# --- in the training loop: a run resumed mid-epoch is the uninterrupted run ---------------------


class StopAt(anynet.training.Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def test_a_run_resumed_mid_epoch_augments_as_the_uninterrupted_one(tmp_path):
    from anynet.training import Checkpointer, read_checkpoint, select_step, train

    be = anynet.get_backend("numpy")
    X, y = images(48, (1, 4, 4)), np.arange(48) % 3
    model = nn.Sequential(nn.Dense(16, 8), nn.ReLU(), nn.Dense(8, 3))

    def step(params=None, opt_state=None):
        params = params or model.init_params(rng=be.host_generator(1), backend=be)
        return select_step(model, nn.adam(0.01), params, opt_state, backend=be)

    def loader():
        return DataLoader(X, y, 8, backend=be, seed=3, augment=RandomCropFlip(1))

    straight = train(step(), loader(), epochs=2, seed=5)
    with pytest.raises(KeyboardInterrupt):
        train(step(), loader(), epochs=2, seed=5, callbacks=[Checkpointer(tmp_path), StopAt(9)])
    path = tmp_path / "checkpoint.safetensors"
    state, ckpt = read_checkpoint(path, backend=be, param_shapes=model.param_shapes())
    assert (state.epoch, state.batch) == (1, 3)
    resumed = train(step(ckpt.params, ckpt.opt_state), loader(), epochs=2, seed=5, state=state)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    # Without the augmentation the run is another one: the test can fail.
    plain = DataLoader(X, y, 8, backend=be, seed=3)
    other = train(step(), plain, epochs=2, seed=5)
    assert any(not np.array_equal(other.params[k], straight.params[k]) for k in straight.params)
