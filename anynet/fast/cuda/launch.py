"""Launching the kernels with CuPy: compiled once per device by NVRTC."""

from __future__ import annotations

from typing import Any

import numpy as np

from anynet.fast.cuda.source import CTYPES, NAME_EXPRESSIONS, NVRTC_OPTIONS, SIGNATURES, SOURCE

__all__ = ["CupyLauncher"]


class CupyLauncher:
    """Runs the kernels of :data:`~anynet.fast.cuda.source.SOURCE` on ``device`` with CuPy.

    A kernel reads its arguments as raw bytes, so each scalar is passed as the NumPy type of its
    declared C type (a Python float where a ``float`` is declared would be read as half a
    double); the types are worked out once per kernel, not per launch.
    """

    THREADS = 256
    MAX_BLOCKS = 4096  # enough to fill a GPU; the grid-stride loop takes the rest

    def __init__(self, cupy: Any, device: Any) -> None:
        with device:
            module = cupy.RawModule(
                code=SOURCE, options=NVRTC_OPTIONS, name_expressions=NAME_EXPRESSIONS
            )
            self.prepare({n: module.get_function(n) for n in NAME_EXPRESSIONS})

    def prepare(self, functions: dict[str, Any]) -> None:
        """Bind each kernel and float type to its compiled function and its scalars' types."""
        self._calls = {}
        for name, sig in SIGNATURES.items():
            for dtype, ctype in CTYPES.items():
                scalar = {"T": np.dtype(dtype).type, "i64": np.int64, "i32": np.int32}
                types = tuple(scalar.get(kind) for kind in sig)
                self._calls[name, dtype] = (functions[f"{name}<{ctype}>"], types)

    def launch(self, name: str, dtype: str, n: int, args: tuple) -> None:
        function, types = self._calls[name, dtype]
        # A pointer the kernel never reads still needs a valid one: the call's first array.
        stand_in = next(a for a, t in zip(args, types, strict=True) if t is None and a is not None)
        passed = tuple(
            (stand_in if a is None else a) if t is None else t(a)
            for t, a in zip(types, args, strict=True)
        )
        blocks = min((n + self.THREADS - 1) // self.THREADS, self.MAX_BLOCKS)
        function((blocks,), (self.THREADS,), passed)
