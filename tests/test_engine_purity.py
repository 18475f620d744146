"""The engine is pure Array API code: no module of anynet.nn imports NumPy, CuPy or PyTorch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import anynet.nn

ENGINE = Path(anynet.nn.__file__).parent
BANNED = {"numpy", "cupy", "torch", "jax", "cupyx"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_engine_module_imports_an_array_library():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) >= 8, files  # the test looks where the engine really is
    offenders = {f.name: imported_roots(f) & BANNED for f in files if imported_roots(f) & BANNED}
    assert not offenders, f"engine modules import array libraries directly: {offenders}"


def test_the_purity_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\nfrom torch import nn\n")
    assert imported_roots(bad) & BANNED == {"numpy", "torch"}


def test_importing_the_engine_alone_loads_no_cupy_or_torch():
    code = (
        "import sys, anynet.nn; "
        "print(sorted(m for m in ('cupy', 'torch', 'array_api_strict') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
