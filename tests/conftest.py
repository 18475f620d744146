"""Shared fixtures: every test that takes ``backend`` runs once per selected backend.

Select backends with ``pytest --backend NAME`` (repeatable) or ``ANYNET_TEST_BACKENDS=a,b``;
by default every backend that works here runs. A selected backend that cannot run here (CuPy
without a GPU) gives one skip with the one-line reason, never an error.

Tests that do not take ``backend`` (file formats, the CLI, plots, scikit-learn's checks) do not
depend on the backend under test: they run once, when numpy is among the selected backends,
unless marked ``every_session`` (tests that compare the backends installed in a session), or
``needs_backend(NAME)``: those need NAME's library (a PyTorch generator's state in a file) and
run when NAME is selected instead, so in NAME's nox session, where that library is installed;
the numpy session installs neither PyTorch nor array-api-strict, and a test that skipped there
for want of them would run nowhere.

array-api-strict runs on its non-default ``device1``, so an allocation that forgets
``device=`` fails loudly, and with the strict flags on: no boolean indexing and no
data-dependent shapes.
"""

from __future__ import annotations

import os

import pytest

import anynet
from anynet.errors import BackendUnavailableError

# The spec each backend name is tested under (strict: a non-default device on purpose).
TEST_SPECS = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict:device1",
    "torch": "torch",
    "cupy": "cupy",
}


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        choices=sorted(TEST_SPECS),
        help="run backend-parametrised tests on this backend (repeatable; default: all here)",
    )


def selected_backends(config) -> list[str]:
    chosen = config.getoption("--backend")
    if not chosen and os.environ.get("ANYNET_TEST_BACKENDS"):
        chosen = [s.strip() for s in os.environ["ANYNET_TEST_BACKENDS"].split(",") if s.strip()]
    if not chosen:
        chosen = anynet.available_backends()
    return chosen


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "every_session: run in every backend session, not only the numpy one"
    )
    config.addinivalue_line(
        "markers",
        "needs_backend(name): backend-independent, but needs that backend's library: "
        "runs in its session instead of the numpy one",
    )
    try:
        import array_api_strict
    except ImportError:
        return
    array_api_strict.set_array_api_strict_flags(boolean_indexing=False, data_dependent_shapes=False)


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("backend", names, ids=names, indirect=True)


@pytest.fixture
def backend(request) -> anynet.Backend:
    """The backend under test (see the module docstring)."""
    try:
        return anynet.get_backend(TEST_SPECS.get(request.param, request.param))
    except BackendUnavailableError as exc:
        pytest.skip(str(exc).split(". ")[0])


def _unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run here, in one line, or None if it can."""
    try:
        anynet.get_backend(TEST_SPECS.get(name, name))
    except BackendUnavailableError as exc:
        return str(exc).split(". ")[0]
    return None


def pytest_collection_modifyitems(config, items):
    selected = selected_backends(config)
    why_not: dict[str, str | None] = {}
    for item in items:
        uses_backend = "backend" in getattr(item, "fixturenames", ())
        if uses_backend or item.get_closest_marker("every_session") is not None:
            continue
        needs = item.get_closest_marker("needs_backend")
        home = needs.args[0] if needs else "numpy"
        if home not in selected:
            reason = f"backend-independent: runs in the {home} session"
            item.add_marker(pytest.mark.skip(reason=reason))
        elif needs:
            # Selected but not installed here: one skip with the reason, as the fixture gives.
            if home not in why_not:
                why_not[home] = _unavailable(home)
            if why_not[home]:
                item.add_marker(pytest.mark.skip(reason=why_not[home]))
