"""How the plugin runs tests that are not sandboxed: blocked from the database (``txscope_block``), or with
real commits (``@pytest.mark.txscope(commit=True)``), cleaned afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import pytest

from .core import Engine, Session
from .errors import DatabaseAccessError
from .options import SETTINGS
from .plugin_database import STATE, app_engines, sqlalchemy_module
from .plugin_teardown import clean_changed
from .sandbox import Sandbox

__all__ = ["blocked", "clean_changed_tables", "commit_mode", "reset_counters"]


class _Blocker:
    """Pins engines during tests that asked for no sandbox, so that using them is a clear error."""

    def __init__(self, test: str) -> None:
        self.test = test

    def guest_session(self, engine: Engine) -> Session:
        self.refuse(repr(engine))

    def refuse(self, engine: str) -> NoReturn:
        raise DatabaseAccessError(self.test, engine)


def blocked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pin the test's engines (ours and the application's) to a blocker while the test runs."""
    state = request.config.stash[STATE]
    if "db_engine" in request.fixturenames:
        request.getfixturevalue("db_engine")  # block it from this test's first use on
    engines = [*app_engines(request), *([state.engine] if state.engine else [])]
    blocker = _Blocker(request.node.nodeid)
    pins = [(engine, engine.pin(blocker)) for engine in engines]
    for sa_engine in state.sa_engines:
        # An Engine's repr is Engine(url), the password masked; an AsyncEngine's shows neither: AsyncEngine(url).
        is_async = type(sa_engine).__name__ == "AsyncEngine"
        shown = sqlalchemy_module().describe_engine(sa_engine) if is_async else repr(sa_engine)
        sqlalchemy_module().attach(sa_engine, lambda shown=shown: blocker.refuse(shown), initialize=False)
    try:
        yield
    finally:
        for engine, previous in pins:
            engine.pin(previous)
        for sa_engine in state.sa_engines:
            sqlalchemy_module().detach(sa_engine)


def commit_mode(request: pytest.FixtureRequest, *, reset_sequences: bool = False) -> Iterator[None]:
    """Run the test with real commits, on a database safe to clean; clean the tables it changed afterwards."""
    from .provision import check_safe

    engine: Engine = request.getfixturevalue("db_engine")
    _refuse_inside_wider_sandbox(engine)
    if engine.url is not None:  # refuse before the test commits anything, not after
        check_safe(engine.url, "clean", request.config.stash[SETTINGS].allow_databases)
    if reset_sequences:
        reset_counters(request, engine)
    yield
    clean_changed_tables(request, engine)


def _refuse_inside_wider_sandbox(engine: Engine) -> None:
    """A sandbox of a wider scope (``db_module_sandbox``, a fixture's own ``Sandbox``) pins ``db_engine``: the
    test's commits would be savepoint releases in it, rolled back with its data, not real commits. (Asked of
    the engine, not of the active sandboxes: one on another engine does not stand in the way.)"""
    outer = engine.pinned_to
    if not isinstance(outer, Sandbox) or not outer.active:
        return
    label = getattr(outer, "label", None) or f"a sandbox on {outer.engine.target} started by a wider fixture"
    pytest.fail(
        f"@pytest.mark.txscope(commit=True) cannot run while {label} is active: db_engine is pinned to it, so "
        "nothing this test commits would be committed; move the test out of the scope whose tests use that "
        "sandbox (another module or class)",
        pytrace=False,
    )


def clean_changed_tables(request: pytest.FixtureRequest, engine: Engine) -> None:
    """Put back the tables a test changed for real, as they were at the start of the run."""
    clean_changed(
        engine, request.config.stash[STATE].snapshot, request.config.stash[SETTINGS].allow_databases
    )


def reset_counters(request: pytest.FixtureRequest, engine: Engine) -> None:
    """Put the database's id counters back where they stood at the start of the run (``reset_sequences``)."""
    from .provision import check_safe
    from .sequences import reset

    if engine.url is not None:  # committed at once, outside the test's transaction: a test database's only
        check_safe(engine.url, "reset the id counters of", request.config.stash[SETTINGS].allow_databases)
    reset(engine, request.config.stash[STATE].counters)
