"""Blocks built from other layers: :class:`Residual`, the skip connection of a ResNet.

A block is a layer like any other (the same ``forward``/``backprop`` pair, parameters in a
``dict`` outside it), so it goes inside a :class:`~anynet.nn.Sequential` and in model files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from array_api_compat import array_namespace

from anynet.nn.layers import Layer, Sequential, layer_from_config

__all__ = ["Residual"]


class Residual(Layer):
    """A skip connection around a block: ``Y = X + block(X)``, ``block`` being
    ``Sequential(*layers)``; backprop gives ``dX = dY + block's dX``.

    The block must give an output of its input's shape (a convolution with
    ``padding='same'``, as many channels out as in); anything else is refused, naming the
    block. Its parameters are the block's, named as a nested :class:`~anynet.nn.Sequential`
    names them: in ``Sequential(Conv2D(...), ReLU(), Residual(Conv2D(...), ReLU(),
    Conv2D(...)))`` the block's convolutions are ``'2.0.W'`` and ``'2.2.W'``.

    Parameters
    ----------
    *layers : Layer
        The block's layers, in order.
    layers : list, keyword only
        The same given as ``[name, config]`` pairs (what :meth:`get_config` stores), for
        :func:`~anynet.nn.layers.layer_from_config`; not together with positional layers.

    Examples
    --------
    >>> import anynet
    >>> from anynet.nn import Conv2D, ReLU, Residual
    >>> be = anynet.get_backend("numpy")
    >>> block = Residual(Conv2D(4, 4, 3, padding="same"), ReLU(), Conv2D(4, 4, 3, padding="same"))
    >>> params = block.init_params(rng=be.host_generator(0), backend=be)
    >>> sorted(params)
    ['0.W', '0.b', '2.W', '2.b']
    """

    has_params = True

    def __init__(self, *block: Layer, layers: Sequence[Any] | None = None):
        if layers is not None:
            if block:
                raise TypeError("Residual takes its layers positionally or as layers=, not both")
            if not isinstance(layers, list | tuple):
                raise TypeError(f"Residual layers= must be a list; got {layers!r}")
            block = tuple(
                item if isinstance(item, Layer) else self._from_item(i, item)
                for i, item in enumerate(layers)
            )
        elif len(block) == 1 and isinstance(block[0], list | tuple):
            block = tuple(block[0])
        if not block:
            raise ValueError("Residual needs at least one layer in its block")
        for i, layer in enumerate(block):
            if not isinstance(layer, Layer):
                raise TypeError(f"Residual item {i} is not an anynet layer: {layer!r}")
        #: The layers the skip goes around, as one Sequential (its parameter names are ours).
        self.block = Sequential(*block)

    @staticmethod
    def _from_item(i: int, item: Any) -> Layer:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise TypeError(f"Residual item {i} is neither a layer nor [name, config]: {item!r}")
        return layer_from_config(item[0], item[1])

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.block.layers

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.block)

    def __len__(self) -> int:
        return len(self.block)

    def __getitem__(self, i: int) -> Layer:
        return self.block[i]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.block.param_shapes()

    def statistics(self) -> tuple[str, ...]:
        return self.block.statistics()

    def init_params(self, *, rng, backend, dtype="float32"):
        return self.block.init_params(rng=rng, backend=backend, dtype=dtype)

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True, updates=None):
        xp = array_namespace(X) if xp is None else xp
        Yb, block_backprop = self.block.forward(
            params, X, train=train, rng=rng, xp=xp, input_grad=input_grad, updates=updates
        )
        if tuple(Yb.shape) != tuple(X.shape):
            raise ValueError(
                f"{self._short()}: its block maps input of shape {tuple(X.shape)} to "
                f"{tuple(Yb.shape)}; a residual block must keep the shape (use padding='same' "
                "and as many channels out as in)"
            )
        Y = X + Yb

        def backprop(dY):
            dXb, grads = block_backprop(dY)
            # The skip passes dY through unchanged; the block adds its own input gradient.
            return (dY + dXb if input_grad else None), grads

        return Y, backprop

    def get_config(self) -> dict[str, Any]:
        return self.block.get_config()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Residual:
        return cls(layers=config["layers"])

    def __eq__(self, other: object) -> bool:
        # Layer by layer, types included, as Sequential compares.
        return type(self) is type(other) and self.block == other.block

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.block))

    def _short(self) -> str:
        return f"Residual({', '.join(repr(layer) for layer in self.layers)})"

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Residual(\n{inner}\n)"
