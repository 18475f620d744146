"""Layers: each one a pure pair of forward and backprop.

A layer holds only its hyper-parameters (sizes, slope, rate); its parameters live outside it, in
a ``dict`` of arrays, so the same layer object runs on any backend and the parameters can be
views into one flat buffer (see :mod:`anynet.nn.params`) without the layer knowing.

``forward(params, X, *, train, rng, xp) -> (Y, backprop)``, and ``backprop(dY) -> (dX, grads)``:
the closure keeps what the backward pass needs, and gradients are *returned*, never
accumulated by mutation. :class:`Sequential` composes layers by calling the closures in
reverse. There is no tape, no graph, no global state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from array_api_compat import array_namespace

from anynet.checks import check_int, check_number
from anynet.nn import functional as F
from anynet.nn.init import get_initializer

# __all__ is completed at the end of the module with every registered layer class.
__all__ = ["ACTIVATIONS", "LAYERS", "Layer", "layer_from_config"]

Array = Any
Params = Mapping[str, Array]
Grads = dict[str, Array]
Backprop = Callable[[Array], tuple[Array | None, Grads]]

#: Layer classes by the name a model file stores; nothing else is ever built from a file.
LAYERS: dict[str, type[Layer]] = {}
#: Hidden-layer activation classes by the name the estimator and the command take
#: (``'relu'``, ``'tanh'``, ...), each registered by its class's ``key``.
ACTIVATIONS: dict[str, type[Layer]] = {}


class Layer:
    """Base class: a layer without parameters that passes its input through.

    Subclasses set ``params`` shapes through :meth:`param_shapes`, build them in
    :meth:`init_params`, and implement :meth:`forward`. ``get_config`` returns the keyword
    arguments that rebuild the layer, as JSON-safe values.
    """

    #: Does this layer have parameters? (Sequential skips backward work before the first one.)
    has_params: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only anynet's own public layers can be named by a model file; a user's subclass
        # works in code but is never built from data.
        if cls.__module__.startswith("anynet.") and not cls.__name__.startswith("_"):
            LAYERS[cls.__name__] = cls

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name and shape of each parameter."""
        return {}

    def statistics(self) -> tuple[str, ...]:
        """Names among :meth:`param_shapes` that training estimates rather than optimizes (a
        batch norm's running mean and variance).

        They get no gradient, no optimizer update and no penalty. A layer that has them takes
        ``updates``, a ``dict``, in :meth:`forward`; a training pass puts their new values
        there, and the training step writes them with its update.
        """
        return ()

    def init_params(self, *, rng: Any, backend: Any, dtype: Any = "float32") -> dict[str, Array]:
        """Fresh parameters on ``backend``, drawn from the host generator ``rng``."""
        return {}

    def forward(
        self,
        params: Params,
        X: Array,
        *,
        train: bool = False,
        rng: Any = None,
        xp: Any = None,
        input_grad: bool = True,
    ) -> tuple[Array, Backprop]:
        """Compute ``Y`` and the closure that maps ``dY`` to ``(dX, grads)``.

        ``input_grad=False`` lets a layer skip ``dX`` (returned as ``None``) when nothing
        before it needs it, as for the first layer of a network.
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self.get_config())))


def layer_from_config(name: str, config: Mapping[str, Any]) -> Layer:
    """Rebuild a layer from its class name and :meth:`Layer.get_config`.

    Only anynet's own layer classes can be named: a model file can never make anynet import
    or call anything else.
    """
    if not isinstance(name, str) or name not in LAYERS:
        raise ValueError(f"unknown layer type {name!r}; anynet's layers are {sorted(LAYERS)}")
    cls = LAYERS[name]
    from_config = getattr(cls, "from_config", None)  # a container rebuilds its layers itself
    return from_config(config) if from_config is not None else cls(**config)


class Dense(Layer):
    """Fully connected layer ``Y = X @ W + b``.

    ``W`` has shape ``(n_in, n_out)`` (scikit-learn's ``coefs_`` layout) and ``b`` shape
    ``(n_out,)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output features.
    bias : bool
        Whether to add ``b``.
    init, bias_init : str or callable
        Initializers from :mod:`anynet.nn.init` (``'glorot_uniform'``, ``'he_normal'``,
        ``'uniform'`` for the seed's U(-1, 1), ``'zeros'``, ...).
    """

    has_params = True

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        bias: bool = True,
        init: str = "glorot_uniform",
        bias_init: str = "zeros",
    ):
        self.n_in = check_int("n_in", n_in, minimum=1)
        self.n_out = check_int("n_out", n_out, minimum=1)
        self.bias = bool(bias)
        get_initializer(init), get_initializer(bias_init)  # fail now, not at init time
        self.init = init
        self.bias_init = bias_init

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"W": (self.n_in, self.n_out)}
        if self.bias:
            shapes["b"] = (self.n_out,)
        return shapes

    def init_params(self, *, rng, backend, dtype="float32"):
        fans = {"fan_in": self.n_in, "fan_out": self.n_out}
        params = {
            "W": get_initializer(self.init)(
                (self.n_in, self.n_out), rng=rng, backend=backend, dtype=dtype, **fans
            )
        }
        if self.bias:
            params["b"] = get_initializer(self.bias_init)(
                (self.n_out,), rng=rng, backend=backend, dtype=dtype, **fans
            )
        return params

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        if X.ndim != 2 or X.shape[1] != self.n_in:
            raise ValueError(
                f"Dense({self.n_in}, {self.n_out}) expects input of shape (batch, {self.n_in}); "
                f"got {tuple(X.shape)}"
            )
        xp = array_namespace(X) if xp is None else xp
        W = params["W"]
        Y = X @ W
        if self.bias:
            Y = Y + params["b"]

        def backprop(dY):
            grads = {"W": X.T @ dY}
            if self.bias:
                grads["b"] = xp.sum(dY, axis=0)
            return (dY @ W.T if input_grad else None), grads

        return Y, backprop

    def get_config(self):
        return {
            "n_in": self.n_in,
            "n_out": self.n_out,
            "bias": self.bias,
            "init": self.init,
            "bias_init": self.bias_init,
        }


class _Activation(Layer):
    """An element-wise function and its derivative.

    ``derivative_from`` says what the derivative is written from: the layer's ``'output'``
    (sigmoid, tanh, ReLU: what a layer keeps anyway, and what lets a fused step work in place)
    or its ``'input'`` (where the output does not determine the slope, as for SiLU). Forward
    keeps that array alone for backprop.
    """

    #: ``'output'`` or ``'input'``: the array ``_df`` receives as ``saved``.
    derivative_from: ClassVar[str] = "output"
    #: The name ``NNClassifier(activation=...)`` and ``anynet train --activation`` give a
    #: hidden-layer activation; ``None`` for output layers (softmax).
    key: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.key is not None and cls.__module__.startswith("anynet."):
            ACTIVATIONS[cls.key] = cls

    def _f(self, X, xp):
        raise NotImplementedError

    def _df(self, dY, saved, xp):
        raise NotImplementedError

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        xp = array_namespace(X) if xp is None else xp
        Y = self._f(X, xp)
        saved = Y if self.derivative_from == "output" else X
        return Y, lambda dY: (self._df(dY, saved, xp), {})


class Sigmoid(_Activation):
    """The logistic function, element-wise."""

    key = "logistic"

    def _f(self, X, xp):
        return F.sigmoid(X, xp=xp)

    def _df(self, dY, Y, xp):
        return F.sigmoid_backward(dY, Y)


class Tanh(_Activation):
    """Hyperbolic tangent, element-wise."""

    key = "tanh"

    def _f(self, X, xp):
        return F.tanh(X, xp=xp)

    def _df(self, dY, Y, xp):
        return F.tanh_backward(dY, Y)


class ReLU(_Activation):
    """``max(x, 0)``, element-wise."""

    key = "relu"

    def _f(self, X, xp):
        return F.relu(X, xp=xp)

    def _df(self, dY, Y, xp):
        return F.relu_backward(dY, Y, xp=xp)


class LeakyReLU(_Activation):
    """``x`` for ``x > 0``, else ``negative_slope * x``."""

    key = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = check_number(
            "negative_slope", negative_slope, low=0.0, high=1.0, high_open=True
        )

    def _f(self, X, xp):
        return F.leaky_relu(X, self.negative_slope, xp=xp)

    def _df(self, dY, Y, xp):
        return F.leaky_relu_backward(dY, Y, self.negative_slope, xp=xp)

    def get_config(self):
        return {"negative_slope": self.negative_slope}


class SiLU(_Activation):
    """``x * sigmoid(x)``, element-wise (SiLU, or swish), as ``torch.nn.SiLU``."""

    key = "silu"
    derivative_from = "input"

    def _f(self, X, xp):
        return F.silu(X, xp=xp)

    def _df(self, dY, X, xp):
        return F.silu_backward(dY, X, xp=xp)


class Softmax(_Activation):
    """Softmax over the last axis (max-shifted: never overflows)."""

    def _f(self, X, xp):
        return F.softmax(X, xp=xp)

    def _df(self, dY, Y, xp):
        return F.softmax_backward(dY, Y, xp=xp)


class LogSoftmax(_Activation):
    """Log-softmax over the last axis: pair it with :func:`anynet.nn.losses.nll_loss`."""

    def _f(self, X, xp):
        return F.log_softmax(X, xp=xp)

    def _df(self, dY, Y, xp):
        return F.log_softmax_backward(dY, Y, xp=xp)


class Flatten(Layer):
    """Reshape ``(N, d1, d2, ...)`` to ``(N, d1 * d2 * ...)``, e.g. 28x28 images to 784."""

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        xp = array_namespace(X) if xp is None else xp
        shape = tuple(X.shape)
        Y = xp.reshape(X, (shape[0], math.prod(shape[1:])))
        return Y, lambda dY: (xp.reshape(dY, shape), {})


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``p`` and scale the rest
    by ``1 / (1 - p)``; at inference, the identity.

    The mask comes from the backend's own generator (``rng``, a
    :class:`anynet.backends.Generator`), drawn on the device.
    """

    def __init__(self, p: float = 0.5):
        self.p = check_number("dropout probability p", p, low=0.0, high=1.0, high_open=True)

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True):
        if not train or self.p == 0.0:
            return X, lambda dY: (dY, {})
        if rng is None:
            raise ValueError(
                "Dropout needs a random generator in training: pass rng=backend.generator(seed)"
            )
        xp = array_namespace(X) if xp is None else xp
        keep = xp.astype(rng.uniform(tuple(X.shape), X.dtype) >= self.p, X.dtype)
        mask = keep * (1.0 / (1.0 - self.p))
        return X * mask, lambda dY: (dY * mask, {})

    def get_config(self):
        return {"p": self.p}


class Sequential(Layer):
    """Layers applied in order; backprop calls their closures in reverse.

    Parameters are one flat ``dict`` named ``"<index>.<name>"`` (``"0.W"``, ``"0.b"``, ...),
    the form the optimizers, the flat buffer and model files share.

    Examples
    --------
    >>> import anynet
    >>> from anynet.nn import Dense, ReLU, Sequential
    >>> be = anynet.get_backend("numpy")
    >>> model = Sequential(Dense(4, 3), ReLU(), Dense(3, 2))
    >>> params = model.init_params(rng=be.host_generator(0), backend=be)
    >>> sorted(params)
    ['0.W', '0.b', '2.W', '2.b']
    >>> model(params, be.asarray([[1.0, 2.0, 3.0, 4.0]], dtype="float32")).shape
    (1, 2)
    """

    has_params = True

    def __init__(self, *layers: Layer):
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {i} is not an anynet layer: {layer!r}")
        self.layers = tuple(layers)
        # Per layer: which flat names belong to it, so forward slices the dict without
        # string work on the hot path.
        self._keys = tuple(
            tuple((name, f"{i}.{name}") for name in layer.param_shapes())
            for i, layer in enumerate(self.layers)
        )
        # Statistics (a batch norm's running mean) have no gradient to collect.
        self._grad_keys = tuple(
            tuple((name, flat) for name, flat in keys if name not in layer.statistics())
            for layer, keys in zip(self.layers, self._keys, strict=True)
        )
        self._with_statistics = tuple(bool(layer.statistics()) for layer in self.layers)
        self._first_with_params = next(
            (i for i, layer in enumerate(self.layers) if layer.has_params), len(self.layers)
        )

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def param_names(self, i: int) -> dict[str, str]:
        """Layer ``i``'s own parameter names and their names here: ``{'W': '0.W', ...}``."""
        return dict(self._keys[i])

    def param_shapes(self):
        return {
            flat: shape
            for layer, keys in zip(self.layers, self._keys, strict=True)
            for (name, flat), shape in zip(keys, layer.param_shapes().values(), strict=True)
        }

    def statistics(self) -> tuple[str, ...]:
        return tuple(
            f"{i}.{name}" for i, layer in enumerate(self.layers) for name in layer.statistics()
        )

    def init_params(self, *, rng, backend, dtype="float32"):
        """Fresh parameters, layer by layer, from one host generator ``rng``
        (``backend.host_generator(seed)``)."""
        params = {}
        for layer, keys in zip(self.layers, self._keys, strict=True):
            own = layer.init_params(rng=rng, backend=backend, dtype=dtype)
            params.update({flat: own[name] for name, flat in keys})
        return params

    def forward(self, params, X, *, train=False, rng=None, xp=None, input_grad=True, updates=None):
        xp = array_namespace(X) if xp is None else xp
        backprops = []
        for i, (layer, keys) in enumerate(zip(self.layers, self._keys, strict=True)):
            own = {name: params[flat] for name, flat in keys}
            # A layer's dX is wanted only if a layer with parameters (or the caller) precedes it.
            wants_dx = input_grad or i > self._first_with_params
            kwargs = {"train": train, "rng": rng, "xp": xp, "input_grad": wants_dx}
            if updates is None or not self._with_statistics[i]:
                X, backprop = layer.forward(own, X, **kwargs)
            else:  # only a layer with statistics takes `updates`
                new: dict[str, Array] = {}
                X, backprop = layer.forward(own, X, updates=new, **kwargs)
                updates.update({f"{i}.{name}": value for name, value in new.items()})
            backprops.append(backprop)
        # Without an input gradient, backward stops at the first layer that has parameters.
        stop = 0 if input_grad else self._first_with_params

        def backprop_all(dY):
            grads = {}
            for i in range(len(backprops) - 1, stop - 1, -1):
                dY, own = backprops[i](dY)
                grads.update({flat: own[name] for name, flat in self._grad_keys[i]})
            return (dY if input_grad else None), grads

        return X, backprop_all

    def __eq__(self, other: object) -> bool:
        # Layer by layer, types included: a user's subclass named like one of anynet's layers
        # has the same config, and must not pass for it (a model file would rebuild the wrong
        # class).
        return type(self) is type(other) and self.layers == other.layers

    def __hash__(self) -> int:
        return hash(self.layers)

    def __call__(self, params: Params, X: Array, *, xp: Any = None) -> Array:
        """Inference: the output for ``X``, dropout off."""
        return self.forward(params, X, train=False, xp=xp, input_grad=False)[0]

    def get_config(self):
        return {"layers": [[type(layer).__name__, layer.get_config()] for layer in self.layers]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Sequential:
        return cls(*(layer_from_config(name, cfg) for name, cfg in config["layers"]))

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Sequential(\n{inner}\n)"


# Every public layer, as registered: ``from anynet.nn.layers import *`` (anynet.nn does) gives
# a new layer class without anyone listing it.
__all__ += sorted(LAYERS)
