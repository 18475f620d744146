"""Writing a file so that a kill leaves the old one or the new one, never half of either,
and removing what a killed write leaves behind.

A write goes to a temporary file beside its destination, is flushed to disk, and is renamed
into place (atomic on POSIX and Windows); the folder is synced so the rename survives a power
cut. A temporary name is short whatever the destination's (a legal 255-byte name must stay
writable) and names its writer, so that an orphan can be told from a write in flight.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from anynet.errors import ModelFileError

__all__ = ["TEMPORARY_FILES", "atomic_write", "remove_orphans"]

#: The glob pattern of the temporary files :func:`write_arrays` writes next to a destination
#: before renaming one into place: ``.anynet-``, 8 hexadecimal digits naming the host, the
#: writer's process id, 8 random hexadecimal digits, then ``.tmp``, joined by ``-``
#: (``.anynet-1f2e3d4c-4242-9a8b7c6d.tmp``; at most 40 bytes, whatever the destination's name).
#: One found where no write is in flight is an orphan of a killed write, safe to delete;
#: :func:`remove_orphans` deletes those whose writer is gone, leaving live writes alone.
TEMPORARY_FILES = ".anynet-*.tmp"
_TEMPORARY_PREFIX, _TEMPORARY_SUFFIX = TEMPORARY_FILES.split("*")


def atomic_write(path: Path, data: bytes) -> None:
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
    tmp = directory / _temporary_name(os.getpid(), secrets.token_hex(4))
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


def _host_tag() -> str:
    """8 hexadecimal digits naming this host, for temporary names: a process id means
    something only on the host that gave it."""
    node = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
    return hashlib.sha256(node.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _temporary_name(pid: int, token: str) -> str:
    return f"{_TEMPORARY_PREFIX}{_host_tag()}-{pid}-{token}{_TEMPORARY_SUFFIX}"


def _writer_pid(name: str) -> int | None:
    """The process id a temporary name of this host carries, or None (another host's, an
    older anynet's, or not one of anynet's names)."""
    if not (name.startswith(_TEMPORARY_PREFIX) and name.endswith(_TEMPORARY_SUFFIX)):
        return None
    parts = name[len(_TEMPORARY_PREFIX) : -len(_TEMPORARY_SUFFIX)].split("-")
    if len(parts) != 3 or parts[0] != _host_tag():
        return None
    pid = parts[1]
    # Digits only and > 0: os.kill(0, 0) would ask about the whole process group.
    if not (pid.isascii() and pid.isdigit() and len(pid) <= 10) or int(pid) <= 0:
        return None
    return int(pid)


def _is_running(pid: int) -> bool:
    """Whether a process of this id exists on this host (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as someone else's
        return True
    return True


def remove_orphans(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` that a killed :func:`write_arrays` left behind.

    A temporary file is an orphan when the process that was writing it no longer exists: its
    name (see :data:`TEMPORARY_FILES`) carries the writer's process id and its host. A file
    another process on this host is still writing is left alone, and so is one written from
    another host (a shared folder: its process cannot be checked from here), one of an older
    anynet (its name carries no process id), and anything that is not a plain file. A process
    id the system has since given to another process keeps its orphan until that one ends.

    On Windows nothing is removed (``os.kill`` there ends a process instead of probing it).

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to clean; a missing one has nothing to clean.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    if os.name == "nt":
        return []
    removed = []
    try:
        candidates = sorted(Path(folder).glob(TEMPORARY_FILES))
    except OSError:
        return []
    for path in candidates:
        pid = _writer_pid(path.name)
        if pid is None or pid == os.getpid() or _is_running(pid):
            continue
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            path.unlink()
        except OSError:  # gone already, or not ours to delete
            continue
        removed.append(path)
    return removed


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
