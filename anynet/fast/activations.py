"""The activations the fused step runs: one table row each, and the language rows are written in.

A row names an engine layer (:mod:`anynet.nn.layers`), and gives its forward and backward math
as two expressions in a small language that is the common ground of Python and C: numbers, the
variables below, ``+ - * /``, comparisons and a few functions. NumPy evaluates the expressions
(:mod:`anynet.fast.numpy_ops`) and the CUDA source is generated from them
(:mod:`anynet.fast.cuda.source`), so an activation's math is written once for every kernel
family, and its code in the kernels is its position in :data:`TABLE`.

Variables: ``z`` the input, ``a`` the output, ``d`` the gradient arriving from above, ``slope``
the layer's parameter (see :attr:`Activation.param`). ``forward`` reads ``z`` (and ``slope``);
``backward`` reads ``d`` and the array the layer's ``derivative_from`` names: ``a`` for
``'output'``, ``z`` for ``'input'``. Functions: ``where(c, x, y)`` (both ``x`` and ``y`` are
evaluated), ``exp``, ``log1p``, ``sqrt``, ``tanh``, ``abs`` and an overflow-free ``sigmoid``.

Adding an activation with a fast path on every kernel family: its functions in
:mod:`anynet.nn.functional`, its layer in :mod:`anynet.nn.layers`, and a row here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from anynet.nn import layers as L

__all__ = ["FUNCTIONS", "IDENTITY", "TABLE", "Activation", "activation_of"]

#: The functions an expression may call.
FUNCTIONS = ("abs", "exp", "log1p", "sigmoid", "sqrt", "tanh", "where")

_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub)
_COMPARISONS = (ast.Gt, ast.GtE, ast.Lt, ast.LtE, ast.Eq, ast.NotEq)
_NODES = (
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Call,
    ast.Name,
    ast.Load,
    *_OPERATORS,
    *_COMPARISONS,
)


@dataclass(frozen=True)
class Activation:
    """One activation as the kernels know it.

    Parameters
    ----------
    layer : type or None
        The engine's layer class; ``None`` for the identity (a Dense layer with nothing after).
    forward, backward : str
        The math, in the language of this module.
    param : str, optional
        The layer attribute passed to the kernels as ``slope`` (LeakyReLU's
        ``negative_slope``).
    """

    layer: type | None
    forward: str
    backward: str
    param: str | None = None
    code: int = field(default=0, compare=False)

    @property
    def name(self) -> str:
        """The C name of the code, e.g. ``'AN_LEAKYRELU'``."""
        return "AN_" + ("identity" if self.layer is None else self.layer.__name__).upper()

    @property
    def saved(self) -> str:
        """The variable ``backward`` reads besides ``d``: ``'a'`` (output) or ``'z'`` (input)."""
        if self.layer is None or self.layer.derivative_from == "output":
            return "a"
        return "z"

    def slope(self, layer: Any) -> float:
        """The ``slope`` a layer instance passes to the kernels."""
        return float(getattr(layer, self.param)) if self.param else 0.0


def parse(expression: str, variables: tuple[str, ...]) -> ast.expr:
    """The syntax tree of ``expression``, after checking it stays inside the language."""
    tree = ast.parse(expression, mode="eval").body
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in (*variables, *FUNCTIONS):
            raise ValueError(f"{expression!r}: {node.id!r} is not one of {variables}")
        ok = isinstance(node, _NODES) or (
            isinstance(node, ast.Constant) and type(node.value) in (int, float)
        )
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords
        if isinstance(node, ast.Compare):
            ok = len(node.ops) == 1
        if not ok:
            raise ValueError(f"{expression!r}: {ast.unparse(node)!r} is outside the language")
    return tree


def _table(*rows: Activation) -> tuple[Activation, ...]:
    numbered = tuple(
        Activation(r.layer, r.forward, r.backward, r.param, code) for code, r in enumerate(rows)
    )
    for row in numbered:  # a row outside the language fails at import, not in a kernel
        parse(row.forward, ("z", "slope"))
        parse(row.backward, ("d", row.saved, "slope"))
    return numbered


#: Every activation a fused step runs; a row's position is its code in the kernels.
TABLE = _table(
    Activation(None, "z", "d"),
    Activation(L.ReLU, "where(z > 0, z, 0)", "where(a > 0, d, 0)"),
    Activation(L.Sigmoid, "sigmoid(z)", "d * a * (1 - a)"),
    Activation(L.Tanh, "tanh(z)", "d * (1 - a * a)"),
    Activation(
        L.LeakyReLU,
        "where(z > 0, z, z * slope)",
        "where(a > 0, d, d * slope)",
        param="negative_slope",
    ),
    Activation(L.SiLU, "z * sigmoid(z)", "d * sigmoid(z) * (1 + z * (1 - sigmoid(z)))"),
)

IDENTITY = TABLE[0]
_BY_LAYER = {row.layer: row for row in TABLE if row.layer is not None}


def activation_of(layer: Any) -> Activation | None:
    """The row of ``layer``'s class (exactly: a subclass may change the math), else ``None``."""
    return _BY_LAYER.get(type(layer))
