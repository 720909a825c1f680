"""What the plugin's fixtures set up: the run's engine and database, and each test's sandbox, shaped by its
``@pytest.mark.txscope`` arguments. The fixtures themselves (names, docstrings) are in `pytest_txscope.plugin`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .core import Engine
from .errors import EngineMismatchError, SandboxEscapeError
from .intercept import Interception
from .options import SETTINGS
from .plugin_asyncio import check_async_backend
from .plugin_database import (
    STATE,
    app_engines,
    dispose_app_engines,
    open_engine,
    setup_failed,
    sqlalchemy_module,
)
from .plugin_modes import clean_changed_tables, reset_counters
from .plugin_teardown import PluginSandbox, end_sandbox
from .sandbox import THREAD_MODES, Sandbox

__all__ = [
    "FAILURE",
    "INTERCEPTION",
    "MARKER",
    "SANDBOXED",
    "marker_options",
    "reported",
    "run_engine",
    "sandbox_scope",
]

MARKER = "txscope"
FAILURE = pytest.StashKey[BaseException]()
"""The test's own failure (call or setup), so that teardown does not report the same fault again."""
SANDBOXED = pytest.StashKey[bool]()
"""Whether the test ran in a sandbox."""
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

    state = config.stash[STATE]
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
        yield engine
    finally:
        state.engine = None
        if engine is not None:
            engine.dispose()
        dispose_app_engines(config)
        while state.held:
            from .provision import drop

            held = state.held.pop()
            if held.created and not config.stash[SETTINGS].reuse_db:
                drop(held.url, allow=config.stash[SETTINGS].allow_databases, held=held)
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
    sandbox = PluginSandbox(
        db_engine,
        engines=app_engines(request),
        protect_statements=settings.protect_statements(),
        threads=options.get("threads") or settings.threads,
    )
    sandbox.start()
    node.stash[SANDBOXED] = True
    _report_early_connections(request.config, db_engine)
    sandbox.thread_timeout = settings.thread_timeout
    watched = _pin_sqlalchemy_engines(request, sandbox)
    node.stash[_SANDBOX] = sandbox
    try:
        yield sandbox
    finally:
        del node.stash[_SANDBOX]
    try:
        end_sandbox(sandbox, lambda error: reported(node, error), failed=FAILURE in node.stash)
    except SandboxEscapeError as exc:
        clean_changed_tables(request, db_engine)  # so that the next test starts clean
        if not reported(node, exc.reported):  # the test failed with the escape's own error already
            raise
    # An unpinned engine's refusal that the code under test caught must still fail the test.
    for error in sqlalchemy_module().refused(sandbox) if watched else ():
        if not reported(node, error):
            raise error.with_traceback(None)  # its place is in the message; the frames are SQLAlchemy's


def _pin_sqlalchemy_engines(request: pytest.FixtureRequest, sandbox: Sandbox) -> bool:
    """Pin the app's SQLAlchemy engines to ``sandbox`` and watch the others; whether they are watched."""
    sa_engines = request.config.stash[STATE].sa_engines
    watched = "sqlalchemy" in sys.modules  # engines made before it was imported: none
    try:
        if sa_engines:
            sqlalchemy_module().pin_to_sandbox(sandbox, sa_engines)
        if watched:
            sqlalchemy_module().watch_unpinned(sandbox)
    except BaseException as exc:
        sandbox.stop()
        if isinstance(exc, EngineMismatchError):  # every test would fail the same way
            setup_failed(request, exc, "the application's engines")
        raise
    return watched


def _marker_signature(
    *, commit: bool = False, shared: bool = False, threads: str | None = None, reset_sequences: bool = False
) -> dict[str, Any]:
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
        "reset_sequences": reset_sequences,
    }


def marker_options(item: pytest.Item) -> dict[str, Any]:
    """The test's ``@pytest.mark.txscope`` arguments (empty without the marker); a bad one fails the test."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return {}
    try:
        return _marker_signature(*marker.args, **marker.kwargs)
    except TypeError as exc:
        message = str(exc).replace("_marker_signature()", f"@pytest.mark.{MARKER}")
    pytest.fail(
        f"{item.nodeid}: {message}; valid arguments: commit=False, threads='shared' or 'strict', "
        "reset_sequences=False",
        pytrace=False,
    )
