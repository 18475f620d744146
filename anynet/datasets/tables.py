"""A user's own data as arrays: a ``.npz`` file of ``X`` and ``y`` (and optionally ``X_test``
and ``y_test``), or a CSV table with a header row, numeric features and one label column.

Every value is read as hostile until checked: only regular files are opened, a ``.npz`` is
loaded without pickle (an object array is refused, not executed), and every refusal is a
:class:`~anynet.errors.DataError` that names the file (and the row and column, or the array),
says what was expected and what came, and what to do.

>>> X, y, columns, target = read_csv("iris.csv", target="species")  # doctest: +SKIP
>>> arrays = read_npz("my.npz")  # {"X": ..., "y": ..., maybe "X_test", "y_test"}  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from anynet.errors import DataError

__all__ = ["NPZ_KEYS", "check_labels", "check_samples", "open_data_file", "read_csv", "read_npz"]

#: The arrays a ``.npz`` may hold: ``X`` and ``y``, and a test set ``X_test`` and ``y_test``.
NPZ_KEYS = ("X", "y", "X_test", "y_test")
#: The longest class label or column name taken, in characters (a model file's limit).
MAX_NAME_CHARS = 1024
# What a .npz may inflate to, in all: far beyond a data set trained on a CPU, short of a zip
# bomb's terabytes. Read from the zip's directory before anything is inflated.
MAX_NPZ_BYTES = 64 << 30


def open_data_file(path: Path, expected: str):
    """``path`` open for binary reading if it is a regular file; DataError otherwise, saying
    what it is and that ``expected`` was wanted. The open does not wait on a FIFO, and the
    check is made on the open file, which is what is read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; expected {expected}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not {expected}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open it ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a special file (a FIFO, socket or device)"
        raise DataError(f"{path}: {kind}, not {expected}")
    return os.fdopen(fd, "rb")


def check_samples(path: Path, name: str, X: np.ndarray) -> None:
    """Refuse samples that are not numbers (or not finite), or an array without samples."""
    if X.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: {name} holds {X.dtype} values; expected numbers (integers or floats): "
            "convert it with X.astype(np.float32) before saving"
        )
    if X.ndim < 2 or X.shape[0] == 0 or 0 in X.shape[1:]:
        raise DataError(
            f"{path}: {name} has shape {X.shape}; expected (samples, features), "
            "(samples, height, width) or (samples, channels, height, width), none of them 0"
        )
    if X.ndim > 4:
        raise DataError(
            f"{path}: {name} has shape {X.shape}, {X.ndim} dimensions; expected 2 (rows of "
            "features), 3 (gray images) or 4 (images with channels first)"
        )
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X.reshape(len(X), -1))
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(
                f"{path}: {name} has {int(bad.sum())} NaN or infinite values, the first in "
                f"sample {row} (feature {col}); fill in or drop those samples first"
            )


