"""The device-resident DataLoader, on every backend present (the ``backend`` fixture)."""

from __future__ import annotations

import dataclasses

import array_api_compat
import numpy as np
import pytest

import anynet
from anynet.data import DataLoader, Standardizer
from anynet.errors import DataError

N, B = 300, 64


def indexed_data(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Samples that carry their own index (two uint8 features), and labels derived from it."""
    index = np.arange(n)
    X = np.stack([index // 256, index % 256, np.full(n, 7)], axis=1).astype(np.uint8)
    return X, (index * 7 % 10).astype(np.int64)


def batches(loader: DataLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    be = loader.backend
    return [(be.to_numpy(xb), be.to_numpy(yb)) for xb, yb in loader]


def sample_ids(host_batches) -> np.ndarray:
    """Recover each sample's index from an unnormalized batch of indexed_data."""
    return np.concatenate([(x[:, 0] * 256 + x[:, 1]).astype(np.int64) for x, _ in host_batches])


def same(a, b) -> bool:
    if len(a) != len(b):
        return False
    pairs = zip(a, b, strict=True)
    return all(np.array_equal(xa, xb) and np.array_equal(ya, yb) for (xa, ya), (xb, yb) in pairs)


# --- batches: dtype, shape, device, coverage ---------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batches_dtype_shape_and_device(backend, dtype):
    X, y = indexed_data()
    loader = DataLoader(X, y, B, backend=backend, seed=0, dtype=dtype)
    assert len(loader) == 5 and loader.n_samples == N and loader.n_features == 3
    seen = 0
    for xb, yb in loader:
        assert array_api_compat.device(xb) == backend.device
        assert array_api_compat.device(yb) == backend.device
        assert xb.dtype == backend.dtype(dtype)
        assert yb.dtype == backend.xp.int64
        assert xb.shape[1:] == (3,) and yb.shape == (xb.shape[0],)
        seen += xb.shape[0]
    assert seen == N


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_sample_exactly_once_per_epoch(backend, shuffle):
    X, y = indexed_data()
    loader = DataLoader(X, y, B, shuffle=shuffle, backend=backend, seed=1, normalize=None)
    for _ in range(2):
        got = batches(loader)
        ids = sample_ids(got)
        np.testing.assert_array_equal(np.sort(ids), np.arange(N))
        # Each label still belongs to its sample after the gather.
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), y[ids])
        if not shuffle:
            np.testing.assert_array_equal(ids, np.arange(N))


def test_drop_last(backend):
    X, y = indexed_data()
    loader = DataLoader(X, y, B, drop_last=True, backend=backend, seed=2, normalize=None)
    got = batches(loader)
    assert len(loader) == len(got) == N // B
    assert all(x.shape[0] == B for x, _ in got)
    assert len(np.unique(sample_ids(got))) == N // B * B


@pytest.mark.parametrize(("n", "batch", "drop", "expected"), [
    (300, 64, False, 5), (300, 64, True, 4), (256, 64, False, 4), (256, 64, True, 4),
    (1, 64, False, 1), (300, 1, False, 300), (300, 300, True, 1),
])  # fmt: skip
def test_len_is_batches_per_epoch(n, batch, drop, expected):
    X, y = indexed_data(n)
    loader = DataLoader(X, y, batch, drop_last=drop, backend="numpy", seed=0)
    assert len(loader) == expected == len(list(loader))


def test_flatten_false_keeps_the_sample_shape(backend):
    X = np.zeros((10, 4, 5), dtype=np.uint8)
    loader = DataLoader(X, np.zeros(10, dtype=np.int64), 4, backend=backend, flatten=False)
    assert [tuple(xb.shape) for xb, _ in loader] == [(4, 4, 5), (4, 4, 5), (2, 4, 5)]
    flat = DataLoader(X, np.zeros(10, dtype=np.int64), 4, backend=backend)
    assert tuple(next(iter(flat))[0].shape) == (4, 20)


