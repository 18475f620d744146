"""Opening and inflating a file that is trusted for nothing: regular files only, and gzip
inflated in bounded steps, refused the moment it yields more than it may.

:mod:`anynet.datasets.idx` reads IDX files with these; every refusal is an
:class:`~anynet.errors.IDXFormatError` naming the file.
"""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from anynet.errors import IDXFormatError

__all__ = [
    "CHUNK",
    "DEFLATE_MAX_RATIO",
    "GZIP_MAGIC",
    "MAX_IDX_BYTES",
    "SLACK",
    "Gunzip",
    "decompress_gzip",
    "open_regular",
]

#: Default cap on the size of an IDX payload (decompressed): 2 GiB, ~40x the largest
#: Fashion-MNIST file. It stops a hostile header or a gzip bomb from exhausting memory.
MAX_IDX_BYTES = 2**31

GZIP_MAGIC = b"\x1f\x8b"
# Compressed bytes read at a time.
CHUNK = 1 << 16
# Inflated bytes asked for at a time: bounds the transient copy beside the output (one 64 KiB
# chunk of a highly compressed stream can inflate to ~64 MiB).
STEP = 1 << 20
# Deflate's best ratio: a 258-byte match costs at least 2 bits. A header declaring more than
# this many times the gzip file's size describes data the file cannot hold.
DEFLATE_MAX_RATIO = 1032
# Inflated bytes kept beyond what a header declares, to report how many trailing bytes there
# are; a file with more is refused as a gzip bomb before they are inflated.
SLACK = 1 << 16

# What a path that is not a regular file is, by the type bits of its mode.
SPECIAL_FILES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_regular(mode: int) -> str | None:
    """What a file of this mode is, unless it is a regular file: then None."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in SPECIAL_FILES if test(mode)), "not a regular file")


def open_regular(path: Path) -> tuple[BinaryIO, int]:
    """``path`` open for reading, and its size; IDXFormatError unless it is a regular file.

    The mode is checked before the open, which must not block on a FIFO, and again on the open
    file, which is what is then read. A missing or unreadable file stays an OSError: callers
    (the dataset search) tell those apart from bad data.
    """
    kind = not_regular(os.stat(path).st_mode)
    if kind is None:
        # O_NONBLOCK: a FIFO swapped in after the check must not block the open either.
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0))
        info = os.fstat(fd)
        kind = not_regular(info.st_mode)
        if kind is not None:
            os.close(fd)
    if kind is not None:
        raise IDXFormatError(
            f"{path}: is {kind}, not a regular file; give the path of an IDX file (such as "
            "train-images-idx3-ubyte.gz)"
        )
    return os.fdopen(fd, "rb"), info.st_size


class Gunzip:
    """One gzip member, inflated from ``chunks`` of compressed bytes in bounded steps."""

    def __init__(self, chunks: Iterable[bytes], name: str):
        self.chunks: Iterator[bytes] = iter(chunks)
        self.name = name
        # zlib in gzip mode (wbits=31) checks the header, the deflate stream and the trailer's
        # CRC32 and length, and, unlike gzip.decompress, stops after one member, so a second
        # member glued on shows up in unused_data instead of being silently concatenated.
        self.decoder = zlib.decompressobj(wbits=31)
        self.pending = b""
        self.exhausted = False
        self.out = bytearray()

    def _inflate(self, limit: int) -> bytes | None:
        """Up to ``limit`` more inflated bytes; None once the input is spent and yields none."""
        if not self.pending and not self.exhausted:
            self.pending = next(self.chunks, b"")
            self.exhausted = not self.pending
        try:
            piece = self.decoder.decompress(self.pending, limit)
        except zlib.error as exc:
            reason = zlib_reason(exc)
            raise IDXFormatError(f"{self.name}: corrupt gzip data ({reason})") from None
        self.pending = self.decoder.unconsumed_tail
        if self.exhausted and not piece:
            return None  # the input ended inside the member: finish() says so
        return piece

    def fill(self, n: int) -> None:
        """Inflate until ``out`` holds ``n`` bytes (never more) or the member or input ends."""
        while len(self.out) < n and not self.decoder.eof:
            piece = self._inflate(min(n - len(self.out), STEP))
            if piece is None:
                return
            self.out += piece

    def readinto(self, view: memoryview) -> int:
        """Move ``out`` into ``view``, then inflate straight into the rest of it until it is
        full or the member or input ends; return how many bytes ``view`` got."""
        done = min(len(self.out), len(view))
        view[:done] = self.out[:done]
        del self.out[:done]
        while done < len(view) and not self.decoder.eof:
            piece = self._inflate(min(len(view) - done, STEP))
            if piece is None:
                break
            view[done : done + len(piece)] = piece
            done += len(piece)
        return done

    def take(self, n: int) -> None:
        """``fill(n)``; if the member ends sooner, check that it ended well: a damaged gzip
        file is reported as such, before the short IDX data it holds."""
        self.fill(n)
        if len(self.out) < n:
            self.finish()

    def probe(self, n: int) -> None:
        """Inflate up to ``n`` more bytes and drop them: only to see whether the stream there
        is damaged (which raises its gzip error)."""
        keep = len(self.out)
        try:
            self.take(keep + n)
        finally:
            del self.out[keep:]

    def finish(self) -> None:
        """Refuse a member cut short, or followed by anything (once ``fill`` stopped short)."""
        if not self.decoder.eof:
            raise IDXFormatError(
                f"{self.name}: truncated gzip file (the compressed stream ends before its end "
                "marker and checksum); the file is incomplete: delete it and fetch it again"
            )
        extra = self.decoder.unused_data
        first, count = extra[:2], len(extra)
        for chunk in self.chunks:  # count what follows without holding it
            first += chunk[: 2 - len(first)]
            count += len(chunk)
        if count:
            what = "a second gzip member" if first == GZIP_MAGIC else "trailing bytes"
            raise IDXFormatError(
                f"{self.name}: {what} after the gzip stream ({count} bytes); an IDX file is "
                "one gzip member"
            )


def decompress_gzip(raw: bytes, *, name: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """Decompress exactly one gzip member, refusing every kind of damage.

    Parameters
    ----------
    raw : bytes
        The compressed bytes.
    name : str
        What to call the data in error messages (usually the file's path).
    max_bytes : int
        Refuse to produce more than this many bytes (a gzip bomb guard): decompression stops
        as soon as the output passes it.

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
    if raw[:2] != GZIP_MAGIC:
        raise IDXFormatError(f"{name}: not a gzip file (starts with {raw[:2].hex() or 'nothing'})")
    view = memoryview(raw)
    gunzip = Gunzip((view[i : i + CHUNK] for i in range(0, len(view), CHUNK)), name)
    gunzip.fill(max_bytes + 1)
    if len(gunzip.out) > max_bytes:
        raise IDXFormatError(
            f"{name}: decompresses to more than {max_bytes} bytes (the size cap); "
            "refusing it as a possible gzip bomb"
        )
    gunzip.finish()
    return bytes(gunzip.out)


def zlib_reason(exc: zlib.error) -> str:
    text = str(exc)
    if "incorrect data check" in text:
        return f"CRC32 mismatch: the data is damaged; zlib: {text}"
    if "incorrect length check" in text:
        return f"length mismatch in the gzip trailer; zlib: {text}"
    return f"zlib: {text}"
