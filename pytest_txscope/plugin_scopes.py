"""What the plugin's fixtures set up: the run's engine and database, and each test's sandbox, shaped by its
``@pytest.mark.txscope`` arguments. The fixtures themselves (names, docstrings) are in `pytest_txscope.plugin`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from .core import Engine
from .errors import EngineMismatchError, SandboxEscapeError
from .intercept import Interception
from .options import SETTINGS, Settings
from .plugin_asyncio import check_async_backend
from .plugin_database import (
    STATE,
    app_engines,
    dispose_app_engines,
    open_engine,
    setup_failed,
    sqlalchemy_module,
)
from .plugin_databases import ALL, DEFAULT, NamedDatabase, OtherSandboxes, check_names, route_engines
from .plugin_modes import clean_changed_tables, reset_counters
from .plugin_teardown import PluginSandbox, end_sandbox
from .sandbox import THREAD_MODES, Sandbox

__all__ = [
    "FAILURE",
    "INTERCEPTION",
    "MARKER",
    "SANDBOXED",
    "SANDBOXES",
    "marker_options",
    "reported",
    "run_engine",
    "sandbox_scope",
    "sandboxed",
    "wide_sandbox",
]

_T = TypeVar("_T")

MARKER = "txscope"
FAILURE = pytest.StashKey[BaseException]()
"""The test's own failure (call or setup), so that teardown does not report the same fault again."""
SANDBOXED = pytest.StashKey[bool]()
"""Whether the test ran in a sandbox."""
SANDBOXES = pytest.StashKey[dict[str, Sandbox]]()
"""The test's sandboxes on the other databases it opted in to (``txscope_databases``), by name."""
INTERCEPTION = pytest.StashKey[Interception]()
"""The run's interception of drivers' ``connect()`` (``txscope_connect``)."""


def reported(item: pytest.Item, error: BaseException | None) -> bool:
    """Whether the test already failed with ``error``, or with an error raised while handling it."""
    failure = item.stash.get(FAILURE, None)
    seen: set[int] = set()
    while error is not None and failure is not None and id(failure) not in seen:
        if failure is error:
            return True
        seen.add(id(failure))
        failure = failure.__cause__ or failure.__context__
    return False