@pytest.mark.parametrize("normalize", ["unit", "standardize"])
@pytest.mark.parametrize("streaming", [False, True])
def test_image_batches_keep_the_shape_given(backend, normalize, streaming):
    """(N, C, H, W) images: a convolutional network gets (B, C, H, W), in the stored order."""
    X, y = pixels(n=10)
    X = np.stack([X, 255 - X], axis=1)  # two channels
    budget = {"max_device_bytes": 4 * (32 + 8)} if streaming else {}
    kw = dict(backend=backend, shuffle=False, normalize=normalize, **budget)
    loader = DataLoader(X, y, 4, flatten=False, **kw)
    assert loader.streaming == streaming and loader.n_features == 32
    got = batches(loader)
    assert [x.shape for x, _ in got] == [(4, 2, 4, 4), (4, 2, 4, 4), (2, 2, 4, 4)]
    flat = np.concatenate([x for x, _ in batches(DataLoader(X, y, 4, **kw))])
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]).reshape(10, 32), flat)
    if normalize == "unit":
        np.testing.assert_allclose(flat, X.reshape(10, 32) / 255.0, rtol=1e-6)
    else:
        want = loader.standardizer.transform(X).reshape(10, 32)
        np.testing.assert_allclose(flat, want, rtol=1e-5, atol=1e-5)


# --- determinism and resume -------------------------------------------------------------------


def test_same_seed_same_batches_different_epochs_differ(backend):
    X, y = indexed_data()
    first = DataLoader(X, y, B, backend=backend, seed=42, normalize=None)
    second = DataLoader(X, y, B, backend=backend, seed=42, normalize=None)
    epoch0, epoch1 = batches(first), batches(first)
    assert same(epoch0, batches(second))
    assert same(epoch1, batches(second))
    assert not np.array_equal(sample_ids(epoch0), sample_ids(epoch1))
    other = DataLoader(X, y, B, backend=backend, seed=43, normalize=None)
    assert not np.array_equal(sample_ids(epoch0), sample_ids(batches(other)))


def test_set_epoch_resumes_with_the_uninterrupted_shuffle(backend):
    X, y = indexed_data()
    uninterrupted = DataLoader(X, y, B, backend=backend, seed=7, normalize=None)
    runs = [batches(uninterrupted) for _ in range(4)]
    assert uninterrupted.epoch == 4
    resumed = DataLoader(X, y, B, backend=backend, seed=7, normalize=None)
    resumed.set_epoch(2)
    assert same(batches(resumed), runs[2])
    assert same(batches(resumed), runs[3])


@pytest.mark.parametrize("streaming", [False, True])
def test_set_epoch_can_start_an_epoch_at_a_batch(backend, streaming):
    X, y = indexed_data()
    budget = {"max_device_bytes": 2 * B * (3 + 8)} if streaming else {}
    kw = dict(backend=backend, seed=7, normalize=None, **budget)
    uninterrupted = DataLoader(X, y, B, **kw)
    runs = [batches(uninterrupted) for _ in range(3)]
    for k in (0, 1, 3, 5):
        resumed = DataLoader(X, y, B, **kw)
        resumed.set_epoch(1, batch=k)
        assert same(batches(resumed), runs[1][k:])
        assert resumed.epoch == 2
        assert same(batches(resumed), runs[2])


def test_seed_none_draws_one_seed_and_reports_it():
    X, y = indexed_data()
    loader = DataLoader(X, y, B, backend="numpy", normalize=None)
    assert isinstance(loader.seed, int)
    again = DataLoader(X, y, B, backend="numpy", normalize=None, seed=loader.seed)
    assert same(batches(loader), batches(again))


# --- normalization ----------------------------------------------------------------------------


def pixels(n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)
    X[:, 0, 0] = 3  # a constant feature: zero variance
    return X, rng.integers(0, 10, size=n)


@pytest.mark.parametrize(
    ("normalize", "reference"),
    [
        ("unit", lambda X: X / 255.0),
        ("symmetric", lambda X: (X / 255.0 - 0.5) / 0.5),
        (None, lambda X: X.astype(np.float64)),
    ],
)
def test_normalization_values(backend, normalize, reference):
    X, y = pixels()
    loader = DataLoader(X, y, 16, shuffle=False, backend=backend, normalize=normalize)
    got = np.concatenate([x for x, _ in batches(loader)])
    np.testing.assert_allclose(got, reference(X.reshape(50, 16)), rtol=1e-6, atol=1e-6)