def check_labels(path: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    """``y`` as class labels of ``n`` samples: integers, whole-number floats (as integers),
    booleans or strings, one per sample; DataError otherwise."""
    if y.ndim != 1 or len(y) != n:
        raise DataError(
            f"{path}: {name} has shape {y.shape}; expected one label per sample, shape ({n},)"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            i = int(np.argmax(~np.isfinite(y) | (y != np.round(y))))
            raise DataError(
                f"{path}: {name}[{i}] is {y[i].item()!r}; expected class labels (integers "
                "or strings), not measurements: a classifier learns classes"
            )
        return y.astype(np.int64)
    if y.dtype.kind not in "biuU":
        raise DataError(
            f"{path}: {name} holds {y.dtype} values; expected class labels, integers or strings"
        )
    if y.dtype.kind == "U" and y.dtype.itemsize // 4 > MAX_NAME_CHARS:
        raise DataError(f"{path}: {name} has labels longer than {MAX_NAME_CHARS} characters")
    return y


def read_npz(path: Path, labels: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file: ``X`` and ``y``, and ``X_test`` and ``y_test`` if it has
    them (both or neither), each checked (:func:`check_samples`, :func:`check_labels`) and
    the test samples of the training samples' shape. Without ``labels``, ``y`` may be missing
    (samples to predict).

    Loaded with ``allow_pickle=False``: an object array is refused, never unpickled."""
    with open_data_file(path, "a .npz file of arrays X and y") as f:
        raw = f.read(4)
        f.seek(0)
        if raw != b"PK\x03\x04":
            raise DataError(
                f"{path}: not a .npz file (it begins {raw!r}); expected one written by "
                "np.savez(path, X=X, y=y)"
            )
        try:
            with zipfile.ZipFile(f) as archive:
                members = archive.infolist()
                for member in members:
                    _check_npy_header(path, archive, member)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{path}: a damaged .npz file ({exc})") from None
        names = [m.filename.removesuffix(".npy") for m in members]
        unknown = sorted(set(names) - set(NPZ_KEYS))
        if unknown or "X" not in names or ("y" not in names and labels):
            raise DataError(
                f"{path}: holds the arrays {', '.join(names) or 'none'}; expected X and y "
                "(and optionally X_test and y_test), as np.savez(path, X=X, y=y) writes"
            )
        if ("X_test" in names) != ("y_test" in names):
            raise DataError(f"{path}: holds one of X_test and y_test; give both or neither")
        total = sum(m.file_size for m in members)
        if total > MAX_NPZ_BYTES:
            raise DataError(
                f"{path}: its arrays would take {total / 2**30:.1f} GiB; anynet reads up to "
                f"{MAX_NPZ_BYTES >> 30} GiB from a .npz"
            )
        arrays = {}
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as npz:
                for key in NPZ_KEYS:
                    if key in names:
                        arrays[key] = npz[key]
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise DataError(
                    f"{path}: holds an object array (Python objects, which loading would "
                    "unpickle and run); anynet reads only numeric arrays and string labels: "
                    "save X as numbers and y as integers or strings (y.astype(str))"
                ) from None
            raise DataError(f"{path}: a damaged .npz file ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: a damaged .npz file ({exc})") from None
    for x, y in (("X", "y"), ("X_test", "y_test")):
        if x in arrays:
            check_samples(path, x, arrays[x])
        if y in arrays:
            arrays[y] = check_labels(path, y, arrays[y], len(arrays[x]))
    if "X_test" in arrays and arrays["X_test"].shape[1:] != arrays["X"].shape[1:]:
        raise DataError(
            f"{path}: X_test has samples of shape {arrays['X_test'].shape[1:]} and X of "
            f"{arrays['X'].shape[1:]}; expected the same"
        )
    return arrays


def _check_npy_header(path: Path, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
    """Refuse an array of a ``.npz`` by its header, before NumPy allocates it: one of Python
    objects, or one whose header asks for more bytes than the member holds (NumPy would
    allocate what the header says first)."""
    name = member.filename.removesuffix(".npy")
    fmt = np.lib.format
    try:
        with archive.open(member) as fh:
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: its array {name} is not a NumPy array file ({exc})") from None
    if dtype.hasobject:
        raise DataError(
            f"{path}: {name} is an object array (Python objects, which loading would unpickle "
            "and run); anynet reads only numeric arrays and string labels: save X as numbers "
            "and y as integers or strings (y.astype(str))"
        )
    size = dtype.itemsize
    for n in shape:
        size *= n
    if size > member.file_size:
        raise DataError(
            f"{path}: the header of {name} announces {shape} {dtype} values, {size:,} bytes, "
            f"and the file holds {member.file_size:,}: it is damaged or forged"
        )


def read_csv(
    path: Path, target: str | None = None, columns: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
    """A CSV table with a header row: ``(X, y, feature_columns, target)``.

    ``target`` names the label column (default: the last). ``X`` is float64, one column per
    other column, each cell a finite number. ``y`` holds the labels as integers if every one
    is an integer, else as strings. With ``columns`` (a model's feature columns), the table
    must hold those columns (in any order, ``X`` is given in theirs) and may hold the target
    or not (``y`` is None then); no other column.
    """
    with open_data_file(path, "a CSV table with a header row") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}); expected a CSV table: save it as UTF-8"
        ) from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV table anynet can read ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty; expected a CSV table with a header row")
    header = [name.strip() for name in rows[0]]
    _check_header(path, header)
    if columns is None:
        target = header[-1] if target is None else target
        if target not in header:
            raise DataError(
                f"{path}: has no column {target!r} (--target); its columns are {_names(header)}"
            )
        features = [name for name in header if name != target]
        if not features:
            raise DataError(f"{path}: has only the label column {target!r}; expected features too")
    else:
        features = list(columns)
        missing = [name for name in features if name not in header]
        extra = [name for name in header if name not in features and name != target]
        if missing or extra:
            raise DataError(
                f"{path}: its columns are {_names(header)}; the model takes "
                f"{_names(features)}"
                + (f" (and optionally the label column {target!r})" if target else "")
                + (f": {_names(missing)} missing" if missing else "")
                + (f"{';' if missing else ':'} {_names(extra)} unknown" if extra else "")
            )
    body = rows[1:]
    if not body:
        raise DataError(f"{path}: has a header row and no data rows")
    where = {name: header.index(name) for name in header}
    X = np.empty((len(body), len(features)), dtype=np.float64)
    labels = []
    has_target = target in where
    for r, row in enumerate(body, start=2):  # row 1 is the header, as a spreadsheet numbers
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {r} has {len(row)} cells; the header has {len(header)} columns"
            )
        for j, name in enumerate(features):
            cell = row[where[name]].strip()
            try:
                value = float(cell)
            except ValueError:
                value = None
            if value is None or not np.isfinite(value):
                what = "an empty cell" if not cell else f"{cell[:40]!r}"
                raise DataError(
                    f"{path}: row {r}, column {name!r}: {what}; expected a finite number in "
                    "every feature column: fill it in, drop the row, or encode the column as "
                    "numbers (use --target if this is the label column)"
                )
            X[r - 2, j] = value
        if has_target:
            label = row[where[target]].strip()
            if not label:
                raise DataError(f"{path}: row {r}, column {target!r}: no label (an empty cell)")
            labels.append(label)
    y = _labels(path, labels) if has_target else None
    return X, y, features, target


def _check_header(path: Path, header: list[str]) -> None:
    if any(not name for name in header):
        raise DataError(
            f"{path}: the header row has an empty column name (column "
            f"{header.index('') + 1}); expected a name for every column"
        )
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise DataError(f"{path}: the header names {_names(twice)} more than once")
    if any(len(name) > MAX_NAME_CHARS for name in header):
        raise DataError(f"{path}: a column name is longer than {MAX_NAME_CHARS} characters")
    if all(_is_number(name) for name in header):
        raise DataError(
            f"{path}: the first row is all numbers ({', '.join(header[:4])}...); expected a "
            "header row naming the columns: add one"
        )


def _labels(path: Path, labels: list[str]) -> np.ndarray:
    """Labels as int64 if every one is an integer, else as strings."""
    try:
        return np.array([int(label) for label in labels], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    longest = max(len(label) for label in labels)
    if longest > MAX_NAME_CHARS:
        raise DataError(f"{path}: a label is {longest} characters long; the limit is 1024")
    return np.array(labels, dtype=str)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _names(names: list[str], shown: int = 12) -> str:
    out = ", ".join(repr(n) for n in names[:shown])
    return out + (f", ... ({len(names)} in all)" if len(names) > shown else "")
