"""Model and checkpoint files: safetensors, written atomically, read trusting nothing.

Two kinds of file share one container, `safetensors <https://huggingface.co/docs/safetensors>`_:
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
padded file, an invalid header, a digest mismatch, an unknown layer, a parameter that does not
fit the architecture — raises one :class:`~anynet.errors.ModelFileError` whose message names
the file, the problem and what to do.

Writes go to a temporary file in the destination's directory, are flushed and fsynced, and
only then renamed over the destination (an atomic ``os.replace``); the directory is fsynced
after. A crash at any point leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import safetensors.numpy

from anynet.backends import Backend, get_backend, to_numpy
from anynet.errors import ModelFileError
from anynet.nn import optim
from anynet.nn.layers import LAYERS, Layer, layer_from_config

__all__ = [
    "FORMAT_VERSION",
    "STATE_CLASSES",
    "Checkpoint",
    "load_checkpoint",
    "load_network",
    "read_arrays",
    "save_checkpoint",
    "save_network",
    "write_arrays",
]

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
# Nesting depth of the metadata JSON and of the structures it describes: far beyond any real
# optimizer state, far below Python's recursion limit.
_MAX_DEPTH = 64

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
# Host conversion


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (
        not isinstance(x, np.generic) and hasattr(x, "__dlpack__") and hasattr(x, "shape")
    )


def _host_tensor(name: str, x: Any) -> np.ndarray:
    """``x`` as a C-contiguous little-endian host array of an allowed dtype, or ValueError."""
    host = to_numpy(x)
    if host.dtype.name not in _CODES:
        raise ValueError(
            f"array {name!r} has dtype {host.dtype}; anynet files hold only "
            f"{sorted(_CODES)}: cast it first"
        )
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    return np.asarray(host, dtype=host.dtype.newbyteorder("<"), order="C")


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
        hosts[name] = _host_tensor(name, x)
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
    _atomic_write(path, data)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    if path.is_dir():
        raise ModelFileError(
            f"cannot save to {path}: it is a directory; give a file name inside it, "
            f"such as {path / 'model.safetensors'}"
        )
    directory = path.parent
    # O_EXCL on a random name: never clobber anything; mode 0o666 lets the umask decide
    # permissions as for any new file (mkstemp would force 0o600).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            # The data must be on disk before the rename makes it the file: otherwise a
            # power cut can leave a renamed but empty file.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable. Best effort: Windows and some file systems cannot
    fsync a directory, and by now the new file is complete under its name either way."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Reader:
    """Raises ModelFileError for one file, always naming the file."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, problem: str, advice: str = _SAVE_AGAIN) -> ModelFileError:
        return ModelFileError(f"{self.path}: {problem}" + (f"; {advice}" if advice else ""))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {duplicate!r}")
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict_json(text: str) -> Any:
    """JSON as the standard defines it: no NaN/Infinity, no duplicate keys."""
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _read_bytes(r: _Reader) -> bytes:
    path = r.path
    if path.is_dir():
        raise r.fail("is a directory, not a model file", "give the path of the .safetensors file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise r.fail("no such file", "check the path") from None
    except PermissionError:
        raise r.fail("permission denied", "check the file's permissions") from None
    except OSError as exc:
        raise r.fail(f"cannot be read ({exc.strerror or exc})", "check the path") from None


def _parse_header(r: _Reader, raw: bytes) -> tuple[dict[str, Any], dict[str, str], int]:
    """The tensor entries, the string metadata and where the tensor bytes start."""
    if not raw:
        raise r.fail("is empty (0 bytes): an interrupted copy?")
    size = int.from_bytes(raw[:8], "little")
    # A safetensors header is JSON and starts with "{". Decide on that before looking for other
    # formats' magic bytes: a header length of 0x380 begins with the pickle opcode 0x80 too.
    # (A file cut within its first 8 bytes still has a plausible length: call it truncated.)
    looks_like_safetensors = 0 < size <= _MAX_HEADER_BYTES and (len(raw) <= 8 or raw[8:9] == b"{")
    if not looks_like_safetensors:
        if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise r.fail(
                "is a Python pickle, not a model file; anynet never loads pickles, because "
                "loading one can run arbitrary code",
                "save the model with anynet.save, which writes safetensors",
            )
        for magic, what in _FOREIGN_MAGIC:
            if raw.startswith(magic):
                raise r.fail(
                    f"is {what}, not a safetensors model file", "give an anynet model file"
                )
    if len(raw) < 8:
        raise r.fail(f"is {len(raw)} bytes long, too short for a safetensors file (truncated?)")
    if size == 0 or size > _MAX_HEADER_BYTES:
        raise r.fail(
            "is not a safetensors file (its first 8 bytes are not a plausible header length)",
            "give an anynet model file",
        )
    if 8 + size > len(raw):
        raise r.fail(
            f"is truncated: its header should be {size} bytes, but only {len(raw) - 8} "
            "bytes follow the length field"
        )
    try:
        text = raw[8 : 8 + size].decode("utf-8")
        if not text.startswith("{"):
            raise ValueError("the header does not start with '{'")
        header = _strict_json(text)
    except (ValueError, RecursionError) as exc:
        raise r.fail(f"has a corrupt safetensors header (not valid JSON: {exc})") from None
    if not isinstance(header, dict):
        raise r.fail("has a corrupt safetensors header (not a JSON object)")
    meta = header.pop("__metadata__", None)
    for name, entry in header.items():
        # A damaged "__metadata__" key would otherwise pass for a tensor's name.
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise r.fail(f"has a corrupt safetensors header (entry {_short(name)})")
    if meta is None:
        raise r.fail(
            "is a safetensors file that anynet did not write (it has no metadata)",
            "anynet loads only files written by anynet.save or anynet's checkpoints",
        )
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise r.fail("has corrupt safetensors metadata (not a mapping of strings)")
    return header, meta, 8 + size


def _check_format(r: _Reader, meta: Mapping[str, str]) -> None:
    fmt = meta.get("format")
    if fmt is None:
        raise r.fail(
            "has no 'format' metadata entry: anynet did not write it, or its header is damaged",
            "anynet loads only files written by anynet.save or anynet's checkpoints",
        )
    if fmt != _FORMAT:
        raise r.fail(
            f"is a safetensors file that anynet did not write (format {fmt!r}, not 'anynet')",
            "anynet loads only files written by anynet.save or anynet's checkpoints",
        )
    version = meta.get("format_version", "")
    if not (version.isascii() and version.isdigit()):
        raise r.fail(f"has an invalid format version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise r.fail(
            f"was written by a newer anynet (file format version {int(version)}; this anynet "
            f"reads up to version {FORMAT_VERSION})",
            "upgrade anynet (pip install -U anynet) to load it",
        )
    if int(version) < 1:
        raise r.fail(f"has an invalid format version {version!r}")
    for key in (*_META_KEYS, _DIGEST_KEY):
        if key not in meta:
            raise r.fail(f"lacks the {key!r} metadata entry")


def _locate_tensors(
    r: _Reader, header: Mapping[str, Any], data_len: int
) -> dict[str, tuple[str, list[int], int, int]]:
    """Validate every tensor entry: ``name -> (dtype code, shape, begin, end)``.

    The byte ranges must tile the data exactly: no gaps, no overlaps, nothing before, after or
    beyond. That is what makes a truncated file, or one with bytes appended, fail here.
    """
    entries = {}
    for name, entry in header.items():
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _DTYPES:
            raise r.fail(
                f"tensor {name!r} has dtype {code!r}; anynet files hold only {sorted(_DTYPES)}"
            )
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise r.fail(f"tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise r.fail(f"tensor {name!r} has invalid data offsets {offsets!r}")
        begin, end = offsets
        nbytes = math.prod(shape) * _DTYPES[code].itemsize
        if end - begin != nbytes:
            raise r.fail(
                f"tensor {name!r} of shape {tuple(shape)} and dtype {code} needs {nbytes} bytes "
                f"but its offsets span {end - begin}"
            )
        entries[name] = (code, shape, begin, end)
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: e[1][2:]):
        if begin != position:
            raise r.fail(
                f"has corrupt tensor offsets (tensor {name!r} starts at byte {begin} of the "
                f"data, expected {position})"
            )
        position = end
    if position > data_len:
        raise r.fail(
            f"is truncated: its tensors need {position} bytes of data, but only {data_len} "
            "are there"
        )
    if position < data_len:
        raise r.fail(
            f"has {data_len - position} unexpected bytes after its last tensor (appended "
            "data, or a file glued to another)"
        )
    return entries


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`write_arrays`, verifying everything.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        Writable host arrays in native byte order.
    metadata : dict
        The metadata given to :func:`write_arrays`, decoded from JSON.

    Raises
    ------
    ModelFileError
        For every problem: no such file, a directory, empty, not safetensors (a pickle, a zip,
        plain text), truncated, bytes appended, a corrupt header, not written by anynet, a newer
        format version, a digest mismatch (modified or corrupted after it was written), or
        metadata that is not JSON.
    """
    r = _Reader(Path(path))
    raw = _read_bytes(r)
    header, meta, start = _parse_header(r, raw)
    _check_format(r, meta)
    entries = _locate_tensors(r, header, len(raw) - start)
    view = memoryview(raw)[start:]
    digest = _digest(meta, ((n, c, s, view[b:e]) for n, (c, s, b, e) in entries.items()))
    if digest != meta[_DIGEST_KEY]:
        raise r.fail(
            "the file was modified or corrupted after it was written (its SHA-256 digest "
            "does not match its contents)"
        )
    try:
        metadata = _strict_json(meta["anynet"])
    except (ValueError, RecursionError) as exc:
        raise r.fail(f"its anynet metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise r.fail("its anynet metadata is not a JSON object")
    arrays = {}
    for name, (code, shape, begin, end) in entries.items():
        dtype = _DTYPES[code]
        if code == "BOOL" and bytes(view[begin:end]).translate(None, b"\x00\x01"):
            raise r.fail(f"tensor {name!r} holds booleans other than 0 and 1")
        host = np.frombuffer(view[begin:end], dtype=dtype).reshape(shape)
        arrays[name] = host.astype(dtype.newbyteorder("="), copy=True)
    return arrays, metadata


# --------------------------------------------------------------------------------------------
# Nested values (optimizer state, RNG state, history, user metadata) <-> JSON + tensors
#
# Every JSON object in an encoded tree is a tag with exactly one key, so a user's dict can never
# be mistaken for a tag: {"$dict": {...}}, {"$tuple": [...]}, {"$array": "tensor name"},
# {"$float": "nan"}, {"$state": ["AdamState", {field: value}]}. Lists, strings, ints, finite
# floats, booleans and null are plain JSON.

#: The optimizer-state classes a file may name: looked up here, never imported by name.
STATE_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (optim.AdamState, optim.EmptyState, optim.LearningRateState, optim.TraceState)
}

_FLOAT_TAGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _Encoder:
    """Turns a nested value into JSON, collecting its arrays as named host tensors."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def encode(self, value: Any, name: str, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError(f"{name!r} is nested more than {_MAX_DEPTH} levels deep")
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            value = value.item()  # NumPy scalars become the Python number they stand for
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if _is_array(value):
            if name in self.arrays:
                raise ValueError(f"two arrays would be stored under the same name {name!r}")
            self.arrays[name] = _host_tensor(name, value)
            return {"$array": name}
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            cls = type(value)
            if STATE_CLASSES.get(cls.__name__) is not cls:
                raise ValueError(
                    f"{name!r} is a {cls.__module__}.{cls.__qualname__}; files hold only "
                    f"anynet's optimizer states {sorted(STATE_CLASSES)}"
                )
            fields = {
                f: self.encode(getattr(value, f), f"{name}/{f}", depth + 1) for f in cls._fields
            }
            return {"$state": [cls.__name__, fields]}
        if isinstance(value, tuple | list):
            items = [self.encode(v, f"{name}/{i}", depth + 1) for i, v in enumerate(value)]
            return {"$tuple": items} if isinstance(value, tuple) else items
        if isinstance(value, Mapping):
            if not all(isinstance(k, str) for k in value):
                raise ValueError(f"{name!r} has a non-string key; files hold only string keys")
            return {
                "$dict": {k: self.encode(v, f"{name}/{k}", depth + 1) for k, v in value.items()}
            }
        raise ValueError(f"{name!r} is a {type(value).__name__}, which anynet files cannot hold")


class _Decoder:
    """The inverse of :class:`_Encoder`; every tensor may be claimed once."""

    def __init__(self, r: _Reader, arrays: Mapping[str, np.ndarray]):
        self.r = r
        self.arrays = arrays
        self.claimed: set[str] = set()

    def claim(self, name: Any) -> np.ndarray:
        if not isinstance(name, str) or name not in self.arrays:
            raise self.r.fail(f"its metadata refers to a tensor {name!r} the file does not hold")
        if name in self.claimed:
            raise self.r.fail(f"its metadata refers to tensor {name!r} twice")
        self.claimed.add(name)
        return self.arrays[name]

    def decode(self, node: Any, to_array: Callable[[np.ndarray], Any], depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise self.r.fail(f"its metadata is nested more than {_MAX_DEPTH} levels deep")
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, list):
            return [self.decode(v, to_array, depth + 1) for v in node]
        if not isinstance(node, dict) or len(node) != 1:
            raise self.r.fail(f"its metadata holds an unknown value {_short(node)}")
        ((tag, body),) = node.items()
        if tag == "$array":
            return to_array(self.claim(body))
        if tag == "$float" and isinstance(body, str) and body in _FLOAT_TAGS:
            return _FLOAT_TAGS[body]
        if tag == "$tuple" and isinstance(body, list):
            return tuple(self.decode(v, to_array, depth + 1) for v in body)
        if tag == "$dict" and isinstance(body, dict):
            return {k: self.decode(v, to_array, depth + 1) for k, v in body.items()}
        if tag == "$state" and isinstance(body, list) and len(body) == 2:
            cls_name, fields = body
            cls = STATE_CLASSES.get(cls_name) if isinstance(cls_name, str) else None
            if cls is None:
                raise self.r.fail(
                    f"its metadata names the optimizer state {_short(cls_name)}, which is not "
                    f"one of anynet's {sorted(STATE_CLASSES)}"
                )
            if not isinstance(fields, dict) or set(fields) != set(cls._fields):
                raise self.r.fail(f"its metadata has the wrong fields for {cls_name}")
            values = {f: self.decode(fields[f], to_array, depth + 1) for f in cls._fields}
            for field, value in values.items():
                # anynet's states hold a step count and dicts of arrays, nothing else.
                ok = (
                    (_is_int(value) and value >= 0)
                    if field == "count"
                    else isinstance(value, dict) and all(map(_is_array, value.values()))
                )
                if not ok:
                    raise self.r.fail(f"its {cls_name}.{field} is {_short(value)}")
            return cls(**values)
        raise self.r.fail(f"its metadata holds an unknown value {_short(node)}")

    def check_all_claimed(self, also: Iterable[str] = ()) -> None:
        left = set(self.arrays) - self.claimed - set(also)
        if left:
            raise self.r.fail(f"holds tensors its metadata does not account for: {sorted(left)}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require(r: _Reader, meta: Mapping[str, Any], kind: str, keys: Iterable[str]) -> None:
    found = meta.get("kind")
    if found != kind:
        hint = {
            "network": "load it with anynet.io.load_network (or anynet.load)",
            "checkpoint": "load it with anynet.io.load_checkpoint",
        }
        raise r.fail(
            f"is not a {kind} file (its kind is {_short(found)})",
            hint.get(found, "give a file of the right kind") if isinstance(found, str) else "",
        )
    for key in keys:
        if key not in meta:
            raise r.fail(f"its metadata lacks the {key!r} entry")


# --------------------------------------------------------------------------------------------
# Networks


def _anynet_layer(name: Any) -> bool:
    """Is ``name`` one of anynet's own public layer classes? (LAYERS also registers any
    subclass a user defines, and private bases such as ``_Activation``.)"""
    cls = LAYERS.get(name) if isinstance(name, str) else None
    return (
        cls is not None
        and not name.startswith("_")
        and name != "Layer"
        and cls.__module__.startswith("anynet.")
    )


def _check_architecture(name: Any, config: Any, depth: int = 0) -> str | None:
    """Why ``(name, config)`` is not an anynet architecture, or None if it is one."""
    if depth > _MAX_DEPTH:
        return f"layers nested more than {_MAX_DEPTH} deep"
    if not _anynet_layer(name):
        return f"the layer type {_short(name)}, which is not one of anynet's layers"
    if not isinstance(config, dict):
        return f"a {name} with a config that is not a JSON object"
    if name == "Sequential":
        layers = config.get("layers")
        if set(config) != {"layers"} or not isinstance(layers, list):
            return "a Sequential whose config is not {'layers': [...]}"
        for item in layers:
            if not isinstance(item, list) or len(item) != 2:
                return f"a Sequential item {_short(item)} that is not [name, config]"
            why = _check_architecture(item[0], item[1], depth + 1)
            if why:
                return why
    return None


def _architecture(model: Layer) -> dict[str, Any]:
    name = type(model).__name__
    try:
        config = json.loads(json.dumps(model.get_config(), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}.get_config() is not JSON-serialisable: {exc}") from None
    why = _check_architecture(name, config)
    if why:
        raise ValueError(
            f"cannot save this model: it has {why}; anynet files hold only "
            f"{sorted(n for n in LAYERS if _anynet_layer(n))}"
        )
    # Refuse to write a file that would not load back as the same model.
    if layer_from_config(name, config) != model:
        raise ValueError(f"{name}.get_config() does not rebuild the same model; cannot save it")
    return {"class": name, "config": config}


def save_network(
    path: str | os.PathLike,
    model: Layer,
    params: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save a network: its architecture, its parameters and optional metadata.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; written atomically (see :func:`write_arrays`).
    model : Layer
        An anynet layer, usually a :class:`~anynet.nn.Sequential`, built only from anynet's own
        layer classes.
    params : mapping of str to array
        Exactly the parameters of ``model.param_shapes()``, on any backend.
    metadata : mapping of str to value, optional
        Anything else to keep (hyper-parameters, class labels): strings, numbers, booleans,
        None, lists, tuples, dicts with string keys, and arrays (given back as NumPy arrays).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        A layer that is not anynet's, parameters that do not fit the model, or a metadata value
        a file cannot hold.

    Examples
    --------
    >>> import anynet, os, tempfile
    >>> from anynet.nn import Dense, ReLU, Sequential
    >>> from anynet.io import save_network, load_network
    >>> be = anynet.get_backend("numpy")
    >>> model = Sequential(Dense(4, 3), ReLU(), Dense(3, 2))
    >>> params = model.init_params(rng=be.host_generator(0), backend=be)
    >>> path = save_network(os.path.join(tempfile.mkdtemp(), "m.safetensors"), model, params)
    >>> model2, params2, meta = load_network(path, backend="numpy")
    >>> model2 == model, sorted(params2), meta
    (True, ['0.W', '0.b', '2.W', '2.b'], {})
    """
    architecture = _architecture(model)
    shapes = model.param_shapes()
    arrays: dict[str, np.ndarray] = {}
    for name, x in params.items():
        if name not in shapes:
            raise ValueError(f"parameter {name!r} is not one of the model's {sorted(shapes)}")
        arrays[name] = _host_tensor(name, x)
        if arrays[name].shape != tuple(shapes[name]):
            raise ValueError(
                f"parameter {name!r} has shape {arrays[name].shape}; the model needs "
                f"{tuple(shapes[name])}"
            )
    missing = sorted(set(shapes) - set(arrays))
    if missing:
        raise ValueError(f"parameters {missing} are missing")
    user = _Encoder(arrays).encode(dict(metadata or {}), "metadata")
    meta = {
        "kind": "network",
        "architecture": architecture,
        "params": sorted(shapes),
        "metadata": user,
    }
    return write_arrays(path, arrays, meta)


def load_network(
    path: str | os.PathLike, *, backend: str | Backend | None = None, dtype: Any = None
) -> tuple[Layer, dict[str, Any], dict[str, Any]]:
    """Load a network saved by :func:`save_network`, on any backend.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    backend : str or Backend, optional
        Where to put the parameters (see :func:`anynet.get_backend`); it need not be the backend
        the network was trained on.
    dtype : str or dtype, optional
        Cast the parameters to this floating dtype (on the host, before the copy); by default
        they keep the dtype they were saved with.

    Returns
    -------
    model : Layer
        Rebuilt with :func:`anynet.nn.layers.layer_from_config`, from anynet's own layers only.
    params : dict of str to array
        On ``backend``.
    metadata : dict
        The ``metadata`` given to :func:`save_network` (arrays as NumPy arrays).

    Raises
    ------
    ModelFileError
        Anything wrong with the file (see :func:`read_arrays`), an architecture naming anything
        but anynet's layers, or parameters missing, unexpected or of the wrong shape.
    """
    be = get_backend(backend)
    r = _Reader(Path(path))
    arrays, meta = read_arrays(path)
    _require(r, meta, "network", ("architecture", "params", "metadata"))
    arch = meta["architecture"]
    if not isinstance(arch, dict) or set(arch) != {"class", "config"}:
        raise r.fail("its architecture entry is not {'class': ..., 'config': ...}")
    why = _check_architecture(arch["class"], arch["config"])
    if why:
        raise r.fail(
            f"its architecture names {why}",
            "anynet builds only its own layers from a file; this file is not one anynet wrote "
            "or was edited",
        )
    try:
        model = layer_from_config(arch["class"], arch["config"])
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise r.fail(f"its architecture is invalid ({exc})") from None

    names = meta["params"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise r.fail("its list of parameters is not a list of names")
    decoder = _Decoder(r, arrays)
    user = decoder.decode(meta["metadata"], lambda host: host)
    if not isinstance(user, dict):
        raise r.fail("its user metadata is not a mapping")
    decoder.check_all_claimed(also=names)
    if set(names) & decoder.claimed:
        raise r.fail("a tensor is listed both as a parameter and as metadata")
    shapes = {k: tuple(v) for k, v in model.param_shapes().items()}
    missing = sorted(set(shapes) - set(names))
    if missing:
        raise r.fail(f"parameters {missing}, which the architecture needs, are missing")
    extra = sorted(set(names) - set(shapes))
    if extra:
        raise r.fail(f"holds parameters {extra}, which the architecture {arch['class']} lacks")
    params = {}
    for name in sorted(shapes):
        if name not in arrays:
            raise r.fail(f"its metadata lists parameter {name!r}, but the file has no such tensor")
        host = arrays[name]
        if host.shape != shapes[name]:
            raise r.fail(
                f"parameter {name!r} has shape {host.shape} in the file, but the architecture "
                f"needs {shapes[name]}"
            )
        if host.dtype.kind != "f":
            raise r.fail(f"parameter {name!r} has dtype {host.dtype}, not a floating dtype")
        params[name] = be.asarray(host, dtype=dtype)
    return model, params, user


# --------------------------------------------------------------------------------------------
# Checkpoints


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns: everything a killed run needs to continue."""

    #: Parameters, on the backend asked for.
    params: dict[str, Any]
    #: Optimizer state in its exact structure (NamedTuples, tuples), arrays on the backend.
    opt_state: Any
    #: Epochs completed.
    epoch: int
    #: Optimizer steps taken.
    step: int
    #: :meth:`anynet.backends.Generator.get_state` output, ready for ``set_state`` (PyTorch's
    #: state comes back as a NumPy uint8 array, NumPy's as its dict); None if none was saved.
    rng_state: Any
    #: Loss and metric history: name -> list of floats.
    history: dict[str, list[float]]
    #: Anything else given to :func:`save_checkpoint` (arrays as NumPy arrays).
    extra: Any


def save_checkpoint(
    path: str | os.PathLike,
    *,
    params: Mapping[str, Any],
    opt_state: Any,
    epoch: int,
    step: int,
    rng_state: Any = None,
    history: Mapping[str, Iterable[float]] | None = None,
    extra: Any = None,
) -> Path:
    """Save a training run's state atomically, so that a killed run can resume exactly.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; written atomically (see :func:`write_arrays`), so a crash during the
        write leaves the previous checkpoint intact.
    params : mapping of str to array
        The parameters, on any backend.
    opt_state : optimizer state
        As :mod:`anynet.nn.optim` makes it: tuples of :data:`STATE_CLASSES` NamedTuples holding
        Python numbers and dicts of arrays.
    epoch, step : int
        Epochs completed and optimizer steps taken.
    rng_state : optional
        :meth:`anynet.backends.Generator.get_state` output (a dict of ints for NumPy and
        array-api-strict, a uint8 tensor for PyTorch).
    history : mapping of str to sequence of float, optional
        The loss history (NaN and infinities are kept).
    extra : optional
        Anything else: JSON-like values, tuples and arrays.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        A value a file cannot hold, such as a state class that is not anynet's.
    """
    for name, value in (("epoch", epoch), ("step", step)):
        if not (_is_int(value) or isinstance(value, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    history = {k: [float(v) for v in vs] for k, vs in (history or {}).items()}
    arrays: dict[str, np.ndarray] = {}
    enc = _Encoder(arrays)
    meta = {
        "kind": "checkpoint",
        "epoch": int(epoch),
        "step": int(step),
        "params": enc.encode(dict(params), "params"),
        "opt_state": enc.encode(opt_state, "opt"),
        "rng_state": enc.encode(rng_state, "rng"),
        "history": enc.encode(history, "history"),
        "extra": enc.encode(extra, "extra"),
    }
    return write_arrays(path, arrays, meta)


def load_checkpoint(path: str | os.PathLike, *, backend: str | Backend | None = None) -> Checkpoint:
    """Load a checkpoint saved by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    backend : str or Backend, optional
        Where to put the parameters and the optimizer state's arrays, with the dtypes they were
        saved with.

    Returns
    -------
    Checkpoint
        ``params``, ``opt_state`` (the same NamedTuple structure), ``epoch``, ``step``,
        ``rng_state``, ``history`` and ``extra``.

    Raises
    ------
    ModelFileError
        Anything wrong with the file (see :func:`read_arrays`), a state class that is not one of
        anynet's, or a structure that does not decode.
    """
    be = get_backend(backend)
    r = _Reader(Path(path))
    arrays, meta = read_arrays(path)
    keys = ("epoch", "step", "params", "opt_state", "rng_state", "history", "extra")
    _require(r, meta, "checkpoint", keys)
    for key in ("epoch", "step"):
        if not _is_int(meta[key]) or meta[key] < 0:
            raise r.fail(f"its {key} {_short(meta[key])} is not an integer >= 0")
    dec = _Decoder(r, arrays)
    on_device = be.asarray
    params = dec.decode(meta["params"], on_device)
    if not isinstance(params, dict) or not all(_is_array(p) for p in params.values()):
        raise r.fail("its parameters are not a mapping of names to arrays")
    opt_state = dec.decode(meta["opt_state"], on_device)
    # Host arrays: Generator.set_state takes them on every backend.
    rng_state = dec.decode(meta["rng_state"], lambda host: host)
    history = dec.decode(meta["history"], lambda host: host)
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise r.fail("its history is not a mapping of names to lists")
    extra = dec.decode(meta["extra"], lambda host: host)
    dec.check_all_claimed()
    return Checkpoint(params, opt_state, meta["epoch"], meta["step"], rng_state, history, extra)
