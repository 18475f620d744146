"""The file container: safetensors, written atomically, read trusting nothing.

Network and checkpoint files (:mod:`anynet.io.files`) share one container, `safetensors <https://huggingface.co/docs/safetensors>`_:
an 8-byte little-endian header length, a JSON header, then the raw tensor bytes. There is no
pickle anywhere: arrays are raw little-endian bytes with a dtype and a shape, and everything
else is JSON.

The header's string metadata (``__metadata__``) holds four entries:

``format``
    ``"anynet"``: a safetensors file anynet did not write is refused.
``format_version``
    ``"1"``. A file from a newer anynet is refused with advice to upgrade.
``anynet``
    The file's own metadata as JSON: for a network, the architecture as
    ``{"class": ..., "config": Layer.get_config()}``; for a checkpoint, the epoch, step and the
    structure of the optimizer and RNG state. Arrays are referenced by tensor name.
``sha256``
    A SHA-256 digest over the other metadata entries and every tensor's name, dtype, shape and
    bytes, in a canonical order. safetensors itself has no checksum; this catches a flipped
    bit or an edited header. It is an integrity check, not a signature: someone who can write
    the file can recompute it, which is why the architecture is also only ever rebuilt from
    anynet's own layer classes.

Array dtypes allowed in a file: float16, float32, float64, int32, int64, uint8, uint32 and bool
(uint32 is what NumPy's MT19937 state holds; uint8 what PyTorch's generator state is).

Every problem found while reading — a missing file, a directory, a pickle, a truncated or
padded file, an invalid header, a digest mismatch here; an unknown layer or a parameter that does
not fit the architecture in :mod:`anynet.io.files` — raises one
:class:`~anynet.errors.ModelFileError` whose message names the file, the problem and what to do.

Reading trusts nothing, and reads nothing it has not checked first: only a regular file is
opened (a FIFO would block forever, ``/dev/zero`` never ends); its 8-byte length is read and
checked against the file's size before the header, and the header's tensor entries (dtypes from
a closed set, shapes of at most 32 dimensions whose sizes are computed with Python ints and
capped) must tile the rest of the file exactly before a byte of tensor data is read. A file can
make anynet allocate no more than its own size.

Writes are atomic (:mod:`anynet.io.atomic`): a crash at any point leaves the previous file
intact, and what a killed write leaves behind is removed by the next write to its folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import safetensors.numpy

from anynet.backends import to_numpy
from anynet.errors import ModelFileError
from anynet.io.atomic import atomic_write

__all__ = ["FORMAT_VERSION", "read_arrays", "write_arrays"]

#: The file-format version this anynet writes, and the newest it reads.
FORMAT_VERSION = 1


_FORMAT = "anynet"
_META_KEYS = ("format", "format_version", "anynet")
_DIGEST_KEY = "sha256"
# Domain separation: a digest of some other structure can never pass for ours.
_DIGEST_DOMAIN = b"anynet safetensors digest v1\x00"

# safetensors' own limit on the JSON header; it also stops a garbage length field from making
# us allocate gigabytes before finding out the file is not safetensors at all.
_MAX_HEADER_BYTES = 100_000_000
# Beyond any tensor anynet writes, and far inside NumPy's limits (ndim <= 64 in NumPy 2, 32 in
# NumPy 1; sizes below 2**63 bytes): a shape past them is hostile, not big.
_MAX_NDIM = 32
_MAX_TENSOR_BYTES = 2**48

# safetensors dtype code -> little-endian NumPy dtype, for the dtypes anynet stores.
_DTYPES = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
    "U32": np.dtype("<u4"),
    "BOOL": np.dtype("?"),
}
_CODES = {dtype.name: code for code, dtype in _DTYPES.items()}

# Recognisable non-safetensors files, to say what the file is rather than only what it is not.
_FOREIGN_MAGIC = (
    (b"PK\x03\x04", "a zip archive (a PyTorch .pt/.pth file or a NumPy .npz file?)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 file?)"),
    (b"\x1f\x8b", "a gzip file"),
)

_SAVE_AGAIN = "save the model again with anynet.save, or restore the file from a backup"


# --------------------------------------------------------------------------------------------
# Helpers the other modules of anynet.io share


def host_tensor(name: str, x: Any) -> np.ndarray:
    """``x`` as a C-contiguous little-endian host array of an allowed dtype, or ValueError."""
    host = to_numpy(x)
    if host.dtype.name not in _CODES:
        raise ValueError(
            f"array {name!r} has dtype {host.dtype}; anynet files hold only "
            f"{sorted(_CODES)}: cast it first"
        )
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    return np.asarray(host, dtype=host.dtype.newbyteorder("<"), order="C")


def is_int(x: Any) -> bool:
    """Is ``x`` an int and not a bool (``True`` is an int to Python)?"""
    return isinstance(x, int) and not isinstance(x, bool)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a crafted file must not flood a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FileErrors:
    """Makes the ModelFileError for one file: each names the file, the problem and what to do."""

    def __init__(self, path: Path, advice: str | None = None):
        self.path = path
        self.advice = _SAVE_AGAIN if advice is None else advice

    def fail(self, problem: str, advice: str | None = None) -> ModelFileError:
        advice = self.advice if advice is None else advice
        return ModelFileError(f"{self.path}: {problem}" + (f"; {advice}" if advice else ""))


# --------------------------------------------------------------------------------------------
# The container: write_arrays / read_arrays


def _digest(metadata: Mapping[str, str], tensors: Iterable[tuple[str, str, list, Any]]) -> str:
    """SHA-256 over the metadata entries and ``(name, dtype code, shape, bytes)`` of each
    tensor, every field length-prefixed so no two different files hash the same stream."""
    h = hashlib.sha256(_DIGEST_DOMAIN)

    def put(data: bytes | memoryview) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    def text(s: str) -> bytes:
        # A crafted header may hold lone surrogates ("\\ud800"): hash them, do not crash.
        return s.encode("utf-8", "surrogatepass")

    entries = sorted((k, v) for k, v in metadata.items() if k != _DIGEST_KEY)
    put(len(entries).to_bytes(8, "little"))
    for key, value in entries:
        put(text(key))
        put(text(value))
    for name, code, shape, data in sorted(tensors, key=lambda t: t[0]):
        put(text(name))
        put(code.encode("ascii"))
        put(json.dumps(shape).encode("ascii"))
        put(data)
    return h.hexdigest()


def _bytes_of(host: np.ndarray) -> memoryview:
    """The raw bytes of a C-contiguous ``host``, as written to the file, without a copy."""
    return memoryview(host.reshape(-1).view(np.uint8))


def write_arrays(
    path: str | os.PathLike, arrays: Mapping[str, Any], metadata: Mapping[str, Any]
) -> Path:
    """Write named arrays and JSON metadata to a safetensors file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The destination. Its directory must exist.
    arrays : mapping of str to array
        NumPy arrays or arrays of any anynet backend (copied to the host). Allowed dtypes:
        float16, float32, float64, int32, int64, uint8, uint32, bool.
    metadata : mapping of str to JSON-serialisable value
        Stored as JSON; non-finite floats are refused (JSON has none).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        An array of another dtype, an invalid name, or metadata that is not JSON.
    ModelFileError
        ``path`` is a directory.
    OSError
        The file could not be written; the previous file at ``path``, if any, is untouched.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from anynet.io import write_arrays, read_arrays
    >>> path = os.path.join(tempfile.mkdtemp(), "a.safetensors")
    >>> _ = write_arrays(path, {"w": np.ones(2, dtype="float32")}, {"note": "hi"})
    >>> read_arrays(path)
    ({'w': array([1., 1.], dtype=float32)}, {'note': 'hi'})
    """
    path = Path(path)
    hosts: dict[str, np.ndarray] = {}
    for name, x in arrays.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"array name {name!r} is not allowed: use a non-empty string")
        hosts[name] = host_tensor(name, x)
    try:
        text = json.dumps(dict(metadata), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata for {path} is not JSON-serialisable: {exc}") from None
    header = {"format": _FORMAT, "format_version": str(FORMAT_VERSION), "anynet": text}
    header[_DIGEST_KEY] = _digest(
        header,
        ((n, _CODES[h.dtype.name], list(h.shape), _bytes_of(h)) for n, h in hosts.items()),
    )
    data = safetensors.numpy.save(hosts, metadata=header)
    atomic_write(path, data)
    return path


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a repeated key, which JSON leaves ambiguous, is refused."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {duplicate!r}")
    return out


def _reject_constant(name: str) -> Any:
    """Refuse ``NaN``, ``Infinity`` and ``-Infinity``, which Python's json accepts."""
    raise ValueError(f"{name} is not valid JSON")


