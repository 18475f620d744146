"""Nested values (optimizer state, RNG state, history, user metadata) <-> JSON + named tensors.

A file's metadata is JSON (see :mod:`anynet.io.container`); the values anynet keeps in it are
richer. :class:`Encoder` turns one into JSON, moving each array out into a named host tensor;
:class:`Decoder` turns it back, trusting nothing in the file.

Every JSON object in an encoded tree is a tag with exactly one key, so a user's dict can never be
mistaken for a tag: ``{"$dict": {...}}``, ``{"$tuple": [...]}``, ``{"$array": "tensor name"}``,
``{"$float": "nan"}``, ``{"$state": ["AdamState", {field: value}]}``. Lists, strings, ints,
finite floats, booleans and null are plain JSON.

>>> import numpy as np
>>> from anynet.io.codec import Encoder
>>> arrays = {}
>>> Encoder(arrays).encode({"lr": 0.1, "sizes": (2, 3), "w": np.zeros(2)}, "extra")
{'$dict': {'lr': 0.1, 'sizes': {'$tuple': [2, 3]}, 'w': {'$array': 'extra/w'}}}
>>> list(arrays)
['extra/w']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from anynet.io.container import FileErrors, host_tensor, is_int, short_repr
from anynet.nn import optim

__all__ = ["STATE_CLASSES"]

#: The optimizer-state classes a file may name: looked up here, never imported by name.
STATE_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (optim.AdamState, optim.EmptyState, optim.LearningRateState, optim.TraceState)
}

# Nesting depth of an encoded value, and of a file's layers: far beyond any real optimizer state
# or network, far below Python's recursion limit.
MAX_DEPTH = 64

#: The largest epoch, step or optimizer step count a file may hold: 2**53, a step a nanosecond
#: for 100 days, and the last integer a float64 holds exactly.
MAX_COUNT = 2**53
#: The largest count a file may hold when read: half of :data:`MAX_COUNT`, so that a run
#: resumed from it has room to go on counting (one at the limit loaded, then failed its next
#: save in the middle of training).
MAX_READ_COUNT = MAX_COUNT // 2

_FLOAT_TAGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def is_array(x: Any) -> bool:
    """Is ``x`` an array: NumPy's, or any backend's (a NumPy scalar is a number, not one)?"""
    return isinstance(x, np.ndarray) or (
        not isinstance(x, np.generic) and hasattr(x, "__dlpack__") and hasattr(x, "shape")
    )


class Encoder:
    """Turns a nested value into JSON, collecting its arrays as named host tensors."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def encode(self, value: Any, name: str, depth: int = 0) -> Any:
        """``value`` as JSON; its arrays go into ``arrays`` under ``name/...`` paths."""
        if depth > MAX_DEPTH:
            raise ValueError(f"{name!r} is nested more than {MAX_DEPTH} levels deep")
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
        if is_array(value):
            if name in self.arrays:
                raise ValueError(f"two arrays would be stored under the same name {name!r}")
            self.arrays[name] = host_tensor(name, value)
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


class Decoder:
    """The inverse of :class:`Encoder`; every tensor may be claimed once."""

    def __init__(self, errors: FileErrors, arrays: Mapping[str, np.ndarray]):
        self.errors = errors
        self.arrays = arrays
        self.claimed: set[str] = set()

    def claim(self, name: Any) -> np.ndarray:
        """The tensor ``name``, which no other node of the file may refer to."""
        if not isinstance(name, str) or name not in self.arrays:
            raise self.errors.fail(
                f"its metadata refers to a tensor {name!r} the file does not hold"
            )
        if name in self.claimed:
            raise self.errors.fail(f"its metadata refers to tensor {name!r} twice")
        self.claimed.add(name)
        return self.arrays[name]

    def decode(self, node: Any, to_array: Callable[[np.ndarray], Any], depth: int = 0) -> Any:
        """The value ``node`` encodes, each of its tensors passed through ``to_array``."""
        fail = self.errors.fail
        if depth > MAX_DEPTH:
            raise fail(f"its metadata is nested more than {MAX_DEPTH} levels deep")
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, list):
            return [self.decode(v, to_array, depth + 1) for v in node]
        if not isinstance(node, dict) or len(node) != 1:
            raise fail(f"its metadata holds an unknown value {short_repr(node)}")
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
                raise fail(
                    f"its metadata names the optimizer state {short_repr(cls_name)}, which is "
                    f"not one of anynet's {sorted(STATE_CLASSES)}"
                )
            if not isinstance(fields, dict) or set(fields) != set(cls._fields):
                raise fail(f"its metadata has the wrong fields for {cls_name}")
            values = {f: self.decode(fields[f], to_array, depth + 1) for f in cls._fields}
            for field, value in values.items():
                # anynet's states hold a step count and dicts of arrays, nothing else.
                if field == "count":
                    if not is_int(value) or not 0 <= value <= MAX_READ_COUNT:
                        raise fail(
                            f"its {cls_name}.{field} is {short_repr(value)}; expected an "
                            "integer from 0 to 2**52"
                        )
                elif not isinstance(value, dict) or not all(map(is_array, value.values())):
                    raise fail(
                        f"its {cls_name}.{field} is {short_repr(value)}; expected a mapping of "
                        "parameter names to arrays"
                    )
            return cls(**values)
        raise fail(f"its metadata holds an unknown value {short_repr(node)}")

    def check_all_claimed(self, also: Iterable[str] = ()) -> None:
        """Refuse a file holding tensors that neither its metadata nor ``also`` names."""
        left = set(self.arrays) - self.claimed - set(also)
        if left:
            raise self.errors.fail(
                f"holds tensors its metadata does not account for: {sorted(left)}"
            )
