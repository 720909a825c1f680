"""Round trips per protected statement on PostgreSQL, counted on the wire (benchmarks/wire.py), not timed.

A statement sent outside transaction blocks runs in a savepoint of its own (statement savepoints, on by default
on PostgreSQL). The control statements queued before it (``BEGIN`` for the first, then ``RELEASE`` of the
previous savepoint and ``SAVEPOINT`` for this one) go in the statement's own round trip, on every PostgreSQL
driver: one round trip per statement, as without the protection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from benchmarks.wire import RoundTripCounter
from pytest_txscope import AsyncEngine, DatabaseURL, Engine, Sandbox, TransactionStateError
from pytest_txscope.bridge import run_sync

from ..backends import Backend

pytestmark = [
    pytest.mark.asyncio_twin,
    pytest.mark.backends("postgresql", "postgresql-psycopg2", "postgresql-psycopg_async", exact=True),
]

_T = TypeVar("_T")
INSERT = "INSERT INTO rt_items (id, name) VALUES (:id, :name)"


def _round_trips(engine: Engine, counter: RoundTripCounter) -> dict[str, list[int]]:
    """Round trips of each protected statement in a sandbox: with parameters, without, after a failed one."""
    engine.executescript(
        "DROP TABLE IF EXISTS rt_items; CREATE TABLE rt_items (id INTEGER PRIMARY KEY, name TEXT)"
    )
    trips: dict[str, list[int]] = {"first": [], "params": [], "no params": [], "after a failure": []}

    def counted(kind: str, sql: str, params: object = None) -> Any:
        before = counter.count
        try:
            return engine_session.execute(sql, params)
        finally:
            trips[kind].append(counter.count - before)

    try:
        with Sandbox(engine) as sandbox:
            engine_session = sandbox.session()
            counted("first", INSERT, {"id": 0, "name": "n0"})  # BEGIN, SAVEPOINT, INSERT
            for i in range(1, 8):  # past psycopg's prepare threshold (5): its PREPARE rides along too
                cursor = counted("params", INSERT, {"id": i, "name": f"n{i}"})
                assert cursor.rowcount == 1  # the INSERT's, not the control's
            for _ in range(3):
                cursor = counted("no params", "SELECT count(*), max(id) FROM rt_items")
                assert cursor.fetchone() == (8, 7)
            with pytest.raises(Exception, match="duplicate key"):
                counted("params", INSERT, {"id": 1, "name": "again"})
            cursor = counted("after a failure", "SELECT count(*) FROM rt_items")
            assert cursor.fetchone() == (8,)  # the test goes on, rows kept
            counted("params", INSERT, {"id": 8, "name": "n8"})
    finally:
        engine.executescript("DROP TABLE rt_items")
    return trips


def test_a_protected_statement_takes_one_round_trip(backend: Backend) -> None:
    server = DatabaseURL.parse(backend.url)
    with RoundTripCounter(server.host or "127.0.0.1", server.port or 5432) as counter:
        trips = _run(backend, lambda engine: _round_trips(engine, counter), counter.route(backend.url))
    assert trips["first"] == [1]
    assert trips["params"] == [1] * 9  # the failing one included
    assert trips["no params"] == [1] * 3
    # After a failure, ROLLBACK TO SAVEPOINT is queued: psycopg 3 (sync and asyncio) drops its prepared statements
    # on seeing a ROLLBACK go through its own execute, so the control goes apart through libpq (one more round trip).
    assert trips["after a failure"] == [1 if backend.name == "postgresql-psycopg2" else 2]


def _first_statement_fails(engine: Engine, params: dict[str, int] | None) -> list[int]:
    """The first protected statement fails, its BEGIN and SAVEPOINT in the same round trip: the test goes on
    in the sandbox's transaction, and what it wrote is rolled back at its end. Returns the row count after."""
    engine.executescript(
        "DROP TABLE IF EXISTS rt_items; CREATE TABLE rt_items (id INTEGER PRIMARY KEY, name TEXT)"
    )
    try:
        with Sandbox(engine) as sandbox:
            session = sandbox.session()
            with pytest.raises(Exception, match="division by zero"):
                session.execute("SELECT 1 / (:zero - :zero)" if params else "SELECT 1 / 0", params)
            session.execute(INSERT, {"id": 1, "name": "n1"})
            session.execute("INSERT INTO rt_items (id, name) VALUES (2, 'n2')")
            inside = session.fetchscalar("SELECT count(*) FROM rt_items")
        with engine.session() as after:
            return [inside, after.fetchscalar("SELECT count(*) FROM rt_items")]
    finally:
        engine.executescript("DROP TABLE rt_items")


def _savepoint_released_behind_the_back(engine: Engine) -> str:
    """Raw SQL on the driver's connection releases the library's statement savepoint: the next statement's
    control fails inside the combined send, and the error says what happened (not the driver's error)."""
    engine.executescript(
        "DROP TABLE IF EXISTS rt_items; CREATE TABLE rt_items (id INTEGER PRIMARY KEY, name TEXT)"
    )
    try:
        with Sandbox(engine) as sandbox:
            session = sandbox.session()
            session.execute(INSERT, {"id": 1, "name": "n1"})
            session.connection.cursor().execute("RELEASE SAVEPOINT txscope_stmt1")
            with pytest.raises(TransactionStateError) as info:
                session.execute(INSERT, {"id": 2, "name": "n2"})
            return str(info.value)
    finally:
        engine.executescript("DROP TABLE rt_items")


def _run(backend: Backend, work: Callable[[Engine], _T], url: str | None = None) -> _T:
    """``work(engine)`` on an engine for ``backend`` (at ``url``); for the asyncio driver, the sync core of its
    `AsyncEngine`, run through the greenlet bridge as the asyncio API runs it."""
    url = url or backend.url
    if not backend.asynchronous:
        engine = Engine.from_url(url)
        try:
            return work(engine)
        finally:
            engine.dispose()

    async def run() -> _T:
        async_engine = AsyncEngine.from_url(url)
        try:
            return await run_sync(work, async_engine.sync_engine)
        finally:
            await async_engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("params", [None, {"zero": 0}], ids=["no params", "params"])
def test_a_failing_first_statement_leaves_the_test_usable(
    backend: Backend, params: dict[str, int] | None
) -> None:
    assert _run(backend, lambda engine: _first_statement_fails(engine, params)) == [2, 0]


def test_a_control_failure_in_the_combined_send_is_named(backend: Backend) -> None:
    message = _run(backend, _savepoint_released_behind_the_back)
    assert message.startswith("savepoint txscope_stmt1, set by the library, no longer existed when it sent ")
