"""The IDX file format (MNIST, Fashion-MNIST), read by a parser that trusts nothing.

An IDX file is a 4-byte magic number — two zero bytes, a type code, the number of dimensions —
then one big-endian uint32 per dimension, then the values, big-endian, in C order. The files
usually travel gzip-compressed. Every check this module makes raises
:class:`~anynet.errors.IDXFormatError` (a ``ValueError``) naming the file and what is wrong;
no other exception escapes it, whatever the bytes (a fuzz test in the suite holds it to that).

Nothing is read before it is checked. Only a regular file is opened (a FIFO would block
forever, ``/dev/zero`` never ends). The header comes first, and says exactly how many bytes
follow; a raw file of any other size is refused before its payload is read, and a gzip file is
inflated in small steps and refused as soon as it yields more than its header declares (or if
its header declares more than a gzip file of its size can hold), so a small file that inflates
to gigabytes costs no more memory than the data its header claims. :func:`read_idx` reads (or
inflates) the payload straight into the array it returns, allocated from the checked header, so
its peak memory is about the size of that array; :func:`read_idx_header` reads the header
alone.
"""

from __future__ import annotations

import os
from functools import partial
from math import prod
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from anynet.datasets.untrusted import (
    CHUNK,
    DEFLATE_MAX_RATIO,
    GZIP_MAGIC,
    MAX_IDX_BYTES,
    SLACK,
    Gunzip,
    decompress_gzip,
    open_regular,
)
from anynet.errors import IDXFormatError

