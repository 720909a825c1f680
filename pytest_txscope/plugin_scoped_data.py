"""The plugin's fixtures for data written once per run, module or class: sandboxes of wider scopes, in which
each test's sandbox nests (`pytest_txscope.plugin_scopes.wide_sandbox` does the work)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .core import Engine
from .plugin_scopes import wide_sandbox
from .sandbox import Sandbox

__all__ = ["db_class_sandbox", "db_module_sandbox", "db_run_sandbox"]


@pytest.fixture(scope="session")
def db_run_sandbox(request: pytest.FixtureRequest, db_engine: Engine) -> Iterator[Sandbox]:
    """A sandbox for the rest of the run (session scope), for data written once and seen by every later test.

    Request it from a session-scoped fixture that writes the data through ``db_run_sandbox.session()`` (or
    the app, whose engines it pins). Each test's sandbox nests in it (a savepoint): the test rolls back to the
    data; the data is rolled back at the end of the run. ``commit=True`` tests are refused while it is active.
    """
    yield from wide_sandbox(request, db_engine, "session")


@pytest.fixture(scope="module")
def db_module_sandbox(request: pytest.FixtureRequest, db_engine: Engine) -> Iterator[Sandbox]:
    """A sandbox for the rest of the module (module scope), for data written once per module::

        @pytest.fixture(scope="module")
        def catalog(db_module_sandbox):
            db_module_sandbox.session().execute("INSERT INTO products (sku) VALUES ('tea')")

    Each test that runs while it is active (request ``catalog`` in each test that needs the data) nests its
    sandbox in it and rolls back to the data; the data is rolled back when the module ends. ``commit=True``
    tests are refused while it is active.
    """
    yield from wide_sandbox(request, db_engine, "module")


@pytest.fixture(scope="class")
def db_class_sandbox(
    request: pytest.FixtureRequest, db_module_sandbox: Sandbox, db_engine: Engine
) -> Iterator[Sandbox]:
    """A sandbox for the rest of the class (class scope), for data written once per test class, as
    ``db_module_sandbox`` does per module (in which it nests: the module's data is seen too)."""
    yield from wide_sandbox(request, db_engine, "class")
