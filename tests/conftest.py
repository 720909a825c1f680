"""Fixtures for the contract tests: every test that asks for ``backend`` runs once per database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_txscope import Engine

from .aio_harness import api_of, close_engine
from .backends import ALL, ALL_ASYNC, NAMED_ONLY, Backend, Peer, drop_worker_databases, make_backend
from .generated_runs import clean_pytester

# password_scan: fails any test whose output shows the test password (and wraps the pytester fixture).
pytest_plugins = ["pytester", "tests.password_scan"]

try:
    # Imported once in this process. Generated projects run in it too (pytester's in-process runs), and each
    # run forgets the modules it imported: a later run importing SQLAlchemy's PostgreSQL dialects again would
    # register their SQL functions again, which SQLAlchemy warns about (an error here). Seen with psycopg2,
    # whose SQLAlchemy dialect module is loaded by name.
    import sqlalchemy.dialects.mysql
    import sqlalchemy.dialects.postgresql  # noqa: F401
except ImportError:  # the suite without SQLAlchemy skips its tests
    pass

ITEMS_DDL = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE, qty INTEGER)"


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_worker_databases()  # under pytest-xdist: the worker's databases (tests/backends.py)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests that check through an independent connection cannot run on :memory: (no second connection
    # reaches it): they are not generated for it, rather than generated and skipped.
    # Backend-specific tests say so with @pytest.mark.backends("mysql", "sqlite-file", ...): generated only
    # for those backends (or families: "postgresql" is every PostgreSQL driver). A test of one driver's quirk
    # adds exact=True: "postgresql" is then the backend of that name alone (psycopg 3).
    # Tests marked asyncio_twin also run through the asyncio API (AsyncEngine) on each asyncio driver.
    if "backend" in metafunc.fixturenames:
        twin = metafunc.definition.get_closest_marker("asyncio_twin")
        if twin is None or twin.args == (False,):
            every = ALL
        else:  # asyncio_twin("only"): the asyncio drivers alone
            every = ALL_ASYNC if twin.args == ("only",) else ALL + ALL_ASYNC
        wants_peer = "peer" in metafunc.fixturenames
        marker = metafunc.definition.get_closest_marker("backends")
        wanted = set(marker.args) if marker else {"sqlite", "postgresql", "mysql"}
        exact = bool(marker and marker.kwargs.get("exact"))
        names = [
            b
            for b in every
            if not (wants_peer and b == "sqlite-memory")
            and (b in wanted or (not exact and b.split("-")[0] in wanted))
        ]
        names += [b for b in NAMED_ONLY if b in wanted and b not in names]
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's ``pytester`` (with the password scan), whose runs never see the variables of this run: no
    ``PYTEST_XDIST_WORKER``, ``PYTEST_*`` or ``TXSCOPE_URL`` of ours (tests/generated_runs.py)."""
    return clean_pytester(pytester, monkeypatch)


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each database backend in turn; PostgreSQL and MySQL skip (or fail, when required) if unreachable."""
    yield from make_backend(request.param, tmp_path)


@pytest.fixture
def engine(backend: Backend) -> Iterator[Engine]:
    """An engine on ``backend`` with a fresh ``items`` table, dropped afterwards (for an asyncio driver, an
    `AsyncEngine` behind the sync proxy of tests/aio_harness.py)."""
    eng = backend.engine()
    eng.executescript(f"DROP TABLE IF EXISTS items; {ITEMS_DDL}")
    yield eng
    eng.executescript("DROP TABLE IF EXISTS items")
    close_engine(eng)


@pytest.fixture
def api(engine: Engine) -> Any:
    """``transaction``, ``ensure_transaction`` and ``current_session`` of ``engine``'s flavour: the sync
    functions, or the asyncio API's run in the async engine's task (tests/aio_harness.py)."""
    return api_of(engine)


@pytest.fixture
def peer(backend: Backend, engine: Engine) -> Iterator[Peer]:
    """An independent connection to ``backend``'s database (tests using it are not generated for :memory:)."""
    p = backend.peer()
    yield p
    p.close()