def run_engine(
    request: pytest.FixtureRequest, config: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """Yield the run's engine, its database ready (``db_engine``); dispose of it and drop the databases the run
    created afterwards."""
    from .sequences import read as read_counters
    from .tables import snapshot

    state, settings = config.stash[STATE], config.stash[SETTINGS]
    engine: Engine | None = None
    try:
        try:
            engine = state.engine = open_engine(config, tmp_path_factory)
            # What the database holds before any test: commit=True tests and escaped commits are cleaned back
            # to it, and the leak check compares with its row counts.
            state.snapshot = snapshot(engine)
            state.baseline = dict(state.snapshot.counts)
            state.counters = read_counters(engine)  # for the tests marked reset_sequences=True
        except Exception as exc:
            setup_failed(request, exc)
        if settings.databases:  # those with a schema are built now, as the run's own database is
            from .plugin_databases_build import build_others

            build_others(request)
        yield engine
    finally:
        state.engine = None
        if engine is not None:
            engine.dispose()
        while state.others:
            state.others.popitem()[1].dispose()
        state.other_baselines.clear()
        dispose_app_engines(config)
        while state.held:
            from .provision import drop

            held = state.held.pop()
            if held.created and not settings.reuse_db:
                drop(held.url, allow=settings.allow_databases, held=held)
            else:
                held.release()


_SANDBOX = pytest.StashKey[Sandbox]()


def _report_early_connections(config: pytest.Config, db_engine: Engine) -> None:
    """With ``txscope_connect``: warn of real connections to the test database the app opened before (when a
    module was imported, in a wider fixture) and may keep."""
    interception = config.stash.get(INTERCEPTION, None)
    if interception is not None:
        interception.check_early(db_engine.url)


def sandbox_scope(request: pytest.FixtureRequest, db_engine: Engine) -> Iterator[Sandbox]:
    """Yield the test's sandbox: started here and ended after the test, or the one already started."""
    node = request.node
    running = node.stash.get(_SANDBOX, None)
    if running is not None:
        yield running
        return
    options = marker_options(node)
    if options.get("commit"):
        pytest.fail(
            "@pytest.mark.txscope(commit=True) runs the test without a sandbox; do not request db_sandbox or "
            "db_session in it (use db_engine)",
            pytrace=False,
        )
    check_async_backend(request)
    if options.get("reset_sequences"):
        reset_counters(request, db_engine)
    settings = request.config.stash[SETTINGS]
    threads = options.get("threads") or settings.threads
    # With txscope_databases, the other databases' sandboxes start first: the default's is Sandbox.current().
    others = start_others(request, options.get("databases") or (), threads) if settings.databases else None
    engines = app_engines(request) if others is None else others.default_engines
    sandbox = _new_sandbox(settings, threads, db_engine, engines)
    if others is None:
        sandbox.start()
    else:
        _start_last(sandbox, others)
    node.stash[SANDBOXED] = True
    _report_early_connections(request.config, db_engine)
    watched = _pin_sqlalchemy_engines(request, sandbox, others)
    node.stash[_SANDBOX] = sandbox
    try:
        yield sandbox
    finally:
        del node.stash[_SANDBOX]
    if others is None:
        _end(request, sandbox, db_engine)
    else:
        _end_all(request, sandbox, others)
    # An unpinned engine's refusal that the code under test caught must still fail the test.
    for error in sqlalchemy_module().refused(sandbox) if watched else ():
        if not reported(node, error):
            raise error.with_traceback(None)  # its place is in the message; the frames are SQLAlchemy's


def sandboxed(
    request: pytest.FixtureRequest, db_engine: Engine, make: Callable[[Sandbox], _T]
) -> Iterator[_T]:
    """Yield ``make(sandbox)`` for the test's sandbox (`sandbox_scope`): what a fixture that starts the sandbox
    itself hands the test. The sandbox ends after the test, or at once when ``make`` fails."""
    scope = sandbox_scope(request, db_engine)
    sandbox = next(scope)
    try:
        made = make(sandbox)
    except BaseException:
        next(scope, None)  # resumed, not closed: closing would skip the rollback and the unpinning
        raise
    yield made
    next(scope, None)


WIDE_SCOPES = {"session": "db_run_sandbox", "module": "db_module_sandbox", "class": "db_class_sandbox"}
"""The sandboxes of wider scopes, by pytest scope: the fixture that starts each."""
_RANK = {"session": 0, "module": 1, "class": 2}


def wide_sandbox(request: pytest.FixtureRequest, db_engine: Engine, scope: str) -> Iterator[Sandbox]:
    """Yield a sandbox that lasts for ``scope`` (the run, a module, a class): what fixtures of that scope write
    into it is seen by every test that runs while it is active, each test's sandbox nested in it (a savepoint,
    rolled back to after the test); the whole is rolled back when the scope ends."""
    name = WIDE_SCOPES[scope]
    narrower = [box for rank, box in _wide_active if rank > _RANK[scope]]
    if narrower:  # it would nest in a sandbox that ends first, and end with it
        pytest.fail(
            f"{name} was first requested while {narrower[-1].label} was active, and would end with it; request "
            f"{name} earlier: in the first test that needs it, or from a {scope}-scoped autouse fixture in "
            "conftest.py",
            pytrace=False,
        )
    settings = request.config.stash[SETTINGS]
    sandbox = PluginSandbox(
        db_engine,
        engines=app_engines(request),
        protect_statements=settings.protect_statements(),
        threads=settings.threads,
    )
    sandbox.label = f"{name} ({scope} scope, {request.node.nodeid or 'the run'})"
    sandbox.start()
    sandbox.thread_timeout = settings.thread_timeout
    _pin_sqlalchemy_engines(request, sandbox, None)
    _wide_active.append((_RANK[scope], sandbox))
    try:
        yield sandbox
    finally:
        _wide_active.remove((_RANK[scope], sandbox))
        try:
            sandbox.stop()
        except SandboxEscapeError:
            clean_changed_tables(request, db_engine)  # so that the next scope starts clean
            raise


_wide_active: list[tuple[int, PluginSandbox]] = []
"""The active sandboxes of wider scopes, outermost first, with their scope's rank (the run's is 0)."""


def _new_sandbox(
    settings: Settings, threads: str, engine: Engine, engines: tuple[Engine, ...]
) -> PluginSandbox:
    sandbox = PluginSandbox(
        engine, engines=engines, protect_statements=settings.protect_statements(), threads=threads
    )
    sandbox.thread_timeout = settings.thread_timeout
    return sandbox


def _start_last(sandbox: Sandbox, others: OtherSandboxes) -> None:
    """Start the default database's sandbox after the others' (stopped again if it cannot start)."""
    try:
        sandbox.start()
    except BaseException:
        others.stop(Sandbox.stop)
        raise


def _end_all(request: pytest.FixtureRequest, sandbox: Sandbox, others: OtherSandboxes) -> None:
    """End the test's sandboxes on every database; a refusal of a database it did not opt in to that the code
    under test caught fails the test all the same."""
    try:
        _end(request, sandbox, sandbox.engine)
    finally:
        others.stop(lambda other: _end(request, other, None))
    for refusal in others.refused:
        if not reported(request.node, refusal):
            raise refusal.with_traceback(None)


def _end(request: pytest.FixtureRequest, sandbox: Sandbox, engine: Engine | None) -> None:
    """End one of the test's sandboxes; after an escaped commit, clean ``engine``'s tables (the run's own
    database: the tables of the others were not snapshot)."""
    node = request.node
    assert isinstance(sandbox, PluginSandbox)
    try:
        end_sandbox(sandbox, lambda error: reported(node, error), failed=FAILURE in node.stash)
    except SandboxEscapeError as exc:
        if engine is not None:
            clean_changed_tables(request, engine)  # so that the next test starts clean
        if not reported(node, exc.reported):  # the test failed with the escape's own error already
            raise


def start_others(request: pytest.FixtureRequest, wanted: tuple[str, ...], threads: str) -> OtherSandboxes:
    """The test's sandboxes on the other databases it opted in to (``txscope_databases``), started."""
    config = request.config
    settings, state = config.stash[SETTINGS], config.stash[STATE]
    if state.routes is None:
        from .plugin_databases_build import used_urls

        engines = app_engines(request)
        state.routes = route_engines(settings.databases, engines, state.sa_engines, used_urls(config))

    def engine_of(database: NamedDatabase) -> Engine:
        # Those with a schema were built (and their engines opened) with the run's own database.
        engine = state.others.get(database.name)
        if engine is None:
            engine = state.others[database.name] = Engine.from_url(database.url)
        if settings.check_leaks and database.name not in state.other_baselines:
            from .tables import row_counts  # what the database holds before the first test on it

            state.other_baselines[database.name] = row_counts(engine)
        return engine

    others = OtherSandboxes(settings.databases, state.routes, wanted)
    try:
        others.start(engine_of, lambda engine, engines: _new_sandbox(settings, threads, engine, engines))
    except BaseException as exc:
        others.stop(Sandbox.stop)
        if isinstance(exc, EngineMismatchError):  # every test would fail the same way
            setup_failed(request, exc, "the application's engines")
        raise
    request.node.stash[SANDBOXES] = others.sandboxes
    return others


def _pin_sqlalchemy_engines(
    request: pytest.FixtureRequest, sandbox: Sandbox, others: OtherSandboxes | None
) -> bool:
    """Pin the app's SQLAlchemy engines to ``sandbox`` and watch the others; whether they are watched."""
    sa_engines = request.config.stash[STATE].sa_engines if others is None else others.default_sa_engines
    watched = "sqlalchemy" in sys.modules  # engines made before it was imported: none
    try:
        if sa_engines:
            sqlalchemy_module().pin_to_sandbox(sandbox, sa_engines)
        if watched:
            sqlalchemy_module().watch_unpinned(sandbox)
    except BaseException as exc:
        sandbox.stop()
        if others is not None:
            others.stop(Sandbox.stop)
        if isinstance(exc, EngineMismatchError):  # every test would fail the same way
            setup_failed(request, exc, "the application's engines")
        raise
    return watched


def _marker_signature(
    *,
    commit: bool = False,
    shared: bool = False,
    threads: str | None = None,
    databases: Any = None,
    reset_sequences: bool = False,
) -> dict[str, Any]:
    names = _database_names(databases)
    if commit and names and names != (DEFAULT,):
        raise TypeError("commit=True runs on the default database only; leave out databases=[...]")
    for name, value in (("commit", commit), ("shared", shared), ("reset_sequences", reset_sequences)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r}")
    if threads is not None and threads not in THREAD_MODES:
        raise TypeError(f"threads must be one of {', '.join(map(repr, THREAD_MODES))}, not {threads!r}")
    if shared and threads == "strict":
        raise TypeError('shared=True and threads="strict" contradict each other; use one of them')
    if commit and (shared or threads is not None):
        raise TypeError(
            "commit=True runs without a sandbox, so there is nothing to share; use one or the other"
        )
    return {
        "commit": commit,
        "shared": shared,
        "threads": "shared" if shared else threads,
        "databases": names,
        "reset_sequences": reset_sequences,
    }


def _database_names(databases: Any) -> tuple[str, ...]:
    if databases is None:
        return ()
    if databases == ALL:
        return (ALL,)
    if isinstance(databases, (list, tuple)) and all(isinstance(n, str) for n in databases):
        return tuple(databases)
    raise TypeError(f'databases must be a list of database names or "__all__", not {databases!r}')


def marker_options(item: pytest.Item) -> dict[str, Any]:
    """The test's ``@pytest.mark.txscope`` arguments (empty without the marker); a bad one fails the test."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return {}
    try:
        options = _marker_signature(*marker.args, **marker.kwargs)
    except TypeError as exc:
        message = str(exc).replace("_marker_signature()", f"@pytest.mark.{MARKER}")
    else:
        problem = options["databases"] and check_names(
            options["databases"], item.config.stash[SETTINGS].databases
        )
        if not problem:
            return options
        message = problem
    pytest.fail(
        f"{item.nodeid}: {message}; valid arguments: commit=False, threads='shared' or 'strict', "
        "databases=['default', ...], reset_sequences=False",
        pytrace=False,
    )