def _strict_json(text: str) -> Any:
    """JSON as the standard defines it: no NaN/Infinity, no duplicate keys."""
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


# What a path that is not a regular file is, by the type bits of its mode.
_SPECIAL_FILES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    """What a file of this mode is, unless it is a regular file: then None."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _SPECIAL_FILES if test(mode)), "not a regular file")


def _open_regular(errors: FileErrors) -> tuple[BinaryIO, int]:
    """The file open for reading, and its size; a ModelFileError unless it is a regular file.

    A FIFO would block the open and every read, a device such as /dev/zero never ends: both
    are refused by their mode before a byte is read. The mode is checked before the open, which
    must not block, and again on the open file, which is what is then read.
    """
    path = errors.path
    try:
        kind = _not_regular(os.stat(path).st_mode)
        if kind is None:
            # O_NONBLOCK: a FIFO swapped in after the check must not block the open either.
            flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
            fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0))
            info = os.fstat(fd)
            kind = _not_regular(info.st_mode)
            if kind is not None:
                os.close(fd)
    except FileNotFoundError:
        raise errors.fail("no such file", "check the path") from None
    except PermissionError:
        raise errors.fail("permission denied", "check the file's permissions") from None
    except OSError as exc:
        raise errors.fail(f"cannot be read ({exc.strerror or exc})", "check the path") from None
    if kind == "a directory":
        raise errors.fail(
            "is a directory, not a model file", "give the path of the .safetensors file"
        )
    if kind is not None:
        raise errors.fail(
            f"is {kind}, not a regular file; anynet reads models only from regular files",
            "give the path of the .safetensors file",
        )
    return os.fdopen(fd, "rb"), info.st_size


def _read_exactly(errors: FileErrors, f: BinaryIO, n: int) -> bytes:
    """The next ``n`` bytes of ``f``; a file that shrank since its size was read is refused."""
    try:
        data = f.read(n)
    except OSError as exc:
        raise errors.fail(f"cannot be read ({exc.strerror or exc})", "check the path") from None
    if len(data) != n:
        raise errors.fail("changed size while it was being read", "load it again")
    return data


def _read_header(
    errors: FileErrors, f: BinaryIO, size: int
) -> tuple[dict[str, Any], dict[str, str], int]:
    """The tensor entries, the string metadata and where the tensor bytes start.

    Reads the 8-byte length and the JSON header only, each checked against the file's size
    and the format's limits before it is read: a hostile length field cannot make us read,
    or allocate, more than the header it claims, and never past the end of the file.
    """
    if size == 0:
        raise errors.fail("is empty (0 bytes): an interrupted copy?")
    # Enough to recognise another format, and the header's opening brace.
    head = _read_exactly(errors, f, min(size, 9))
    length = int.from_bytes(head[:8], "little")
    # A safetensors header is JSON and starts with "{". Decide on that before looking for other
    # formats' magic bytes: a header length of 0x380 begins with the pickle opcode 0x80 too.
    # (A file cut within its first 8 bytes still has a plausible length: call it truncated.)
    plausible = 0 < length <= _MAX_HEADER_BYTES and (size <= 8 or head[8:9] == b"{")
    if not plausible:
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise errors.fail(
                "is a Python pickle, not a model file; anynet never loads pickles, because "
                "loading one can run arbitrary code",
                "save the model with anynet.save, which writes safetensors",
            )
        for magic, what in _FOREIGN_MAGIC:
            if head.startswith(magic):
                raise errors.fail(
                    f"is {what}, not a safetensors model file", "give an anynet model file"
                )
    if size < 8:
        raise errors.fail(f"is {size} bytes long, too short for a safetensors file (truncated?)")
    if length == 0 or length > _MAX_HEADER_BYTES:
        raise errors.fail(
            "is not a safetensors file (its first 8 bytes are not a plausible header length)",
            "give an anynet model file",
        )
    if 8 + length > size:
        raise errors.fail(
            f"is truncated: its header should be {length} bytes, but only {size - 8} "
            "bytes follow the length field"
        )
    raw = head[8:] + _read_exactly(errors, f, length - len(head[8:]))
    try:
        text = raw.decode("utf-8")
        if not text.startswith("{"):
            raise ValueError("the header does not start with '{'")
        header = _strict_json(text)
    except (ValueError, RecursionError) as exc:
        raise errors.fail(f"has a corrupt safetensors header (not valid JSON: {exc})") from None
    if not isinstance(header, dict):
        raise errors.fail("has a corrupt safetensors header (not a JSON object)")
    meta = header.pop("__metadata__", None)
    for name, entry in header.items():
        # A damaged "__metadata__" key would otherwise pass for a tensor's name.
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise errors.fail(f"has a corrupt safetensors header (entry {short_repr(name)})")
    if meta is None:
        raise errors.fail(
            "is a safetensors file that anynet did not write (it has no metadata)",
            "anynet loads only files written by anynet.save or anynet's checkpoints",
        )
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise errors.fail("has corrupt safetensors metadata (not a mapping of strings)")
    return header, meta, 8 + length


def _check_format(errors: FileErrors, meta: Mapping[str, str]) -> None:
    """Refuse a file anynet did not write, one from a newer anynet, or one lacking an entry."""
    fmt = meta.get("format")
    if fmt is None:
        raise errors.fail(
            "has no 'format' metadata entry: anynet did not write it, or its header is damaged",
            "anynet loads only files written by anynet.save or anynet's checkpoints",
        )
    if fmt != _FORMAT:
        raise errors.fail(
            f"is a safetensors file that anynet did not write (format {fmt!r}, not 'anynet')",
            "anynet loads only files written by anynet.save or anynet's checkpoints",
        )
    version = meta.get("format_version", "")
    if not (version.isascii() and version.isdigit()):
        raise errors.fail(f"has an invalid format version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise errors.fail(
            f"was written by a newer anynet (file format version {int(version)}; this anynet "
            f"reads up to version {FORMAT_VERSION})",
            "upgrade anynet (pip install -U anynet-nn) to load it",
        )
    if int(version) < 1:
        raise errors.fail(f"has an invalid format version {version!r}")
    for key in (*_META_KEYS, _DIGEST_KEY):
        if key not in meta:
            raise errors.fail(f"lacks the {key!r} metadata entry")


def _locate_tensors(
    errors: FileErrors, header: Mapping[str, Any], data_len: int
) -> dict[str, tuple[str, list[int], int, int]]:
    """Validate every tensor entry: ``name -> (dtype code, shape, begin, end)``.

    The byte ranges must tile the data exactly: no gaps, no overlaps, nothing before, after or
    beyond. That is what makes a truncated file, or one with bytes appended, fail here.
    """
    entries = {}
    for name, entry in header.items():
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        tensor = f"tensor {short_repr(name)}"
        if code not in _DTYPES:
            raise errors.fail(
                f"{tensor} has dtype {short_repr(code)}; anynet files hold only {sorted(_DTYPES)}"
            )
        if (
            not isinstance(shape, list)
            or len(shape) > _MAX_NDIM
            or not all(is_int(d) and d >= 0 for d in shape)
            # Python ints: no overflow. Zeros left out: NumPy refuses (2**62, 2**62, 0) too.
            or math.prod(max(d, 1) for d in shape) * _DTYPES[code].itemsize > _MAX_TENSOR_BYTES
        ):
            raise errors.fail(f"{tensor} has an invalid shape {short_repr(shape)}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise errors.fail(f"{tensor} has invalid data offsets {short_repr(offsets)}")
        begin, end = offsets
        nbytes = math.prod(shape) * _DTYPES[code].itemsize
        if end - begin != nbytes:
            raise errors.fail(
                f"{tensor} of shape {tuple(shape)} and dtype {code} needs {nbytes} bytes but "
                f"its offsets span {end - begin}"
            )
        entries[name] = (code, shape, begin, end)
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: e[1][2:]):
        if begin != position:
            raise errors.fail(
                f"has corrupt tensor offsets (tensor {short_repr(name)} starts at byte {begin} "
                f"of the data, expected {position})"
            )
        position = end
    if position > data_len:
        raise errors.fail(
            f"is truncated: its tensors need {position} bytes of data, but only {data_len} "
            "are there"
        )
    if position < data_len:
        raise errors.fail(
            f"has {data_len - position} unexpected bytes after its last tensor (appended "
            "data, or a file glued to another)"
        )
    return entries


def read_arrays(
    path: str | os.PathLike, *, advice: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`write_arrays`, verifying everything.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    advice : str, optional
        What the error messages tell the user to do; by default, to save the model again or
        restore the file from a backup.

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        Writable host arrays in native byte order.
    metadata : dict
        The metadata given to :func:`write_arrays`, decoded from JSON.

    Raises
    ------
    ModelFileError
        For every problem: no such file, a directory or anything else that is not a regular
        file (a FIFO, a device, a socket), empty, not safetensors (a pickle, a zip, plain
        text), truncated, bytes appended, a corrupt header, an invalid dtype or shape, not
        written by anynet, a newer format version, a digest mismatch (modified or corrupted
        after it was written), or metadata that is not JSON.
    """
    errors = FileErrors(Path(path), advice)
    f, size = _open_regular(errors)
    with f:
        header, meta, start = _read_header(errors, f, size)
        _check_format(errors, meta)
        # The tensors must tile the rest of the file exactly: only then is it read.
        entries = _locate_tensors(errors, header, size - start)
        view = memoryview(_read_exactly(errors, f, size - start))
    digest = _digest(meta, ((n, c, s, view[b:e]) for n, (c, s, b, e) in entries.items()))
    if digest != meta[_DIGEST_KEY]:
        raise errors.fail(
            "the file was modified or corrupted after it was written (its SHA-256 digest "
            "does not match its contents)"
        )
    try:
        metadata = _strict_json(meta["anynet"])
    except (ValueError, RecursionError) as exc:
        raise errors.fail(f"its anynet metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise errors.fail("its anynet metadata is not a JSON object")
    arrays = {}
    for name, (code, shape, begin, end) in entries.items():
        dtype = _DTYPES[code]
        if code == "BOOL" and bytes(view[begin:end]).translate(None, b"\x00\x01"):
            raise errors.fail(f"tensor {short_repr(name)} holds booleans other than 0 and 1")
        host = np.frombuffer(view[begin:end], dtype=dtype).reshape(shape)
        arrays[name] = host.astype(dtype.newbyteorder("="), copy=True)
    return arrays, metadata
