"""The paths a run will write (``--out``, ``--plots``, ``--checkpoint-dir``), checked before
its work starts: a run that could not write them fails at once, not after training with the
trained model lost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from anynet.errors import AnynetError


def check_output(
    flag: str, path: Path, *, folder: bool = False, files: tuple[str, ...] = ()
) -> None:
    """Refuse ``path``, the value of ``flag``, if the run could not write it (a file, or a
    folder with ``folder``, and the ``files`` it writes in that folder) once its work is done."""
    try:
        if not folder:
            _check_out_file(flag, path)
            return
        _check_out_folder(flag, path)
        for name in files:
            _check_not_special(flag, path, path / name)
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


def _check_not_special(flag: str, folder: Path, path: Path) -> None:
    """Refuse a file the run would write in ``folder`` that is there as a folder, a FIFO or a
    device: writing it would fail after the work (or, for root, replace a device)."""
    if path.is_dir():
        raise AnynetError(
            f"{flag} {folder}: {path.name} in it is a folder, and the run writes a file of that "
            "name there; move that folder, or give another folder"
        )
    if path.exists() and not path.is_file():
        raise AnynetError(
            f"{flag} {folder}: {path.name} in it exists and is not a regular file, and the run "
            "writes a file of that name there; remove it, or give another folder"
        )


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


class Place(NamedTuple):
    """A path a run writes or reads: the ``flag`` that gave it (its value ``given``), ``what``
    it holds, in words (``"the checkpoint"``), and whether a write there goes ``through`` a
    symlink of that name to its target (a plot), or replaces it (anynet's files, written whole
    then renamed)."""

    flag: str
    given: Path
    path: Path
    what: str
    through: bool = False


def check_apart(writes: list[Place], *, folders=(), reads=()) -> None:
    """Refuse an output that is another output, or an input, or is in the way of a folder.

    ``writes`` are the files the run writes, the one to change first when two clash;
    ``folders`` the folders it makes; ``reads`` the files it must leave alone. Paths are
    compared where the writes land (:func:`_written`, through symlinks and ``..``): a file
    written twice keeps only the last write (a model replaced by a plot, a checkpoint replaced
    by the model), and a file where a folder is to be made fails after the work."""
    for k, file in enumerate(writes):
        real = _written(file)
        for other in reads:
            if _resolved(other.path) == real:
                raise AnynetError(
                    f"{file.flag} {file.given}: {file.what} would be written to {real}, which "
                    f"is {other.what} ({other.given}), and replace it; give {file.flag} "
                    "another path"
                )
        for other in writes[k + 1 :]:
            if _written(other) == real:
                raise AnynetError(
                    f"{file.flag} {file.given} and {other.flag} {other.given} both write "
                    f"{real}: {file.what} and {other.what} would replace each other; give "
                    f"{file.flag} another path"
                )
        for folder in folders:
            real_folder = _resolved(folder.path)
            if real == real_folder or real in real_folder.parents:
                where = "which is" if real == real_folder else "the folder that holds"
                raise AnynetError(
                    f"{file.flag} {file.given}: {file.what} would be written to {real}, {where} "
                    f"{folder.flag} {folder.given}, a folder the run makes first; give "
                    f"{file.flag} another path"
                )


def check_out_is_no_input(path: Path) -> None:
    """Refuse a model file ``--out`` that would replace a file anynet reads: a run's checkpoint
    or its lock (in any folder), or one of Fashion-MNIST's files, by the name it lands at."""
    from anynet.datasets import FASHION_MNIST_FILES
    from anynet.training import CHECKPOINT_NAME, LOCK_NAME

    real = _written(Place("--out", path, path, "the model"))
    shown = str(path) if Path(os.path.abspath(path)) == real else f"{path} (that is, {real})"
    if real.name in (CHECKPOINT_NAME, LOCK_NAME) and real.exists():
        raise AnynetError(
            f"--out {shown} is the {'checkpoint' if real.name == CHECKPOINT_NAME else 'lock'} "
            f"of the run whose --checkpoint-dir is {real.parent}: the model would replace it; "
            "give --out another file name, such as "
            f"{real.parent / 'model.safetensors'}"
        )
    data = {name for base in FASHION_MNIST_FILES for name in (base, f"{base}.gz")}
    if real.name in data:
        raise AnynetError(
            f"--out {shown} is named as Fashion-MNIST's file {real.name}: the model would "
            "replace the data, or be taken for it; give --out another file name"
        )


def _written(place: Place) -> Path:
    """Where a write of ``place`` lands: through symlinks and ``..`` as the system follows them;
    a symlink at its own name followed too if the write goes ``through`` it, else not (anynet
    renames a new file to that name, which replaces the symlink, not what it points to)."""
    path = place.path
    if place.through or path.name in ("", ".", ".."):
        return _resolved(path)
    return _resolved(path.parent) / path.name


def _resolved(path: Path) -> Path:
    """``path`` as a read (or ``mkdir``) reaches it: absolute, symlinks and ``..`` followed (in
    the part of it that exists; the rest as written)."""
    return Path(os.path.realpath(path))


def check_can_plot() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise AnynetError(
            "--plots needs matplotlib, which is not installed: pip install matplotlib "
            "(or 'anynet-nn[plot]'), or leave out --plots"
        ) from None
