"""Model and checkpoint files: safetensors, written atomically, read trusting nothing.

Five modules, one concern each:

:mod:`anynet.io.atomic`
    The atomic write: a temporary file, fsynced and renamed into place (temporary files match
    :data:`TEMPORARY_FILES`; :func:`remove_orphans` deletes those a killed write left).
:mod:`anynet.io.container`
    The file itself: :func:`write_arrays` and :func:`read_arrays`, the digest, and the refusal
    of every malformed file. Its docstring describes the format.
:mod:`anynet.io.codec`
    Nested values (optimizer state, RNG state, history, user metadata) as JSON plus named
    tensors, and :data:`STATE_CLASSES`, the optimizer states a file may name.
:mod:`anynet.io.files`
    What anynet keeps in the container for a network (:func:`save_network`,
    :func:`load_network`).
:mod:`anynet.io.checkpoints`
    Training checkpoints (:class:`Checkpoint`, :func:`save_checkpoint`,
    :func:`load_checkpoint`).

Everything public is importable from here. The modules' other unprefixed names (``FileErrors``,
``Encoder``, ``Decoder``, ...) are what they share with one another, not anynet's API.
"""

from anynet.io.atomic import TEMPORARY_FILES, remove_orphans
from anynet.io.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from anynet.io.codec import STATE_CLASSES
from anynet.io.container import FORMAT_VERSION, read_arrays, write_arrays
from anynet.io.files import load_network, save_network

__all__ = [
    "FORMAT_VERSION",
    "STATE_CLASSES",
    "TEMPORARY_FILES",
    "Checkpoint",
    "load_checkpoint",
    "load_network",
    "read_arrays",
    "remove_orphans",
    "save_checkpoint",
    "save_network",
    "write_arrays",
]
