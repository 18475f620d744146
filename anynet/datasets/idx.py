"""The IDX file format (MNIST, Fashion-MNIST), read by a parser that trusts nothing.

An IDX file is a 4-byte magic number — two zero bytes, a type code, the number of dimensions —
then one big-endian uint32 per dimension, then the values, big-endian, in C order. The files
usually travel gzip-compressed. Every check this module makes raises
:class:`~anynet.errors.IDXFormatError` (a ``ValueError``) naming the file and what is wrong;
no other exception escapes it, whatever the bytes (a fuzz test in the suite holds it to that).
"""

from __future__ import annotations

import os
import zlib
from math import prod
from pathlib import Path

import numpy as np

from anynet.errors import IDXFormatError

__all__ = [
    "IDX_DTYPES",
    "MAX_IDX_BYTES",
    "decompress_gzip",
    "parse_idx",
    "read_idx",
    "read_idx_bytes",
    "read_idx_pair",
]

#: IDX type codes and the big-endian NumPy dtype each stands for. 0x0A is unassigned.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Default cap on the size of an IDX payload (decompressed): 2 GiB, ~40x the largest
#: Fashion-MNIST file. It stops a hostile header or a gzip bomb from exhausting memory.
MAX_IDX_BYTES = 2**31

# NumPy 1.x allows 32 dimensions; more is no IDX file anyone wrote.
_MAX_NDIM = 32
_GZIP_MAGIC = b"\x1f\x8b"


