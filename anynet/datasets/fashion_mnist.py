"""Fashion-MNIST: found offline where possible, always verified, downloaded only as a last resort.

Where :func:`load_fashion_mnist` looks, in order:

1. ``data_dir``, when the caller names it — and then *only* there (see below);
2. ``$ANYNET_DATA_DIR/fashion-mnist/``;
3. the user cache directory, ``<user cache>/anynet/fashion-mnist/``;
4. ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist`` package);
5. a download from :data:`MIRRORS`, in order, unless ``download=False``; it lands in
   ``$ANYNET_DATA_DIR/fashion-mnist/`` when that variable is set, else in the user cache.

Each file is verified by the SHA-256 of its *decompressed* IDX content, so Debian's
recompressed ``.gz`` files and upstream's both pass, and so does a file someone gunzipped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anynet.datasets._fetch import DownloadFailed, download_verified
from anynet.datasets.idx import check_idx_pair, parse_idx, read_idx_bytes
from anynet.errors import ChecksumError, DatasetNotFoundError, IDXFormatError

__all__ = [
    "DEBIAN_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "MIRRORS",
    "default_cache_dir",
    "fashion_mnist_path",
    "load_fashion_mnist",
]

#: The ten class names, in label order (label 0 is 'T-shirt/top').
FASHION_MNIST_CLASSES = (
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

#: SHA-256 of each file's decompressed IDX content (identical for upstream and Debian).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

# Each file's payload size, as its shape gives it: the cap its header is held to, so a broken
# or hostile file (a gzip bomb from a mirror) is refused at its header, not inflated and hashed.
_PAYLOAD_BYTES = {
    name: count * size
    for images, labels, count in _SPLITS.values()
    for name, size in ((images, 28 * 28), (labels, 1))
}

#: Upstream mirrors, tried in order; each serves ``<name>.gz``. Mirrors die: keep several.
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

ENV_VAR = "ANYNET_DATA_DIR"
_SUBDIR = "fashion-mnist"
# The compressed files are 26 MB at most: a response ten times larger is not one of them.
_MAX_DOWNLOAD_BYTES = 300 * 2**20

_HOW_TO_GET = (
    "Get the data one of three ways:\n"
    "  1. install Debian's package: sudo apt-get install dataset-fashion-mnist "
    f"(files in {DEBIAN_DIR});\n"
    f"  2. put the four files (*-ubyte.gz) in a folder DIR/{_SUBDIR}/ and set "
    f"{ENV_VAR}=DIR (or pass data_dir= the folder holding them);\n"
    "  3. allow the download: load_fashion_mnist(..., download=True) on a machine that can "
    "reach one of the mirrors."
)


def default_cache_dir() -> Path:
    """The user cache directory for Fashion-MNIST (``~/.cache/anynet/fashion-mnist`` on Linux)."""
    import pooch  # lazily: pooch's import pulls in requests

    return Path(pooch.os_cache("anynet")) / _SUBDIR


def _verify(path: Path, name: str) -> bytes:
    """The verified IDX bytes of ``path``; raises ChecksumError or IDXFormatError."""
    data = read_idx_bytes(path, max_bytes=_PAYLOAD_BYTES[name])
    actual = hashlib.sha256(data).hexdigest()
    expected = FASHION_MNIST_FILES[name]
    if actual != expected:
        # The hashes on lines of their own: 64 digits each would bury the sentence.
        raise ChecksumError(
            f"{path}: damaged, or not Fashion-MNIST's {name} (its content's SHA-256 differs); "
            "delete it and get it again\n"
            f"  SHA-256 of its content: {actual}\n"
            f"  Fashion-MNIST's:        {expected}"
        )
    return data


@dataclass
class _Search:
    """What the automatic search tried, for the final error message."""

    rejected: list[str] = field(default_factory=list)
    looked: list[str] = field(default_factory=list)


def _candidates(folder: Path, name: str) -> list[Path]:
    # The compressed file as distributed, or the same file gunzipped.
    return [folder / f"{name}.gz", folder / name]


def _try_folder(folder: Path, name: str, search: _Search) -> tuple[Path, bytes] | None:
    for path in _candidates(folder, name):
        if not path.is_file():
            continue
        try:
            return path, _verify(path, name)
        except (ChecksumError, IDXFormatError) as exc:
            search.rejected.append(str(exc))
        except OSError as exc:
            search.rejected.append(f"{path}: cannot read it ({exc})")
    search.looked.append(str(folder))
    return None


def _search_folders() -> list[Path]:
    folders = []
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        folders.append(Path(env).expanduser() / _SUBDIR)
    folders.append(default_cache_dir())
    folders.append(DEBIAN_DIR)
    return folders


def _download_folder() -> Path:
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() / _SUBDIR if env else default_cache_dir()


def _download(
    name: str, folder: Path, mirrors: tuple[str, ...], timeout: float
) -> tuple[Path, bytes]:
    urls = [m.rstrip("/") + f"/{name}.gz" for m in mirrors]
    verified: dict[str, bytes] = {}

    def verify(tmp: Path) -> None:
        try:
            verified["data"] = _verify(tmp, name)
        except (ChecksumError, IDXFormatError) as exc:
            # The temporary file's name means nothing to the user (and is deleted).
            raise type(exc)(str(exc).replace(str(tmp), f"the downloaded {name}.gz")) from None

    path = download_verified(
        urls,
        folder / f"{name}.gz",
        verify,
        timeout=timeout,
        total_timeout=max(60.0, 20 * timeout),
        max_bytes=_MAX_DOWNLOAD_BYTES,
    )
    return path, verified["data"]


def _locate(
    name: str,
    data_dir: str | os.PathLike | None,
    download: bool,
    mirrors: tuple[str, ...],
    timeout: float,
) -> tuple[Path, bytes]:
    """Find, verify (and if need be download) one file; return its path and IDX bytes."""
    if data_dir is not None:
        # A folder the caller names is used alone: what is wrong there is reported, not skipped,
        # and a bad file there is never replaced behind the caller's back.
        folder = Path(data_dir).expanduser()
        for path in _candidates(folder, name):
            if path.is_file():
                return path, _verify(path, name)
        if not download:
            raise DatasetNotFoundError(
                f"Fashion-MNIST's {name}.gz is not in data_dir={str(folder)!r} and "
                f"download=False.\n{_HOW_TO_GET}"
            )
        try:
            return _download(name, folder, mirrors, timeout)
        except DownloadFailed as exc:
            raise DatasetNotFoundError(
                f"Fashion-MNIST's {name}.gz is not in data_dir={str(folder)!r} and no mirror "
                f"gave a verified copy:\n{_attempts(exc.attempts)}\n{_HOW_TO_GET}"
            ) from None

    search = _Search()
    for folder in _search_folders():
        found = _try_folder(folder, name, search)
        if found is not None:
            return found
    failures: list[tuple[str, str]] = []
    rejected_downloads: list[str] = []
    if download:
        try:
            return _download(name, _download_folder(), mirrors, timeout)
        except DownloadFailed as exc:
            failures, rejected_downloads = exc.attempts, exc.rejected
    message = f"Fashion-MNIST's {name}.gz: no verified copy found."
    if search.looked:
        message += "\nLooked in: " + ", ".join(search.looked)
    if search.rejected:
        message += "\nRejected:\n" + "\n".join(f"  - {_item(r)}" for r in search.rejected)
    if failures:
        message += f"\nDownload failed:\n{_attempts(failures)}"
    elif not download:
        message += "\nNot downloaded: download=False."
    message += f"\n{_HOW_TO_GET}"
    # A file that is there but wrong is the thing to fix first: say so with the error's class.
    rejected = search.rejected or rejected_downloads
    raise (ChecksumError if rejected else DatasetNotFoundError)(message)


def _attempts(attempts: list[tuple[str, str]]) -> str:
    return "\n".join(f"  - {url}: {_item(why)}" for url, why in attempts)


def _item(text: str) -> str:
    """A message as an item of a list ("  - ..."): its further lines indented under it."""
    return text.replace("\n", "\n    ")


def fashion_mnist_path(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    mirrors: tuple[str, ...] | list[str] | None = None,
    timeout: float = 30.0,
) -> Path:
    """The path of one verified Fashion-MNIST file, found or downloaded.

    Parameters
    ----------
    name : str
        One of the keys of :data:`FASHION_MNIST_FILES`, e.g. ``'t10k-labels-idx1-ubyte'``.
    data_dir, download, mirrors, timeout
        As for :func:`load_fashion_mnist`.

    Returns
    -------
    pathlib.Path
        A file whose decompressed content has the expected SHA-256.
    """
    if name not in FASHION_MNIST_FILES:
        raise ValueError(
            f"name must be one of {', '.join(map(repr, FASHION_MNIST_FILES))}; got {name!r}"
        )
    mirrors = MIRRORS if mirrors is None else tuple(mirrors)
    return _locate(name, data_dir, download, mirrors, timeout)[0]


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    mirrors: tuple[str, ...] | list[str] | None = None,
    timeout: float = 30.0,
    return_paths: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, tuple[Path, Path]]:
    """Load Fashion-MNIST's training or test set, verified by SHA-256.

    Parameters
    ----------
    split : {'train', 'test'}
        60,000 training or 10,000 test images.
    data_dir : str or os.PathLike, optional
        A folder holding the files (``train-images-idx3-ubyte.gz`` ..., gzipped or not). When
        given, it is the only place looked in: a missing file is downloaded into it (if
        ``download``), and a damaged file there raises instead of being skipped or replaced.
        When omitted, the search goes ``$ANYNET_DATA_DIR/fashion-mnist``, the user cache,
        ``/usr/share/datasets/fashion-mnist``, then the mirrors; a missing or damaged file
        falls through to the next source.
    download : bool
        Whether to download from :data:`MIRRORS` when no verified copy is found.
    mirrors : sequence of str, optional
        Base URLs to download from, in order (default :data:`MIRRORS`).
    timeout : float
        Seconds to wait for a connection and between received bytes, per mirror.
    return_paths : bool
        Also return the files read, to say which copy was used.

    Returns
    -------
    images : numpy.ndarray
        uint8 of shape (N, 28, 28), N = 60000 (train) or 10000 (test).
    labels : numpy.ndarray
        int64 of shape (N,), values 0-9 indexing :data:`FASHION_MNIST_CLASSES`.
    paths : tuple of pathlib.Path
        With ``return_paths``: the images' file and the labels' file (found or downloaded).

    Raises
    ------
    ChecksumError
        A file was found (or downloaded) but its content is not Fashion-MNIST's; the message
        names each file, the expected and the actual SHA-256.
    IDXFormatError
        A file in ``data_dir`` is malformed or its gzip wrapper is damaged.
    DatasetNotFoundError
        No copy was found and none could be downloaded; the message lists where it looked,
        why each download failed, and the three ways to get the data.

    Examples
    --------
    >>> from anynet.datasets import load_fashion_mnist, FASHION_MNIST_CLASSES
    >>> X, y = load_fashion_mnist("test", download=False)  # doctest: +SKIP
    >>> X.shape, X.dtype, y.dtype, FASHION_MNIST_CLASSES[y[0]]  # doctest: +SKIP
    ((10000, 28, 28), dtype('uint8'), dtype('int64'), 'Ankle boot')
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    mirrors = MIRRORS if mirrors is None else tuple(mirrors)
    images_name, labels_name, count = _SPLITS[split]
    images_path, images_data = _locate(images_name, data_dir, download, mirrors, timeout)
    labels_path, labels_data = _locate(labels_name, data_dir, download, mirrors, timeout)
    images = parse_idx(images_data, name=str(images_path))
    labels = parse_idx(labels_data, name=str(labels_path))
    # The hashes already vouch for the content; these checks state what callers rely on.
    labels = check_idx_pair(
        images,
        labels,
        images_name=str(images_path),
        labels_name=str(labels_path),
        num_classes=len(FASHION_MNIST_CLASSES),
    )
    if images.shape != (count, 28, 28) or images.dtype != np.uint8:
        raise IDXFormatError(
            f"{images_path}: expected uint8 images of shape ({count}, 28, 28); got "
            f"{images.dtype} of shape {images.shape}"
        )
    if return_paths:
        return images, labels, (images_path, labels_path)
    return images, labels
