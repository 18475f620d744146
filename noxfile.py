"""Test sessions, one per backend, and lint.

    nox                        # what CI runs: lint, numpy, numpy_no_numba, array_api_strict,
                               # torch, cupy, distributed
    nox -s torch               # one backend
    nox --no-venv -s cupy      # on a machine that already has the packages and no index
    nox -s bench               # anynet against PyTorch and scikit-learn (not part of `nox`)
    nox --no-venv -s bench -- --device gpu   # the GPU comparison, on a GPU machine

Each backend session runs the whole suite with that backend selected for the
backend-parametrised tests (``pytest --backend NAME``). The cupy session skips its GPU tests
with a one-line reason where no CUDA device is present, and still proves the clear error.
"""

from __future__ import annotations

import nox

nox.options.sessions = [
    "lint",
    "numpy",
    "numpy_no_numba",
    "array_api_strict",
    "torch",
    "cupy",
    "distributed",
]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = False

# PyTorch pinned: an unpinned `torch` pulls gigabytes of CUDA packages; 2.13.0 is a CPU build.
TORCH = "torch==2.13.0"
# ruff pinned: a new release adds rules, and lint must not fail on a checkout that passed.
RUFF = "ruff==0.17.6"
STRICT_FLAGS = {
    "ARRAY_API_STRICT_BOOLEAN_INDEXING": "False",
    "ARRAY_API_STRICT_DATA_DEPENDENT_SHAPES": "False",
}


def install(session: nox.Session, *args: str) -> None:
    """pip install into the session's venv; with --no-venv the packages must already be there."""
    if session.venv_backend == "none":
        session.log(f"--no-venv: not installing {' '.join(args)}; using what is installed")
        return
    session.install(*args)


def pytest(session: nox.Session, backend: str, *args: str, **env: str) -> None:
    # SCIPY_ARRAY_API lets scikit-learn's array-API estimator check run (it must be set before
    # scikit-learn is imported, hence here rather than in the tests).
    env = {"SCIPY_ARRAY_API": "1", **env}
    session.run("python", "-m", "pytest", f"--backend={backend}", *args, *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: style, imports, and the ban on numpy/cupy/torch imports inside anynet.nn."""
    install(session, RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def numpy(session: nox.Session) -> None:
    """The suite on NumPy (the default backend), and every docstring example in anynet."""
    install(session, "-e", ".[test]")
    pytest(session, "numpy", "--doctest-modules")


@nox.session
def numpy_no_numba(session: nox.Session) -> None:
    """The suite on NumPy with numba uninstalled, as on a platform numba does not support: the
    code that runs without numba (the fast path's NumPy-only kernels, imports that find no
    numba) tested as it is installed there, not only switched on with ANYNET_NUMBA=0."""
    if session.venv_backend == "none":
        # It would uninstall numba from the environment that runs nox.
        session.skip("--no-venv: this session uninstalls numba, so it needs a venv of its own")
    install(session, "-e", ".[test]")
    session.run("python", "-m", "pip", "uninstall", "-y", "numba", "llvmlite")
    pytest(session, "numpy")


@nox.session
def array_api_strict(session: nox.Session) -> None:
    """The suite on array-api-strict, with boolean indexing and data-dependent shapes off."""
    install(session, "-e", ".[test,strict]")
    pytest(session, "array_api_strict", **STRICT_FLAGS)


@nox.session
def torch(session: nox.Session) -> None:
    """The suite on PyTorch tensors (CPU here; no autograd), with the autograd oracle tests."""
    install(session, TORCH, "-e", ".[test,strict]")
    pytest(session, "torch")


@nox.session
def cupy(session: nox.Session) -> None:
    """The suite on CuPy. Without a CUDA device its GPU tests skip with the reason, the test
    that CuPy-without-GPU gives the clear anynet error runs against the real CuPy, and NVRTC
    (which needs no GPU) compiles anynet's CUDA kernels as CuPy would."""
    install(session, "-e", ".[test,cuda12]", "cuda-toolkit[nvrtc]==12.*")
    pytest(session, "cupy")


@nox.session
def distributed(session: nox.Session) -> None:
    """Data-parallel training on real MPI ranks: the distributed tests start ``mpiexec -n 2``
    and ``-n 3`` on tiny data. MPICH's wheel brings an ``mpiexec`` that runs as root with no
    settings; the other sessions install no mpi4py, and these tests skip there. One BLAS thread
    per process: the ranks are compared bit for bit with one process."""
    install(session, "-e", ".[test,mpi]", "mpich")
    pytest(
        session,
        "numpy",
        "tests/test_distributed.py",
        "tests/test_distributed_mpi.py",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        NUMBA_NUM_THREADS="1",
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Time anynet against its peers and write bench/results/ (arguments go to
    ``python -m bench``, e.g. ``-- --device gpu`` or ``-- --batch 64 --rounds 3``)."""
    install(session, TORCH, "-e", ".")
    session.run("python", "-m", "bench", *session.posargs)