__all__ = [
    "IDX_DTYPES",
    "MAX_IDX_BYTES",
    "decompress_gzip",
    "parse_idx",
    "read_idx",
    "read_idx_bytes",
    "read_idx_header",
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


# NumPy 1.x allows 32 dimensions; more is no IDX file anyone wrote.
_MAX_NDIM = 32
_MAX_HEADER = 4 + 4 * _MAX_NDIM


def _header_length(data: bytes | bytearray, name: str) -> int:
    """The length of the header ``data`` starts with, from its first 4 bytes, checked."""
    if len(data) < 4:
        raise IDXFormatError(f"{name}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{name}: bad IDX magic number {bytes(data[:4]).hex()} (an IDX file starts with two "
            "zero bytes); is this an IDX file?"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IDXFormatError(f"{name}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if not 1 <= ndim <= _MAX_NDIM:
        raise IDXFormatError(f"{name}: {ndim} dimensions; expected 1 to {_MAX_NDIM}")
    return 4 + 4 * ndim


def _parse_header(
    data: bytes | bytearray, name: str, max_bytes: int
) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """``(shape, dtype, header length, payload length)`` of the header ``data`` starts with.

    ``data`` is the whole file, or at least its header: a shorter ``data`` is the whole file.
    """
    header = _header_length(data, name)
    if len(data) < header:
        raise IDXFormatError(
            f"{name}: truncated header: {header // 4 - 1} dimensions need {header} bytes, the "
            f"file has {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=header // 4 - 1, offset=4))
    if 0 in shape:
        raise IDXFormatError(f"{name}: a zero dimension in shape {shape}; IDX data cannot be empty")
    dtype = IDX_DTYPES[data[2]]
    # Python ints: no overflow, however large the header claims the data is.
    expected = prod(shape) * dtype.itemsize
    if expected > max_bytes:
        raise IDXFormatError(
            f"{name}: shape {shape} of {dtype.name} needs {expected} bytes, over the size cap of "
            f"{max_bytes} bytes"
        )
    return shape, dtype, header, expected


def _check_payload(
    name: str, shape: tuple[int, ...], dtype: np.dtype, expected: int, actual: int
) -> None:
    """Refuse a payload of ``actual`` bytes where the header declares ``expected``."""
    if actual < expected:
        raise IDXFormatError(
            f"{name}: truncated payload: shape {shape} of {dtype.name} needs {expected} bytes "
            f"after the header, the file has {actual}"
        )
    if actual > expected:
        raise IDXFormatError(
            f"{name}: {actual - expected} trailing bytes after the payload of shape {shape}"
        )


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
    shape, dtype, header, expected = _parse_header(data, name, max_bytes)
    _check_payload(name, shape, dtype, expected, len(data) - header)
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=True)


class _Header(NamedTuple):
    """A checked IDX header, and where its payload comes from."""

    shape: tuple[int, ...]
    dtype: np.dtype  # big-endian, as stored
    length: int  # of the header, in bytes
    payload: int  # bytes the header declares
    gunzip: Gunzip | None  # the inflater positioned after the header, for a gzip file


def _read_header(f: BinaryIO, size: int, name: str, max_bytes: int) -> _Header:
    """The header of the open file ``f`` of ``size`` bytes, checked, and checked against the
    file's size; nothing after it is read (or inflated)."""
    if f.read(2) != GZIP_MAGIC:
        f.seek(0)
        head = f.read(min(size, _MAX_HEADER))
        shape, dtype, header, expected = _parse_header(head, name, max_bytes)
        _check_payload(name, shape, dtype, expected, size - header)
        return _Header(shape, dtype, header, expected, None)
    f.seek(0)
    gunzip = Gunzip(iter(partial(f.read, CHUNK), b""), name)
    try:
        # The 4-byte magic number gives the header's length, which gives the payload's.
        gunzip.take(4)
        gunzip.take(_header_length(gunzip.out, name))
        shape, dtype, header, expected = _parse_header(gunzip.out, name, max_bytes)
    except IDXFormatError:
        # Damage early in the deflate stream can inflate to a few garbage bytes before zlib
        # notices: name the damage rather than the garbage, if a little more inflating finds it.
        gunzip.probe(SLACK)
        raise
    total = header + expected
    if total > DEFLATE_MAX_RATIO * size:
        raise IDXFormatError(
            f"{name}: its IDX header declares {total} bytes, more than a gzip file of {size} "
            f"bytes can hold (deflate compresses at most {DEFLATE_MAX_RATIO}:1): the file is "
            "truncated or not what it claims; delete it and fetch it again"
        )
    return _Header(shape, dtype, header, expected, gunzip)


def _gzip_tail(head: _Header, name: str, inflated: int) -> None:
    """After ``inflated`` payload bytes of a gzip file: refuse a short payload, a damaged
    stream, and anything after the payload (inflating at most 64 KiB of it)."""
    gunzip = head.gunzip
    assert gunzip is not None
    if inflated < head.payload:
        gunzip.finish()  # a damaged gzip file is reported as such, before the short payload
        _check_payload(name, head.shape, head.dtype, head.payload, inflated)
    kept = len(gunzip.out)
    gunzip.fill(kept + SLACK + 1)
    trailing = len(gunzip.out) - kept
    if trailing > SLACK:
        raise IDXFormatError(
            f"{name}: decompresses to more than the {head.length + head.payload} bytes its IDX "
            "header declares; refusing it as a possible gzip bomb"
        )
    gunzip.finish()
    _check_payload(name, head.shape, head.dtype, head.payload, inflated + trailing)


def _read_raw(f: BinaryIO, head: _Header, name: str) -> bytes:
    """The whole of an uncompressed IDX file whose header was checked against its size."""
    f.seek(0)
    total = head.length + head.payload
    data = f.read(total)
    if len(data) != total or f.read(1):
        raise IDXFormatError(f"{name}: the file changed size while it was being read")
    return data


def _read_gzip(head: _Header, name: str) -> bytes:
    """The whole of a gzip-compressed IDX file, inflated no further than its header says it
    holds."""
    gunzip = head.gunzip
    assert gunzip is not None
    gunzip.fill(head.length + head.payload)
    _gzip_tail(head, name, len(gunzip.out) - head.length)
    return bytes(gunzip.out)


def _read_payload(f: BinaryIO, head: _Header, name: str) -> np.ndarray:
    """The payload after ``head``, read or inflated straight into the array returned (no
    other copy of it is made), in native byte order."""
    values = np.empty(head.shape, dtype=head.dtype.newbyteorder("="))
    view = memoryview(values.reshape(-1).view(np.uint8))
    if head.gunzip is not None:
        del head.gunzip.out[: head.length]  # the header, inflated to be checked
        _gzip_tail(head, name, head.gunzip.readinto(view))
    else:
        f.seek(head.length)
        done = 0
        while done < head.payload:
            n = f.readinto(view[done:])
            if not n:
                break
            done += n
        if done != head.payload or f.read(1):
            raise IDXFormatError(f"{name}: the file changed size while it was being read")
    if not head.dtype.isnative:
        values.byteswap(inplace=True)  # the bytes were big-endian; the dtype is native
    return values


def read_idx_bytes(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """The uncompressed IDX bytes of a file, gzip-compressed or raw (told apart by content).

    This is what anynet's checksums are computed on. The header is read and checked first; the
    bytes that follow are read (or inflated) only as far as it declares, plus 64 KiB to report
    trailing bytes, and never more than ``max_bytes``.

    Raises
    ------
    IDXFormatError
        Not a regular file (a directory, a FIFO, a device), a damaged gzip wrapper (see
        :func:`decompress_gzip`), an invalid header, a payload over ``max_bytes``, or a file
        that holds (or inflates to) more than its header declares.
    OSError
        The file cannot be read (missing, no permission).
    """
    path = Path(path)
    f, size = open_regular(path)
    with f:
        head = _read_header(f, size, str(path), max_bytes)
        if head.gunzip is not None:
            return _read_gzip(head, str(path))
        return _read_raw(f, head, str(path))


def read_idx_header(
    path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES
) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and shape of an IDX file's data, from its header alone.

    Only the header is read (for a gzip file, inflated): the payload is not. The header gets
    every check :func:`read_idx` makes of it, including those against the file's size (a raw
    file must hold exactly the payload it declares; a gzip file must be big enough to inflate
    to it), so a file refused here is refused by :func:`read_idx` too. A file accepted here can
    still be refused by :func:`read_idx`, for damage in its payload.

    Parameters
    ----------
    path : str or os.PathLike
        The file, gzip-compressed or raw (told apart by content). Only a regular file is read.
    max_bytes : int
        The largest payload accepted (default 2 GiB).

    Returns
    -------
    dtype : numpy.dtype
        In native byte order: the dtype :func:`read_idx` would return.
    shape : tuple of int
        The shape the header declares.

    Raises
    ------
    IDXFormatError
        Not a regular file, or a header that is invalid, over ``max_bytes``, or inconsistent
        with the file's size.
    OSError
        The file cannot be read.

    Examples
    --------
    >>> from anynet.datasets import read_idx_header
    >>> read_idx_header("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    (dtype('uint8'), (10000, 28, 28))
    """
    path = Path(path)
    f, size = open_regular(path)
    with f:
        head = _read_header(f, size, str(path), max_bytes)
    return head.dtype.newbyteorder("="), head.shape


def read_idx(
    path: str | os.PathLike,
    *,
    max_bytes: int = MAX_IDX_BYTES,
    item_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a NumPy array.

    Works for any IDX file: Fashion-MNIST, MNIST, EMNIST, KMNIST. The header is read and
    checked first; the payload is then read (or inflated) straight into the array returned, so
    peak memory is about that array's size.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is recognised by its magic bytes, not by the ``.gz`` suffix.
    max_bytes : int
        The largest payload accepted (default 2 GiB).
    item_shape : tuple of int, optional
        The shape each item must have (the shape after the first dimension: ``(28, 28)`` for
        Fashion-MNIST images, ``()`` for labels). A file whose items have another shape is
        refused from its header, before its payload is read.

    Returns
    -------
    numpy.ndarray
        Values in native byte order, with the shape and dtype the header declares; writable.

    Raises
    ------
    IDXFormatError
        Anything wrong with the content, or a path that is not a regular file: see
        :func:`read_idx_bytes`, :func:`decompress_gzip` and :func:`parse_idx`; or items of
        another shape than ``item_shape``.
    OSError
        The file cannot be read.

    Examples
    --------
    >>> from anynet.datasets import read_idx
    >>> labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    >>> labels.shape, labels.dtype
    ((10000,), dtype('uint8'))
    """
    path = Path(path)
    name = str(path)
    f, size = open_regular(path)
    with f:
        head = _read_header(f, size, name, max_bytes)
        if item_shape is not None:
            wanted = tuple(int(d) for d in item_shape)
            if head.shape[1:] != wanted:
                raise IDXFormatError(
                    f"{name}: its items have shape {head.shape[1:]} (the file's shape is "
                    f"{head.shape}); expected items of shape {wanted}. Give a file of "
                    f"{wanted} items."
                )
        return _read_payload(f, head, name)


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
