"""The pytest plugin (``-p txscope``): every test that asks for it runs in a sandbox rolled back afterwards.

Import-light on purpose: pytest loads it in every run where it is installed, so drivers and the database are
touched only when a test asks for them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .core import AsyncSession, Engine, Session
from .core.context import current_scope
from .errors import BackendUnavailableError, DatabaseInUseError, ImportPathError, UnsafeDatabaseError
from .import_paths import import_object
from .intercept import Interception
from .options import SETTINGS, Settings, add_options, resolve
from .places import add_library
from .plugin_asyncio import async_session_of
from .plugin_capture import db_assert_num_queries, db_capture_on_commit, db_capture_queries
from .plugin_database import EMBEDDED, STATE, RunState, explain_missing_database, sqlalchemy_module
from .plugin_env import ENV, header_lines, set_environment
from .plugin_modes import blocked, commit_mode
from .plugin_scoped_data import db_class_sandbox, db_module_sandbox, db_run_sandbox
from .plugin_scopes import (
    FAILURE,
    INTERCEPTION,
    MARKER,
    SANDBOXED,
    SANDBOXES,
    marker_options,
    run_engine,
    sandbox_scope,
    sandboxed,
)
from .plugin_teardown import check_leaks, explain_lock_wait, leave_blocks
from .sandbox import Sandbox

__all__ = [
    "ImportPathError",
    "async_db_session",
    "db_assert_num_queries",
    "db_capture_on_commit",
    "db_capture_queries",
    "db_class_sandbox",
    "db_engine",
    "db_module_sandbox",
    "db_run_sandbox",
    "db_sandbox",
    "db_sandboxes",
    "db_session",
    "import_object",
    "sa_session",
]

_CRASHED = pytest.StashKey[list[str]]()  # ids of pytest-xdist workers that crashed (on the controller)


# ------------------------------------------------------------------------------------------------ hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # The earliest hook that sees the options and ini keys, before pytest imports the first conftest.py (the
    # application's settings may be read there, or in the modules it imports).
    set_environment(early_config)


def pytest_configure(config: pytest.Config) -> None:
    # Where a test's code began a transaction is its own line, not one inside the libraries it called.
    add_library("sqlalchemy", "factory", "pytest_factoryboy")
    config.addinivalue_line(
        "markers",
        f"{MARKER}(commit=False, threads=None, databases=None, reset_sequences=False): run the test in a "
        "database sandbox rolled back afterwards; databases=['default', 'reports'] sandboxes the txscope_databases "
        "named too; reset_sequences=True puts id counters back where the run began first; "
        'threads="strict" refuses other threads, "shared" lets them in (statement by statement; the default '
        "is txscope_threads); commit=True runs the test with real commits instead and cleans the tables it "
        "changed",
    )
    config.stash[SETTINGS] = resolve(config)
    config.stash[STATE] = RunState()
    if config.stash[SETTINGS].connect:  # the app's own sqlite3.connect() & co. (txscope_connect), for the run
        interception = config.stash[INTERCEPTION] = Interception(config.stash[SETTINGS].connect)
        interception.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    interception = config.stash.get(INTERCEPTION, None)
    if interception is not None:
        interception.uninstall()


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS]
    backend = settings.url.backend if settings.url else "sqlite"
    savepoints = settings.statement_savepoints
    if savepoints == "auto":
        savepoints = "on" if backend == "postgresql" else "off"
    extras = []
    if settings.check_leaks:
        extras.append("leak check")
    if settings.block:
        extras.append("blocking")
    if settings.reuse_db:
        extras.append("reuse-db")
    tail = f", {', '.join(extras)}" if extras else ""
    embedded = config.stash.get(EMBEDDED, None)
    target = f"embedded SQLite in {embedded.database}" if embedded else settings.describe_target()
    others = ", ".join(f"{d.name} = {d.url}" for d in settings.databases)
    return [
        f"txscope: {target} [{backend}, from {settings.url_source}]; rollback per test, "
        f"statement savepoints {savepoints}{tail}",
        *([f"txscope_databases: {others}"] if others else []),  # passwords masked, as in the line above
        *header_lines(config),
    ]


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    settings = config.stash.get(SETTINGS, None)
    if (
        settings is None
        or settings.reuse_db
        or not settings.builds()
        or os.environ.get("PYTEST_XDIST_WORKER")
    ):
        return
    crashed = config.stash.get(_CRASHED, None)
    state = config.stash.get(STATE, None)
    if settings.databases and (crashed or (state is not None and state.may_have_templates)):
        from .plugin_databases_build import drop_leftovers

        drop_leftovers(settings.databases, crashed or [], settings.allow_databases, settings.lock_timeout)
    if not settings.schema:
        return
    if crashed:  # a worker drops its database when it ends; one that crashed could not
        from .plugin_teardown import drop_crashed_workers

        with contextlib.suppress(BackendUnavailableError, UnsafeDatabaseError, DatabaseInUseError):
            drop_crashed_workers(settings.url, crashed, settings.allow_databases)
    if (
        state is not None
        and state.may_have_templates
        and settings.url is not None
        and settings.url.backend == "postgresql"
    ):
        from .provision import drop_templates

        # A server that went away has been reported by the tests already; the end of the run stays quiet. So
        # does a database name that is not a test database's: provision() refused it before building anything.
        with contextlib.suppress(BackendUnavailableError, UnsafeDatabaseError, DatabaseInUseError):
            drop_templates(settings.url, allow=settings.allow_databases, lock_timeout=settings.lock_timeout)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, on the controller: a worker went down; with an error, it crashed."""
    state = node.config.stash.get(STATE, None)
    if state is not None:
        state.may_have_templates = (
            True  # by the workers, perhaps: the end of the run drops templates they built
        )
    if error is not None:
        node.config.stash.setdefault(_CRASHED, []).append(str(node.gateway.id))


