"""Fashion-MNIST: the real files, the search order, and what happens to a bad file in each place.

The real files come from Debian's ``dataset-fashion-mnist`` (CI installs it); tests that need
them skip cleanly without it. No test here touches the network or the user's cache.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import anynet.datasets.fashion_mnist as fm
from anynet.datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    fashion_mnist_path,
    load_fashion_mnist,
)
from anynet.errors import ChecksumError, DatasetNotFoundError, IDXFormatError

DEBIAN = fm.DEBIAN_DIR
LABELS = "t10k-labels-idx1-ubyte"
IMAGES = "t10k-images-idx3-ubyte"

needs_debian = pytest.mark.skipif(
    not (DEBIAN / f"{LABELS}.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point every automatic source at empty folders under tmp_path; no downloads possible."""
    paths = {
        "env": tmp_path / "env",
        "cache": tmp_path / "cache",
        "debian": tmp_path / "debian",
    }
    monkeypatch.setenv("ANYNET_DATA_DIR", str(paths["env"]))
    monkeypatch.setattr(fm, "default_cache_dir", lambda: paths["cache"])
    monkeypatch.setattr(fm, "DEBIAN_DIR", paths["debian"])
    # A download attempt would be a bug in these tests: make it fail loudly and fast.
    monkeypatch.setattr(fm, "MIRRORS", ("http://127.0.0.1:9/",))
    return paths


def put(folder, name, data: bytes, suffix=".gz"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    path.write_bytes(data)
    return path


def real(name: str) -> bytes:
    return (DEBIAN / f"{name}.gz").read_bytes()


def other_labels() -> bytes:
    """A well-formed labels file that is not Fashion-MNIST's: only the hash can tell."""
    labels = np.zeros(10000, dtype=np.uint8)
    return gzip.compress(bytes([0, 0, 8, 1]) + (10000).to_bytes(4, "big") + labels.tobytes())


# --- the real data -------------------------------------------------------------------------


def test_class_names():
    assert FASHION_MNIST_CLASSES == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )


@needs_debian
@pytest.mark.parametrize(("split", "n"), [("train", 60000), ("test", 10000)])
def test_real_dataset_from_the_debian_package(split, n):
    X, y = load_fashion_mnist(split, data_dir=DEBIAN, download=False)
    assert X.shape == (n, 28, 28) and X.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int64
    # Fashion-MNIST is balanced: every class has a tenth of the images.
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, n // 10))
    assert X.min() == 0 and X.max() == 255
    if split == "test":
        # The first test image is an ankle boot (upstream's README shows it).
        assert FASHION_MNIST_CLASSES[y[0]] == "Ankle boot"


