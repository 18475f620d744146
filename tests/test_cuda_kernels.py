"""The CUDA family's own machinery: the generated source, NVRTC, and the launch layers.

The kernels' arithmetic is checked against the generic engine with every other family in
tests/test_fast.py (built for the host everywhere, and on a GPU where there is one).
"""

from __future__ import annotations

import numpy as np
import pytest

from anynet.fast import activations as A
from anynet.fast.cuda.host import HostLauncher, host_compiler
from anynet.fast.cuda.launch import CupyLauncher
from anynet.fast.cuda.ops import CudaOps
from anynet.fast.cuda.source import NAME_EXPRESSIONS, NVRTC_OPTIONS, SOURCE, c_expression
from anynet.fast.ops import AdamHyper

# Every session: the cupy one is where NVRTC is.
pytestmark = pytest.mark.every_session


def test_every_activation_of_the_table_is_in_the_source():
    for row in A.TABLE:
        assert f"#define {row.name} {row.code}" in SOURCE
        assert f"case {row.name}: return {c_expression(row.forward, ('z', 'slope'))};" in SOURCE


def test_numbers_become_the_kernels_float_type():
    """A bare 0.5 in C is a double, which would promote a float kernel's arithmetic."""
    assert c_expression("where(z > 0, 0.5 * z, -z)", ("z",)) == (
        "an_where((z > T(0.0)), (T(0.5) * z), (-z))"
    )


@pytest.mark.parametrize(
    "expression",
    ["z ** 2", "__import__('os')", "z if z > 0 else 0", "slope.real", "f(z)", "0 < z < 1"],
)
def test_expressions_outside_the_language_are_refused(expression):
    with pytest.raises(ValueError, match=r"outside the language|is not one of"):
        A.parse(expression, ("z", "slope"))


def test_the_kernels_compile_with_nvrtc_as_cupy_asks():
    """NVRTC, which compiles the kernels on a GPU machine, needs no GPU: where CuPy and NVRTC
    are installed (the cupy test session), compile exactly what CupyLauncher compiles."""
    compiler = pytest.importorskip("cupy.cuda.compiler", exc_type=ImportError)
    program = getattr(compiler, "_NVRTCProgram", None)
    if program is None:
        pytest.skip("this CuPy has no _NVRTCProgram to compile with")
    try:
        prog = program(SOURCE, "anynet_kernels.cu", name_expressions=NAME_EXPRESSIONS)
    except Exception as exc:  # NVRTC's library missing: nothing to compile with here
        pytest.skip(f"NVRTC not available: {exc!r}")
    ptx, mapping = prog.compile((*NVRTC_OPTIONS, "-arch=compute_70"))
    assert set(mapping) == set(NAME_EXPRESSIONS)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert all(f".entry {mangled}" in ptx for mangled in mapping.values())


def test_a_wrongly_typed_argument_is_refused_on_the_host(tmp_path):
    if host_compiler() is None:
        pytest.skip("no C++ compiler to build the CUDA kernels for the host")
    ops = CudaOps(np, HostLauncher(tmp_path))
    relu = A.TABLE[1]
    Z = np.zeros((3, 4), "float32")
    with pytest.raises(TypeError, match="argument 1: expected a C-contiguous float32"):
        ops.bias_act(Z, np.zeros(4, "float64"), relu, 0.0, Z)
    Zt = np.zeros((4, 3), "float32").T
    with pytest.raises(TypeError, match="argument 0: expected a C-contiguous"):
        ops.bias_act(Zt, np.zeros(4, "float32"), relu, 0.0, Zt)


def test_cupy_launches_pass_each_scalar_as_its_c_type():
    """A GPU kernel reads its arguments as raw bytes: a Python float where it declares a float
    would be read as half a double. CupyLauncher with recording stand-ins for the compiled
    functions (no GPU needed)."""
    launcher = object.__new__(CupyLauncher)  # without compiling: no GPU here
    calls = []

    def recorder(name):
        return lambda grid, block, args: calls.append((name, grid, block, args))

    launcher.prepare({n: recorder(n) for n in NAME_EXPRESSIONS})
    ops = CudaOps(np, launcher)
    leaky = next(row for row in A.TABLE if row.param)
    Z = np.zeros((300, 5), np.float32)
    ops.bias_act(Z, None, leaky, 0.2, Z)
    name, grid, block, args = calls[-1]
    assert (name, grid, block) == ("bias_act<float>", (6,), (256,))
    assert [type(a) for a in args] == [
        np.ndarray,
        np.ndarray,  # no bias: a stand-in pointer, never read
        np.ndarray,
        np.int64,
        np.int64,
        np.int32,
        np.int32,
        np.float32,
    ]
    assert args[3:] == (300, 5, 0, leaky.code, np.float32(0.2))
    big = np.zeros(2 * 10**6)  # more elements than MAX_BLOCKS * THREADS
    ops.adam(big, big, big, big, 1, AdamHyper(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8))
    name, grid, _, args = calls[-1]
    assert name == "adam<double>" and grid == (CupyLauncher.MAX_BLOCKS,)  # the loop does the rest
    assert all(type(a) is np.float64 for a in args[5:])