# The per-test hooks below are plain implementations ordered with tryfirst/trylast, not wrappers: a wrapper
# costs pluggy a generator and its resumption on every call (three reports, a set-up and a teardown per test),
# a sizeable share of the plugin's cost per test on SQLite.
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    # First of the implementations, before the one that makes the report: its text includes the notes.
    if call.excinfo is None:
        return
    if item.stash.get(SANDBOXED, False):
        explain_lock_wait(call.excinfo.value)
    else:
        explain_missing_database(item.config, call.excinfo.value)
    if call.when != "teardown":
        item.stash[FAILURE] = call.excinfo.value  # so that teardown does not report the same fault again


# ----------------------------------------------------------------------------------------- hypothesis
# Each example of a sandboxed @given test runs in a nested sandbox, and hypothesis' function_scoped_fixture
# check is suppressed where our fixtures are the only function-scoped ones (pytest_txscope.hypothesis).
# Nothing is imported unless a test module imported hypothesis.
@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings: Settings = config.stash[SETTINGS]
    # The variables of txscope_env promise the application its database: every test gets it built first.
    everywhere = settings.builds() and ENV in config.stash
    for item in items:
        _plan_fixtures(item, settings, everywhere)
    if "hypothesis" in sys.modules:
        from .hypothesis import prepare_items

        prepare_items(items)


