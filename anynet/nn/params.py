"""One flat buffer for all parameters.

A :class:`ParamLayout` maps parameter names to slices of one 1-D array. ``unflatten`` gives the
``dict`` of views the layers read, so layers never know whether their ``W`` is an array of its
own or a window into a shared buffer. With the parameters (and gradients) flat, an optimizer
step is one update over one array, which a backend can fuse into one kernel.

On NumPy, CuPy and PyTorch, basic slicing and reshaping give views, so writing into the flat
buffer in place updates every layer's parameters at once; the Array API leaves view semantics
to the library, so generic code treats the buffer functionally (a new ``flat`` each step, then
``unflatten`` again, which is cheap: no data moves).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from array_api_compat import array_namespace

__all__ = ["ParamLayout"]

Array = Any


class ParamLayout:
    """Where each named parameter lives in a flat buffer.

    Parameters
    ----------
    shapes : mapping of str to tuple of int
        Parameter names and shapes in buffer order, e.g. ``model.param_shapes()``.

    Examples
    --------
    >>> import anynet
    >>> from anynet.nn import Dense, Sequential, ParamLayout
    >>> be = anynet.get_backend("numpy")
    >>> model = Sequential(Dense(3, 2))
    >>> layout = ParamLayout(model.param_shapes())
    >>> layout.size
    8
    >>> flat = layout.flatten(model.init_params(rng=be.host_generator(0), backend=be))
    >>> layout.unflatten(flat)["0.W"].shape
    (3, 2)
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]):
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        self.offsets: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            self.offsets[name] = (offset, offset + n)
            offset += n
        self.size = offset

    def flatten(self, tree: Mapping[str, Array], *, xp: Any = None) -> Array:
        """Concatenate the arrays of ``tree`` (parameters or gradients) into one 1-D array."""
        if set(tree) != set(self.shapes):
            raise ValueError(
                f"the arrays to flatten are named {sorted(tree)}; this layout holds "
                f"{sorted(self.shapes)}"
            )
        xp = array_namespace(*tree.values()) if xp is None else xp
        return xp.concat([xp.reshape(tree[name], (-1,)) for name in self.shapes])

    def unflatten(self, flat: Array, *, xp: Any = None) -> dict[str, Array]:
        """The named arrays of ``flat``: views into it where the library makes views."""
        if tuple(flat.shape) != (self.size,):
            raise ValueError(f"flat buffer must have shape ({self.size},); got {tuple(flat.shape)}")
        xp = array_namespace(flat) if xp is None else xp
        return {
            name: xp.reshape(flat[start:stop], self.shapes[name])
            for name, (start, stop) in self.offsets.items()
        }

    def __repr__(self) -> str:
        return f"ParamLayout({len(self.shapes)} arrays, size={self.size})"
