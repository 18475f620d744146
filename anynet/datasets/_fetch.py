"""Download one file from an ordered list of mirrors, keeping it only once verified.

The download goes through pooch's HTTP downloader (requests, with a connect/read timeout)
into a temporary file next to the destination. Only when the caller's ``verify`` accepts the
temporary file is it renamed to its final name (an atomic ``os.replace``), so an interrupted,
truncated or corrupt download never sits at the final path. The temporary file's name is short
whatever the destination's (``.anynet-`` then 8 random characters then ``.part``): one grown
from a legal 255-byte name would not be legal.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DownloadFailed", "download_verified"]


class DownloadFailed(Exception):
    """Every mirror failed; ``attempts`` holds one ``(url, reason)`` per mirror tried.

    ``rejected`` lists the URLs whose download completed but which ``verify`` refused.
    Private to anynet.datasets, which turns it into a user-facing error.
    """

    def __init__(self, attempts: list[tuple[str, str]], rejected: list[str] | None = None):
        super().__init__("; ".join(f"{url}: {why}" for url, why in attempts))
        self.attempts = attempts
        self.rejected = rejected or []


class _BoundedWriter:
    """A file wrapper that aborts a download that runs too long or grows too large.

    requests' timeout bounds each wait for bytes, not the whole transfer: a server that
    trickles one byte per second would never trip it. This wrapper bounds both.
    """

    def __init__(self, file: Any, deadline: float, max_bytes: int):
        self._file = file
        self._deadline = deadline
        self._max_bytes = max_bytes
        self.written = 0

    def write(self, chunk: bytes) -> int:
        self.written += len(chunk)
        if self.written > self._max_bytes:
            raise _Abort(f"larger than {self._max_bytes} bytes; refusing it")
        if time.monotonic() > self._deadline:
            raise _Abort("took longer than the total time allowed")
        return self._file.write(chunk)

    def flush(self) -> None:
        self._file.flush()


class _Abort(Exception):
    pass


def _describe(exc: BaseException) -> str:
    """A one-line reason for a failed download attempt."""
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    if "timed out" in text.lower() or "timeout" in name.lower():
        return f"timed out ({name})"
    return f"{name}: {text}"[:300]


def download_verified(
    urls: Sequence[str],
    dest: str | os.PathLike,
    verify: Callable[[Path], None],
    *,
    timeout: float = 30.0,
    total_timeout: float = 600.0,
    max_bytes: int = 2**31,
) -> Path:
    """Download ``dest`` from the first mirror that gives a file ``verify`` accepts.

    Parameters
    ----------
    urls : sequence of str
        Full URLs of the same file, tried in order.
    dest : path
        The final path. Its directory is created if needed.
    verify : callable
        Called with the temporary file's path; raises any exception to reject the file
        (its message becomes the reason reported for that mirror).
    timeout : float
        Seconds to wait for a connection and between received bytes.
    total_timeout : float
        Seconds a single mirror may take for the whole transfer.
    max_bytes : int
        Refuse a response longer than this.

    Returns
    -------
    pathlib.Path
        ``dest``, now holding a verified file.

    Raises
    ------
    DownloadFailed
        No mirror gave a verified file; every attempt and its reason are attached.
    """
    import pooch  # a runtime dependency; imported lazily as nothing else needs it

    dest = Path(dest)
    attempts: list[tuple[str, str]] = []
    rejected: list[str] = []
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadFailed([(str(dest.parent), f"cannot create the directory: {exc}")]) from None
    downloader = pooch.HTTPDownloader(progressbar=False, chunk_size=65536, timeout=timeout)
    for url in urls:
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=".anynet-", suffix=".part", dir=dest.parent)
        except OSError as exc:
            attempts.append((url, f"cannot write in {dest.parent}: {exc}"))
            break
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as file:
                writer = _BoundedWriter(file, time.monotonic() + total_timeout, max_bytes)
                downloader(url, writer, None)
        except Exception as exc:  # any failure of this mirror: note why, try the next
            attempts.append((url, _describe(exc)))
            tmp.unlink(missing_ok=True)
            continue
        try:
            verify(tmp)
            os.replace(tmp, dest)
            return dest
        except Exception as exc:
            attempts.append((url, str(exc)))
            rejected.append(url)
        finally:
            # Never leave a partial or unverified file behind (after a successful
            # os.replace the temporary name no longer exists).
            tmp.unlink(missing_ok=True)
    raise DownloadFailed(attempts, rejected)