def test_standardize_matches_the_host_reference_and_keeps_constant_features_at_zero(backend):
    X, y = pixels()
    loader = DataLoader(X, y, 16, shuffle=False, backend=backend, normalize="standardize")
    got = np.concatenate([x for x, _ in batches(loader)])
    flat = X.reshape(50, 16).astype(np.float64)
    expected = (flat - flat.mean(axis=0)) / np.where(flat.std(axis=0) == 0, 1, flat.std(axis=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.all(got[:, 0] == 0)  # the constant pixel (0, 0): no division by zero
    np.testing.assert_allclose(got[:, 1:].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(got[:, 1:].std(axis=0), 1, atol=1e-4)


def test_test_set_reuses_the_training_statistics(backend):
    X_train, y_train = pixels(seed=0)
    X_test, y_test = pixels(n=20, seed=1)
    X_test[:, 0, 0] = 200  # constant in training: stays 0, never a raw outlier
    train = DataLoader(X_train, y_train, 16, backend=backend, normalize="standardize")
    test = DataLoader(
        X_test, y_test, 16, shuffle=False, backend=backend,
        normalize="standardize", standardizer=train.standardizer,
    )  # fmt: skip
    assert test.standardizer is train.standardizer
    got = np.concatenate([x for x, _ in batches(test)])
    expected = train.standardizer.transform(X_test.reshape(20, 16))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.all(got[:, 0] == 0)


def test_standardizer_fit_in_chunks_equals_numpy():
    X = np.random.default_rng(3).integers(0, 256, size=(1000, 7), dtype=np.uint8)
    stats = Standardizer.fit(X, chunk_rows=64)
    np.testing.assert_allclose(stats.mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, X.std(axis=0), rtol=1e-12)


def test_float_input_is_stored_in_the_batch_dtype(backend):
    X = np.linspace(-1, 1, 40).reshape(10, 4)
    loader = DataLoader(X, np.arange(10), 4, shuffle=False, backend=backend, normalize=None)
    got = np.concatenate([x for x, _ in batches(loader)])
    np.testing.assert_array_equal(got, X.astype(np.float32))


# --- the data stays on the device; streaming when it does not fit -------------------------------


def test_nothing_crosses_to_or_from_the_host_inside_an_epoch(backend):
    X, y = indexed_data()
    loader = DataLoader(X, y, B, backend=backend, seed=5)
    assert not loader.streaming
    expected = batches(DataLoader(X, y, B, backend=backend, seed=5))

    def forbidden(*args):
        raise AssertionError("host<->device copy inside an epoch")

    # A backend whose transfers fail: a resident epoch must not need them. (The shuffle comes
    # from the backend's generator, its own business; array-api-strict draws it on the host.)
    loader.backend = dataclasses.replace(backend, _asarray=forbidden, _to_numpy=forbidden)
    device_batches = list(loader)
    assert same([(backend.to_numpy(x), backend.to_numpy(t)) for x, t in device_batches], expected)


@pytest.mark.parametrize("shuffle", [True, False])
def test_streaming_gives_the_resident_batches(backend, shuffle):
    X, y = indexed_data()
    resident = DataLoader(X, y, B, shuffle=shuffle, backend=backend, seed=9)
    row = X.shape[1] + 8  # uint8 features + int64 label
    streamed = DataLoader(
        X, y, B, shuffle=shuffle, backend=backend, seed=9, max_device_bytes=2 * B * row
    )
    assert streamed.streaming and not resident.streaming
    assert streamed.device_bytes <= 2 * B * row < resident.device_bytes
    for _ in range(2):
        assert same(batches(streamed), batches(resident))


def test_resident_memory_is_uint8():
    X = np.zeros((1000, 28, 28), dtype=np.uint8)
    loader = DataLoader(X, np.zeros(1000, dtype=np.int64), 64, backend="numpy")
    assert loader.device_bytes == 1000 * 784 + 1000 * 8  # a quarter of float32, plus labels


# --- argument errors: name the argument, what came, what to do ---------------------------------

X_OK, Y_OK = indexed_data(10)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1; got 0"),
        ({"batch_size": -3}, ValueError, "batch_size must be an integer >= 1; got -3"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer >= 1; got 2.5"),
        ({"batch_size": True}, TypeError, "batch_size must be an integer >= 1; got True"),
        ({"batch_size": 11, "drop_last": True}, ValueError, "exceeds the 10 samples"),
        ({"y": Y_OK[:9]}, DataError, "X has 10 samples, y has 9 labels"),
        ({"y": Y_OK - 1}, DataError, "label -1; class labels must be 0 or more"),
        ({"num_classes": 5}, DataError, "label 9, out of range for num_classes=5"),
        ({"y": Y_OK.astype(float)}, DataError, "integer class labels; got dtype float64"),
        ({"y": Y_OK.reshape(5, 2)}, DataError, "1-D array of class labels"),
        ({"X": X_OK.astype(np.int64)}, DataError, "uint8 pixels .* got dtype int64"),
        ({"X": X_OK.astype(bool)}, DataError, "got dtype bool"),
        ({"X": X_OK[:, 0]}, DataError, "ndim >= 2"),
        ({"X": X_OK[:0], "y": Y_OK[:0]}, DataError, "no samples"),
        ({"X": np.full((10, 2), np.nan), "normalize": None}, DataError, "NaN"),
        ({"normalize": "minmax"}, ValueError, "normalize must be one of"),
        ({"X": X_OK / 255.0}, DataError, "normalize='unit' divides by 255"),
        ({"dtype": "int32"}, ValueError, "dtype must be a real floating dtype"),
        ({"standardizer": Standardizer([0.0], [1.0])}, ValueError, "only with normalize="),
        (
            {"normalize": "standardize", "standardizer": Standardizer([0.0], [1.0])},
            DataError,
            "standardizer was fitted on samples of shape",
        ),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an integer >= 0"),
        ({"shuffle": "yes"}, TypeError, "shuffle must be True or False"),
        ({"max_device_bytes": 0}, ValueError, "max_device_bytes must be an integer >= 1"),
        ({"max_device_bytes": 20}, ValueError, "max_device_bytes=20 cannot hold one chunk"),
        ({"pin_memory": True, "max_device_bytes": 100}, ValueError, "pin_memory=True needs"),
    ],
    ids=lambda value: None,
)
def test_bad_arguments_are_named(kwargs, error, message):
    args = {"X": X_OK, "y": Y_OK, "batch_size": 4, "backend": "numpy"} | kwargs
    with pytest.raises(error, match=message):
        DataLoader(**args)


def test_set_epoch_rejects_negative():
    loader = DataLoader(X_OK, Y_OK, 4, backend="numpy")
    with pytest.raises(ValueError, match="epoch must be an integer >= 0; got -1"):
        loader.set_epoch(-1)
    with pytest.raises(
        ValueError, match=r"batch must be an integer in \[0, 3\]; got 4. An epoch has 3"
    ):
        loader.set_epoch(0, batch=4)


@pytest.mark.needs_backend("array_api_strict")
def test_default_backend_is_get_backend_none(monkeypatch):
    monkeypatch.setenv("ANYNET_BACKEND", "array_api_strict")
    loader = DataLoader(X_OK, Y_OK, 4)
    assert loader.backend.name == "array_api_strict"
    assert anynet.get_backend(None).name == "array_api_strict"


# --- on the real data ---------------------------------------------------------------------------


def test_one_epoch_over_the_real_test_set():
    datasets = pytest.importorskip("anynet.datasets")
    try:
        X, y = datasets.load_fashion_mnist("test", download=False)
    except anynet.AnynetError as exc:
        pytest.skip(f"Fashion-MNIST not available: {str(exc).splitlines()[0]}")
    loader = DataLoader(X, y, 1024, backend="numpy", seed=0, normalize="standardize")
    counts = np.zeros(10, dtype=np.int64)
    for xb, yb in loader:
        assert xb.shape[1] == 784 and np.isfinite(xb).all()
        counts += np.bincount(yb, minlength=10)
    np.testing.assert_array_equal(counts, np.full(10, 1000))


# --- the fused gather (the CPU kernels, with and without numba) is the twin of the generic one --


@pytest.mark.parametrize("numba", ["numba", "numpy"])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("normalize", ["unit", "symmetric", "standardize", None])
def test_fused_gather_equals_generic_bit_for_bit(
    monkeypatch, normalize, dtype, shuffle, flatten, numba
):
    from anynet.fast.numba_kernels import load

    if numba == "numba" and load()[0] is None:
        pytest.skip(f"no numba kernels: {load()[1]}")
    if numba == "numpy":
        monkeypatch.setenv("ANYNET_NUMBA", "0")
    X = np.random.default_rng(3).integers(0, 256, size=(131, 5, 4)).astype("uint8")
    y = np.arange(131) % 10
    kw = dict(backend="numpy", seed=2, dtype=dtype, normalize=normalize, shuffle=shuffle)
    fused = DataLoader(X, y, 32, flatten=flatten, **kw)
    assert fused._gather is not None
    monkeypatch.setenv("ANYNET_FAST", "0")
    generic = DataLoader(X, y, 32, flatten=flatten, **kw)
    assert generic._gather is None
    for _ in range(2):  # two epochs: two orders
        got, want = batches(fused), batches(generic)
        assert same(got, want)
        assert got[0][0].dtype == np.dtype(dtype) and got[0][0].shape == want[0][0].shape
    # Each batch is a new array, as in the generic path: keeping one is safe.
    batch_iter = iter(fused)
    first, second = next(batch_iter)[0], next(batch_iter)[0]
    assert not np.shares_memory(first, second)


def test_fused_gather_of_images_in_channels_equals_generic(monkeypatch):
    X = np.random.default_rng(4).integers(0, 256, size=(37, 3, 4, 5)).astype("uint8")
    kw = dict(backend="numpy", seed=2, normalize="standardize", flatten=False)
    fused = DataLoader(X, np.arange(37) % 10, 8, **kw)
    monkeypatch.setenv("ANYNET_FAST", "0")
    generic = DataLoader(X, np.arange(37) % 10, 8, **kw)
    assert fused._gather is not None and generic._gather is None
    got, want = batches(fused), batches(generic)
    assert same(got, want) and got[0][0].shape == (8, 3, 4, 5)


def test_float_data_keeps_the_generic_gather():
    X = np.random.default_rng(3).random((20, 4))
    loader = DataLoader(X, np.arange(20) % 2, 8, backend="numpy", normalize="standardize")
    assert loader._gather is None


def test_regression_targets_follow_their_samples(backend):
    """targets='values': rows of real targets in the batch dtype, shuffled with their samples,
    streamed or resident alike."""
    n = 23
    X = np.arange(n, dtype=np.float64)[:, None]
    Y = np.stack([np.arange(n) * 0.5, -np.arange(n) / 3.0], axis=1)
    for budget in (None, 5 * 8 * 4):
        loader = DataLoader(
            X, Y, 5, seed=1, normalize=None, dtype="float64", backend=backend,
            targets="values", max_device_bytes=budget,
        )  # fmt: skip
        assert loader.n_classes is None
        for Xb, Yb in loader:
            ids = backend.to_numpy(Xb)[:, 0].astype(int)
            np.testing.assert_array_equal(backend.to_numpy(Yb), Y[ids])


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.r_[np.nan, np.ones(5)], "NaN or infinite target at sample 0"),
        (np.ones((6, 2, 2)), r"shape \(6,\) or \(6, n_outputs\)"),
        (np.ones(5), r"got shape \(5,\)"),
    ],
)
def test_bad_regression_targets_are_refused(y, match):
    with pytest.raises(DataError, match=match):
        DataLoader(np.ones((6, 2)), y, 2, normalize=None, targets="values", backend="numpy")