def _plan_fixtures(item: pytest.Item, settings: Settings, everywhere: bool) -> None:
    """Put the fixture that sets up the test's database scope first in its set-up order, if it needs one;
    and ``db_engine`` before all, when it builds the database (``everywhere``: for every test).

    Done once per test at collection rather than by an autouse fixture: a test that needs nothing of the
    plugin then pays nothing, and a sandboxed test starts its sandbox before its other fixtures (factories'
    fixtures may write), whatever order it lists them in, without a dynamic fixture lookup per test.
    """
    names: list[str] | None = getattr(item, "fixturenames", None)
    if names is None:  # not a test function (a doctest, another plugin's item)
        return
    marker = item.get_closest_marker(MARKER)
    if marker is not None and marker.kwargs.get("commit") is True:
        first = "_txscope_commit_mode"  # it validates the marker; db_sandbox refuses to run under it
    elif "db_sandbox" not in names and "db_session" in names:
        first = "db_session"  # starts the sandbox itself (and validates the marker)
    elif "db_sandbox" not in names and "sa_session" in names:
        first = "sa_session"  # the same
    elif marker is not None or "db_sandbox" in names:
        first = "db_sandbox"  # validates the marker too
    elif settings.block:
        first = "_txscope_blocked"
    elif settings.check_leaks:
        first = "db_engine"  # takes the run's snapshot before the first test: the leak check's baseline
    else:
        first = ""
    # A database the plugin builds (txscope_schema, txscope_database_schemas) is built before every other
    # fixture, of any scope: a session fixture of the user's (the app, a test client) may connect to it, and
    # would find no database.
    # Without a schema the database is the user's own, which such a fixture may be the one to fill.
    needs = (
        everywhere or settings.check_leaks or "db_engine" in names or first not in ("", "_txscope_blocked")
    )
    head = ["db_engine"] if settings.builds() and needs else []
    if not (first or head):
        return
    wanted = [n for n in ("db_engine" if settings.check_leaks else "", first) if n and n not in head]
    rest = [n for n in names if n not in head and n not in wanted]
    # After the fixtures of wider scopes (pytest sets those up first: a session fixture may configure the
    # application), before every function-scoped one. Scopes are read from pytest's per-test fixture info;
    # without it, first of all.
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    at = next(
        (i for i, n in enumerate(rest) if not defs.get(n) or defs[n][-1].scope == "function"), len(rest)
    )
    # A new list for this item: parametrized siblings share the old one and may carry other marks.
    item.fixturenames = [*head, *rest[:at], *wanted, *rest[at:]]  # type: ignore[attr-defined]


