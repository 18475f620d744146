"""The exceptions anynet raises.

Every error anynet raises on purpose derives from :class:`AnynetError`, so a caller can catch
them all; each also derives from the builtin a Python user would expect (``ValueError`` for bad
values, ``RuntimeError`` for an unusable environment), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "AnynetError",
    "ArgumentError",
    "BackendError",
    "BackendUnavailableError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "ChecksumError",
    "DataError",
    "DatasetNotFoundError",
    "DivergenceError",
    "IDXFormatError",
    "ModelFileError",
    "NonFiniteLossError",
]


class AnynetError(Exception):
    """Base class of every error anynet raises on purpose."""


class ArgumentError(AnynetError, ValueError, TypeError):
    """An argument of the wrong type or out of range; the message names it, says what it must
    be and what came. Both a ``ValueError`` and a ``TypeError``, so either ``except`` catches
    it, whichever of the two a caller expects."""


class BackendError(AnynetError, ValueError):
    """A backend name or device that anynet does not know."""


class BackendUnavailableError(AnynetError, RuntimeError):
    """A known backend that cannot run here: its library is missing or it has no device."""


class CheckpointLockedError(AnynetError, RuntimeError):
    """Another run is writing checkpoints to the same folder."""


class CheckpointMismatchError(AnynetError, ValueError):
    """A checkpoint that belongs to another run than the one asked to resume from it."""


class DataError(AnynetError, ValueError):
    """Data that anynet refuses: malformed, corrupt or inconsistent."""


class IDXFormatError(DataError):
    """An IDX file (or its gzip wrapper) that is malformed, truncated or corrupt."""


class ChecksumError(DataError):
    """A file whose content does not match its expected SHA-256."""


class DatasetNotFoundError(AnynetError, FileNotFoundError):
    """A data set that could be neither found nor downloaded."""


class ModelFileError(AnynetError, ValueError):
    """A model or checkpoint file that is tampered with, truncated or does not fit."""


class NonFiniteLossError(AnynetError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class DivergenceError(AnynetError, FloatingPointError):
    """Training diverged: its loss grew far beyond where it started, still finite."""