def decompress_gzip(raw: bytes, *, name: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """Decompress exactly one gzip member, refusing every kind of damage.

    Parameters
    ----------
    raw : bytes
        The compressed bytes.
    name : str
        What to call the data in error messages (usually the file's path).
    max_bytes : int
        Refuse to produce more than this many bytes (a gzip bomb guard).

    Returns
    -------
    bytes
        The decompressed data.

    Raises
    ------
    IDXFormatError
        Not gzip, a corrupt deflate stream, a CRC32 or length mismatch in the trailer,
        truncation, trailing bytes (such as a second gzip member glued on), or more than
        ``max_bytes`` of output.
    """
    if raw[:2] != _GZIP_MAGIC:
        raise IDXFormatError(f"{name}: not a gzip file (starts with {raw[:2].hex() or 'nothing'})")
    # zlib in gzip mode (wbits=31) checks the header, the deflate stream and the trailer's
    # CRC32 and length, and, unlike gzip.decompress, stops after one member, so a second
    # member glued on shows up in unused_data instead of being silently concatenated.
    decoder = zlib.decompressobj(wbits=31)
    try:
        out = decoder.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise IDXFormatError(f"{name}: corrupt gzip data ({_zlib_reason(exc)})") from None
    if len(out) > max_bytes:
        raise IDXFormatError(
            f"{name}: decompresses to more than {max_bytes} bytes (the size cap); "
            "refusing it as a possible gzip bomb"
        )
    if not decoder.eof:
        raise IDXFormatError(
            f"{name}: truncated gzip file (the compressed stream ends before its end marker "
            "and checksum); the file is incomplete: delete it and fetch it again"
        )
    if decoder.unused_data:
        extra = decoder.unused_data
        what = "a second gzip member" if extra[:2] == _GZIP_MAGIC else "trailing bytes"
        raise IDXFormatError(
            f"{name}: {what} after the gzip stream ({len(extra)} bytes); an IDX file is one "
            "gzip member"
        )
    return out


def _zlib_reason(exc: zlib.error) -> str:
    text = str(exc)
    if "incorrect data check" in text:
        return f"CRC32 mismatch: the data is damaged; zlib: {text}"
    if "incorrect length check" in text:
        return f"length mismatch in the gzip trailer; zlib: {text}"
    return f"zlib: {text}"


def parse_idx(data: bytes, *, name: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse uncompressed IDX bytes into a NumPy array in native byte order.

    Parameters
    ----------
    data : bytes
        The whole IDX file, header and payload.
    name : str
        What to call the data in error messages.
    max_bytes : int
        Refuse payloads larger than this.

    Returns
    -------
    numpy.ndarray
        A writable array of shape given by the header; dtype uint8, int8, int16, int32,
        float32 or float64 (type codes 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E).

    Raises
    ------
    IDXFormatError
        A bad magic number, an unknown type code, zero or too many dimensions, a zero
        dimension, a payload over ``max_bytes``, or a payload that is shorter or longer than
        the header says.
    """
    if len(data) < 4:
        raise IDXFormatError(f"{name}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{name}: bad IDX magic number {data[:4].hex()} (an IDX file starts with two zero "
            "bytes); is this an IDX file?"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IDXFormatError(f"{name}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if not 1 <= ndim <= _MAX_NDIM:
        raise IDXFormatError(f"{name}: {ndim} dimensions; expected 1 to {_MAX_NDIM}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header} bytes, the file has "
            f"{len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if 0 in shape:
        raise IDXFormatError(f"{name}: a zero dimension in shape {shape}; IDX data cannot be empty")
    dtype = IDX_DTYPES[code]
    # Python ints: no overflow, however large the header claims the data is.
    expected = prod(shape) * dtype.itemsize
    if expected > max_bytes:
        raise IDXFormatError(
            f"{name}: shape {shape} of {dtype.name} needs {expected} bytes, over the size cap of "
            f"{max_bytes} bytes"
        )
    actual = len(data) - header
    if actual < expected:
        raise IDXFormatError(
            f"{name}: truncated payload: shape {shape} of {dtype.name} needs {expected} bytes "
            f"after the header, the file has {actual}"
        )
    if actual > expected:
        raise IDXFormatError(
            f"{name}: {actual - expected} trailing bytes after the payload of shape {shape}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=True)


def read_idx_bytes(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """The uncompressed IDX bytes of a file, gzip-compressed or raw (told apart by content).

    This is what :func:`read_idx` parses and what anynet's checksums are computed on.

    Raises
    ------
    IDXFormatError
        A damaged gzip wrapper (see :func:`decompress_gzip`).
    OSError
        The file cannot be read (missing, a directory, no permission).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        # The largest legal header is 4 + 4 * 32 bytes.
        return decompress_gzip(raw, name=str(path), max_bytes=max_bytes + 4 + 4 * _MAX_NDIM)
    return raw


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a NumPy array.

    Works for any IDX file: Fashion-MNIST, MNIST, EMNIST, KMNIST.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is recognised by its magic bytes, not by the ``.gz`` suffix.
    max_bytes : int
        The largest payload accepted (default 2 GiB).

    Returns
    -------
    numpy.ndarray
        Values in native byte order, with the shape and dtype the header declares.

    Raises
    ------
    IDXFormatError
        Anything wrong with the content: see :func:`decompress_gzip` and :func:`parse_idx`.
    OSError
        The file cannot be read.

    Examples
    --------
    >>> from anynet.datasets import read_idx
    >>> labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    >>> labels.shape, labels.dtype
    ((10000,), dtype('uint8'))
    """
    return parse_idx(read_idx_bytes(path, max_bytes=max_bytes), name=str(path), max_bytes=max_bytes)


def check_idx_pair(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    images_name: str,
    labels_name: str,
    num_classes: int | None = None,
) -> np.ndarray:
    """Check that IDX images and labels belong together; return the labels as int64.

    Raises
    ------
    IDXFormatError
        Labels that are not a 1-D integer array, an image count different from the label
        count, or labels outside ``[0, num_classes)`` (``[0, ...)`` without ``num_classes``).
    """
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise IDXFormatError(
            f"{labels_name}: labels must be a 1-D integer array; got shape {labels.shape} of "
            f"{labels.dtype}"
        )
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(
            f"{images_name} holds {images.shape[0]} images but {labels_name} holds "
            f"{labels.shape[0]} labels; the two files do not belong together"
        )
    labels = labels.astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bad = low if low < 0 else high
        allowed = f"0 to {num_classes - 1}" if num_classes is not None else "0 or more"
        raise IDXFormatError(f"{labels_name}: label {bad} is out of range; expected {allowed}")
    return labels


def read_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    *,
    num_classes: int | None = None,
    max_bytes: int = MAX_IDX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file, and check that they belong together.

    Parameters
    ----------
    images_path, labels_path : str or os.PathLike
        IDX files, gzip-compressed or raw.
    num_classes : int, optional
        Labels must lie in ``[0, num_classes)``; without it they must be non-negative.
    max_bytes : int
        The largest payload accepted per file.

    Returns
    -------
    images : numpy.ndarray
        As stored (uint8 of shape (N, 28, 28) for MNIST-like data).
    labels : numpy.ndarray
        int64 of shape (N,).

    Raises
    ------
    IDXFormatError
        Either file is malformed, the counts differ, or a label is out of range.
    """
    images = read_idx(images_path, max_bytes=max_bytes)
    labels = read_idx(labels_path, max_bytes=max_bytes)
    labels = check_idx_pair(
        images,
        labels,
        images_name=str(images_path),
        labels_name=str(labels_path),
        num_classes=num_classes,
    )
    return images, labels
