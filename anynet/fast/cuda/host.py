"""The CUDA kernels of :mod:`anynet.fast.cuda.source` built as host C++ and run on NumPy arrays.

This is how the kernels are tested on machines without a GPU: the kernel source is compiled
unchanged by the system's C++ compiler, with a prelude that makes ``__global__`` and
``__device__`` plain functions and runs each grid-stride loop as one thread over every element.
What the GPU adds — parallel threads, its own rounding of fused multiply-adds — is not covered;
the arithmetic, the argument order and the Python launch layer are. One call runs serially, so
this is for tests, not speed.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from anynet.fast.cuda.source import CTYPES, SIGNATURES, SOURCE

__all__ = ["HostLauncher", "host_compiler"]

PRELUDE = r"""
#include <math.h>
struct an_dim3 { unsigned int x; };
static const an_dim3 blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
"""

_C_PARAMS = {
    "T*": "{T}*",
    "i64*": "long long*",
    "u8*": "unsigned char*",
    "bool*": "bool*",
    "T": "{T}",
    "i64": "long long",
    "i32": "int",
}
_POINTEE = {"i64*": np.int64, "u8*": np.uint8, "bool*": np.bool_}
_SCALARS = {"i64": ctypes.c_longlong, "i32": ctypes.c_int}
_FLOATS = {"float": ctypes.c_float, "double": ctypes.c_double}


def host_compiler() -> str | None:
    """The C++ compiler the host build uses, or ``None`` if there is none."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def host_source() -> str:
    """The prelude, the kernels' source unchanged, and a C entry point per instantiation."""
    wrappers = []
    for name, sig in SIGNATURES.items():
        for T in CTYPES.values():
            params = ", ".join(f"{_C_PARAMS[k].format(T=T)} a{i}" for i, k in enumerate(sig))
            args = ", ".join(f"a{i}" for i in range(len(sig)))
            wrappers.append(f'extern "C" void {name}_{T}({params}) {{ {name}<{T}>({args}); }}')
    return PRELUDE + SOURCE + "\n".join(wrappers) + "\n"


class HostLauncher:
    """Runs the kernels on NumPy arrays, compiled for the host: the launcher
    :class:`~anynet.fast.cuda.ops.CudaOps` takes in the tests.

    Each launch also checks what a GPU launch cannot: that every array is C-contiguous and of
    the type its parameter declares (a wrong one on a GPU is silently misread). ``None`` (a
    pointer the kernel does not read) is passed as a null pointer.
    """

    def __init__(self, build_dir: str | Path | None = None) -> None:
        cxx = host_compiler()
        if cxx is None:
            raise RuntimeError("HostLauncher needs a C++ compiler (c++, g++ or clang++)")
        source = host_source()
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        where = Path(build_dir or tempfile.gettempdir()) / f"anynet-cuda-host-{digest}"
        where.mkdir(parents=True, exist_ok=True)
        lib = where / "kernels.so"
        if not lib.exists():
            src = where / "kernels.cpp"
            src.write_text(source)
            # -ffp-contract=off: multiply and add round separately, as NumPy's passes do.
            flags = ["-O1", "-std=c++14", "-shared", "-fPIC", "-ffp-contract=off"]
            tmp = where / f"kernels.{id(self)}.so"
            subprocess.run([cxx, *flags, "-o", str(tmp), str(src)], check=True, capture_output=True)
            tmp.replace(lib)  # atomic: a concurrent build never loads half a file
        self._lib = ctypes.CDLL(str(lib))

    def launch(self, name: str, dtype: str, n: int, args: tuple) -> None:
        T = CTYPES[dtype]
        sig = SIGNATURES[name]
        passed: list[Any] = []
        for i, (kind, a) in enumerate(zip(sig, args, strict=True)):
            if kind.endswith("*") and a is None:
                passed.append(ctypes.c_void_p(None))
            elif kind.endswith("*"):
                want = np.dtype(dtype) if kind == "T*" else np.dtype(_POINTEE[kind])
                if a.dtype != want or not a.flags.c_contiguous:
                    raise TypeError(
                        f"kernel {name}<{T}>, argument {i}: expected a C-contiguous {want} "
                        f"array, got {a.dtype} (C-contiguous: {a.flags.c_contiguous})"
                    )
                passed.append(ctypes.c_void_p(a.ctypes.data))
            elif kind == "T":
                passed.append(_FLOATS[T](a))
            else:
                passed.append(_SCALARS[kind](a))
        getattr(self._lib, f"{name}_{T}")(*passed)