@needs_debian
def test_automatic_search_finds_the_debian_package_offline(isolated, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", DEBIAN)
    assert fashion_mnist_path(LABELS, download=False) == DEBIAN / f"{LABELS}.gz"


def test_bad_split_is_refused():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'; got 'val'"):
        load_fashion_mnist("val", download=False)


# --- data_dir: used alone, problems reported -------------------------------------------------


@needs_debian
def test_data_dir_with_good_files_and_a_gunzipped_one(tmp_path, isolated):
    put(tmp_path / "mine", IMAGES, real(IMAGES))
    # A user who gunzipped a file: the content hash is the same, so it passes.
    put(tmp_path / "mine", LABELS, gzip.decompress(real(LABELS)), suffix="")
    X, y = load_fashion_mnist("test", data_dir=tmp_path / "mine", download=False)
    assert X.shape == (10000, 28, 28) and y[0] == 9


@needs_debian
def test_data_dir_is_used_alone_a_bad_file_there_raises(tmp_path, isolated):
    # A good copy sits in the cache; data_dir's bad one must still be reported, not skipped.
    put(isolated["cache"], LABELS, real(LABELS))
    bad = put(tmp_path / "mine", LABELS, other_labels())
    with pytest.raises(ChecksumError) as info:
        fashion_mnist_path(LABELS, data_dir=tmp_path / "mine")
    message = str(info.value)
    assert str(bad) in message
    assert FASHION_MNIST_FILES[LABELS] in message  # expected
    actual = fm.hashlib.sha256(gzip.decompress(other_labels())).hexdigest()
    assert actual in message
    assert bad.read_bytes() == other_labels()  # the caller's file is never replaced


def test_data_dir_truncated_file_raises_format_error(tmp_path, isolated):
    bad = put(tmp_path, LABELS, gzip.compress(b"\x00\x00\x08\x01" + bytes(100))[:-5])
    with pytest.raises(IDXFormatError, match="truncated gzip") as info:
        fashion_mnist_path(LABELS, data_dir=tmp_path, download=False)
    assert str(bad) in str(info.value)


def test_a_file_is_held_to_the_size_of_the_one_it_stands_for(tmp_path, isolated):
    # Declaring 16 Mi labels where Fashion-MNIST's test labels are 10,000: refused at the
    # header, before 16 MiB are inflated and hashed.
    head = bytes([0, 0, 8, 1]) + (2**24).to_bytes(4, "big")
    bad = put(tmp_path, LABELS, gzip.compress(head + bytes(2**24)))
    with pytest.raises(IDXFormatError, match="over the size cap of 10000 bytes") as info:
        fashion_mnist_path(LABELS, data_dir=tmp_path, download=False)
    assert str(bad) in str(info.value)


def test_data_dir_missing_without_download(tmp_path, isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist("test", data_dir=tmp_path / "nothing", download=False)
    message = str(info.value)
    assert "data_dir=" in message and "download=False" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "ANYNET_DATA_DIR" in message


# --- the automatic search: fall through, report at the end ------------------------------------


@needs_debian
def test_search_order_env_then_cache_then_debian(isolated):
    for where in ("debian", "cache", "env"):
        folder = isolated[where] / "fashion-mnist" if where == "env" else isolated[where]
        put(folder, LABELS, real(LABELS))
        # The latest folder filled is the earliest in the order, so it must win.
        assert fashion_mnist_path(LABELS, download=False) == folder / f"{LABELS}.gz"


@needs_debian
def test_a_bad_file_falls_through_to_the_next_source(isolated):
    put(isolated["env"] / "fashion-mnist", LABELS, other_labels())
    put(isolated["cache"], LABELS, b"not gzip, not idx")
    put(isolated["debian"], LABELS, real(LABELS))
    assert fashion_mnist_path(LABELS, download=False) == isolated["debian"] / f"{LABELS}.gz"


def test_everything_bad_reports_every_file_with_its_hashes(isolated):
    env_file = put(isolated["env"] / "fashion-mnist", LABELS, other_labels())
    cache_file = put(isolated["cache"], LABELS, b"\x1f\x8b broken")
    with pytest.raises(ChecksumError) as info:
        fashion_mnist_path(LABELS, download=False)
    message = str(info.value)
    actual = fm.hashlib.sha256(gzip.decompress(other_labels())).hexdigest()
    assert str(env_file) in message and actual in message
    assert FASHION_MNIST_FILES[LABELS] in message
    assert str(cache_file) in message and "corrupt gzip" in message
    assert "download=False" in message


def test_nothing_anywhere_lists_the_three_ways(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist("train", download=False)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "ANYNET_DATA_DIR" in message
    assert "download=True" in message
    for folder in (isolated["env"] / "fashion-mnist", isolated["cache"], isolated["debian"]):
        assert str(folder) in message  # where it looked
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_file_name_is_refused():
    with pytest.raises(ValueError, match="name must be one of"):
        fashion_mnist_path("train-images")


@needs_debian
def test_env_var_names_a_root_like_usr_share_datasets(tmp_path, isolated, monkeypatch):
    # ANYNET_DATA_DIR=/usr/share/datasets works as it is: the files sit in its fashion-mnist/.
    put(tmp_path / "datasets" / "fashion-mnist", LABELS, real(LABELS))
    monkeypatch.setenv("ANYNET_DATA_DIR", str(tmp_path / "datasets"))
    path = fashion_mnist_path(LABELS, download=False)
    assert path == tmp_path / "datasets" / "fashion-mnist" / f"{LABELS}.gz"
