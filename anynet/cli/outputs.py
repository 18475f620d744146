"""The paths a run will write (``--out``, ``--plots``, ``--checkpoint-dir``), checked before
its work starts: a run that could not write them fails at once, not after training with the
trained model lost."""

from __future__ import annotations

import os
from pathlib import Path

from anynet.errors import AnynetError


def check_output(flag: str, path: Path, *, folder: bool = False) -> None:
    """Refuse ``path``, the value of ``flag``, if the run could not write it (a file, or a
    folder with ``folder``) once its work is done."""
    try:
        (_check_out_folder if folder else _check_out_file)(flag, path)
    except OSError as exc:  # even looking failed: a folder on the way that we may not enter
        raise AnynetError(f"{flag} {path}: {exc.strerror or exc}") from None


def _check_out_file(flag: str, path: Path) -> None:
    """Refuse a file path that could not be written once the work is done.

    The folder must exist: it is not created, as ``torch.save`` does not create it, because a
    typo in it would leave the model somewhere the user does not look.
    """
    _check_name_lengths(flag, path)
    if path.is_dir():
        raise AnynetError(
            f"{flag} {path} is a folder; give a file name inside it, such as "
            f"{path / 'model.safetensors'}"
        )
    if path.exists() and not path.is_file():
        # Writing replaces it: a FIFO or, for root, /dev/null would be swapped for a file.
        raise AnynetError(f"{flag} {path} exists and is not a regular file; give a file name")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise AnynetError(f"{flag} {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise AnynetError(f"{flag} {path}: the folder {folder} does not exist; create it first")
    _check_can_write_in(folder, f"{flag} {path}")


def _check_out_folder(flag: str, path: Path) -> None:
    """Refuse a folder the run could not write into. A missing one is fine (the run creates
    it, parents too), if it can be: nothing is created here, for a run that fails first."""
    _check_name_lengths(flag, path)
    if path.exists() and not path.is_dir():
        raise AnynetError(f"{flag} {path} is a file, not a folder")
    existing = path  # the nearest folder that exists: the run's mkdir creates the rest there
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AnynetError(f"{flag} {path} cannot be created: {existing} is a file")
    _check_can_write_in(
        existing, f"{flag} {path}" + ("" if existing == path else " cannot be created")
    )


def _check_name_lengths(flag: str, path: Path) -> None:
    """Refuse a name longer than its file system allows (255 bytes, mostly), which would fail
    only at the write, and which makes even asking whether the path exists fail."""
    folder, parts = (Path(path.anchor), path.parts[1:]) if path.anchor else (Path("."), path.parts)
    for part in parts:
        try:
            limit = os.pathconf(folder, "PC_NAME_MAX")
        except (AttributeError, ValueError, OSError):  # no pathconf (Windows), or no answer
            return
        size = len(os.fsencode(part))
        if size > limit:
            raise AnynetError(
                f"{flag}: the file name {part[:16]}... is {size} bytes long; the file system of "
                f"{folder} allows at most {limit}"
            )
        if (folder / part).is_dir():  # else the limit of the last folder that exists
            folder = folder / part


def _check_can_write_in(folder: Path, what: str) -> None:
    """Create (and at once delete) a nameless file in ``folder``: the permission the real write
    needs, asked of the file system itself (``os.access`` guesses from permission bits and the
    real user id, wrong on NFS that squashes root, for one). ``what`` begins the error."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise AnynetError(f"{what}: cannot write in {folder} ({exc.strerror or exc})") from None


def check_resumable(folder: Path, resume: bool) -> None:
    """Refuse ``--resume`` with nothing to resume: the estimator then starts afresh, and a typo
    in the folder's name would silently throw away the run it meant to continue. And refuse a
    fresh run where a checkpoint is: its first checkpoint would overwrite that run's last."""
    from anynet.training import CHECKPOINT_NAME

    path = folder / CHECKPOINT_NAME
    if not resume:
        if path.exists():
            raise AnynetError(
                f"--checkpoint-dir {folder} already holds a checkpoint ({CHECKPOINT_NAME}) "
                "that this run would overwrite: add --resume to continue that run, or give "
                "another --checkpoint-dir (or delete the file) to start afresh"
            )
        return
    if not folder.is_dir():
        raise AnynetError(
            f"--resume: --checkpoint-dir {folder} does not exist, so there is no run to "
            "continue; check the folder's name, or leave out --resume to start afresh"
        )
    if not path.exists():
        raise AnynetError(
            f"--resume: --checkpoint-dir {folder} holds no {CHECKPOINT_NAME} (a run stopped "
            "before its first checkpoint leaves none); leave out --resume to start afresh"
        )
    if not path.is_file():
        raise AnynetError(f"--resume: {path} in --checkpoint-dir is not a regular file")


def check_can_plot() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise AnynetError(
            "--plots needs matplotlib, which is not installed: pip install matplotlib "
            "(or 'anynet-nn[plot]'), or leave out --plots"
        ) from None