def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    # A firstresult hook: returning None leaves the set-up to pytest.
    if fixturedef.argname in _OWN_FIXTURES:
        _PENDING[fixturedef.argname] = request
    if "hypothesis" in sys.modules:
        from .hypothesis import note_fixture

        note_fixture(fixturedef, request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    before = current_scope()
    failed = True
    try:
        result = yield
        failed = False
        return result
    finally:
        if current_scope() is not before:  # the test body left a 'with' block (a session) current
            leave_blocks(before, warn=not failed)


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Last: after pytest's own implementation has set up the test's fixtures (not reached if that failed).
    if "hypothesis" in sys.modules:
        from .hypothesis import settle_health_check

        settle_health_check(item)


# ------------------------------------------------------------------------------------------- fixtures
# The fixtures below that need the test's request do not take ``request`` as an argument: pytest builds a new
# pseudo fixture definition (its signature inspected) each time a fixture that takes it is looked up, several
# times per test even for a cached session fixture, which on SQLite cost more than the sandbox itself. The
# public pytest_fixture_setup hook hands over the same request object, just before pytest calls the fixture.
_OWN_FIXTURES = frozenset(
    {
        "db_engine",
        "db_sandbox",
        "db_sandboxes",
        "db_session",
        "sa_session",
        "_txscope_blocked",
        "_txscope_commit_mode",
    }
)
_PENDING: dict[str, pytest.FixtureRequest] = {}


def _request_of(name: str) -> pytest.FixtureRequest:
    """The request of fixture ``name``, which pytest_fixture_setup stored just before pytest called it."""
    return _PENDING.pop(name)


@pytest.fixture(scope="session")
def db_engine() -> Iterator[Engine]:
    """The configured `pytest_txscope.Engine` (session scope), its database ready with ``txscope_schema``.

    The database comes from ``--txscope-url``, ini ``txscope_url`` or ``$TXSCOPE_URL``, else an embedded
    SQLite file in pytest's temporary directory. Under pytest-xdist each worker gets its own database. While a
    sandbox is active (``db_sandbox``, ``db_session``, ``@pytest.mark.txscope``) the engine is pinned to it.
    Databases the run created are dropped at the end unless ``--txscope-reuse-db``.
    """
    request = _request_of("db_engine")
    yield from run_engine(request, request.config, request.getfixturevalue("tmp_path_factory"))


@pytest.fixture
def db_sandbox(db_engine: Engine) -> Iterator[Sandbox]:
    """The test's rollback scope (function scope): a `Sandbox` on ``db_engine``.

    While it is active, ``db_engine`` and the application's engines from ``txscope_engines`` are pinned to its
    connection: the code under test commits and rolls back as usual (savepoints), and everything is rolled
    back after the test. ``db_sandbox.connection()`` gives a DB-API connection for code that wants one.
    """
    yield from sandbox_scope(_request_of("db_sandbox"), db_engine)


@pytest.fixture
def db_sandboxes(db_sandbox: Sandbox) -> dict[str, Sandbox]:
    """The test's sandboxes by database name (function scope): ``"default"`` (``db_sandbox``) and each
    ``txscope_databases`` database the test opted in to with ``@pytest.mark.txscope(databases=[...])``::

        @pytest.mark.txscope(databases=["default", "reports"])
        def test_report(db_sandboxes):
            reports = db_sandboxes["reports"].session()
            reports.execute("INSERT INTO daily (total) VALUES (1)")
    """
    node = _request_of("db_sandboxes").node
    return {"default": db_sandbox, **node.stash.get(SANDBOXES, {})}


@pytest.fixture
def db_session(db_engine: Engine) -> Iterator[Session]:
    """A `pytest_txscope.Session` inside the test's sandbox (function scope).

    ``db_session.execute(...)`` runs in the sandbox's transaction; ``with db_session as tx:`` behaves as the
    application's own transaction (committed as a savepoint release). All of it is rolled back after the
    test::

        def test_insert(db_session):
            db_session.execute("INSERT INTO users (name) VALUES (:name)", {"name": "ada"})
            assert db_session.fetchscalar("SELECT count(*) FROM users") == 1
    """
    # Not built on the db_sandbox fixture: each function-scoped fixture costs pytest tens of microseconds per
    # test, a sizeable share of the isolation's whole cost on SQLite. Whichever of db_sandbox, db_session and
    # sa_session a test asks for first (see _plan_fixtures) starts the sandbox; the others join it.
    yield from sandboxed(_request_of("db_session"), db_engine, Sandbox.session)


@pytest.fixture
def async_db_session(db_session: Session) -> AsyncSession:
    """``db_session`` for ``async def`` tests: a `pytest_txscope.AsyncSession` inside the test's sandbox
    (function scope).

    The same session as ``db_session`` (rows written through either are seen by the other), with the asyncio
    API: ``await async_db_session.execute(...)``, ``async with async_db_session as tx:`` (committed as a
    savepoint release). A plain fixture: it works with pytest-asyncio in auto and strict modes, with anyio's
    plugin, and on any loop scope::

        @pytest.mark.asyncio
        async def test_insert(async_db_session):
            await async_db_session.execute("INSERT INTO users (name) VALUES (:name)", {"name": "ada"})
            assert await async_db_session.fetchscalar("SELECT count(*) FROM users") == 1
    """
    return async_session_of(db_session)


@pytest.fixture
def sa_session(db_engine: Engine) -> Iterator[Any]:
    """A SQLAlchemy ORM ``Session`` in the test's sandbox (function scope; needs the ``sqlalchemy`` extra).

    It shares the sandbox's connection and transaction with ``db_session``: rows written through either are
    visible to the other during the test and gone after it. ``sa_session.commit()`` releases a savepoint and
    ``sa_session.rollback()`` rolls back to it, as the application's own sessions do. It is also what
    ``pytest_txscope.sqlalchemy.current_session()`` returns (for factory_boy)::

        def test_user(sa_session):
            sa_session.add(User(name="ada"))
            sa_session.commit()
            assert sa_session.scalar(select(func.count()).select_from(User)) == 1
    """
    # Not built on db_sandbox, for the reason db_session is not.
    yield from sandboxed(_request_of("sa_session"), db_engine, sqlalchemy_module().session_for)


@pytest.fixture
def _txscope_blocked() -> Iterator[None]:
    """Refuses database access in a test that asked for no sandbox (``txscope_block``; private)."""
    yield from blocked(_request_of("_txscope_blocked"))


@pytest.fixture
def _txscope_commit_mode() -> Iterator[None]:
    """Runs a ``@pytest.mark.txscope(commit=True)`` test with real commits and cleans up after it (private)."""
    request = _request_of("_txscope_commit_mode")
    options = marker_options(request.node)  # a bad combination (commit=True, shared=True) fails here
    yield from commit_mode(request, reset_sequences=options["reset_sequences"])


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # Last: after pytest's own implementation has torn down every fixture of the test (its sandbox rolled
    # back), not before; not reached if that failed.
    if item.config.stash[SETTINGS].check_leaks:
        check_leaks(item, item.config.stash[STATE])
