"""Round trips per protected statement on PostgreSQL, counted on the wire (benchmarks/wire.py), not timed.

A statement sent outside transaction blocks runs in a savepoint of its own (statement savepoints, on by default
on PostgreSQL). The control statements queued before it (``BEGIN`` for the first, then ``RELEASE`` of the
previous savepoint and ``SAVEPOINT`` for this one) go in the statement's own round trip, on every PostgreSQL
driver: one round trip per statement, as without the protection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from benchmarks.wire import RoundTripCounter
from pytest_txscope import AsyncEngine, DatabaseURL, Engine, Sandbox
from pytest_txscope.bridge import run_sync

from ..backends import Backend

pytestmark = [
    pytest.mark.asyncio_twin,
    pytest.mark.backends("postgresql", "postgresql-psycopg2", "postgresql-psycopg_async", exact=True),
]

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


def _measure(backend: Backend, counter: RoundTripCounter) -> dict[str, list[int]]:
    url = counter.route(backend.url)
    if not backend.asynchronous:
        engine = Engine.from_url(url)
        try:
            return _round_trips(engine, counter)
        finally:
            engine.dispose()

    async def measure() -> dict[str, list[int]]:  # the sync core over psycopg's AsyncConnection
        async_engine = AsyncEngine.from_url(url)
        try:
            return await run_sync(_round_trips, async_engine.sync_engine, counter)
        finally:
            await async_engine.dispose()

    return asyncio.run(measure())


def test_a_protected_statement_takes_one_round_trip(backend: Backend) -> None:
    server = DatabaseURL.parse(backend.url)
    with RoundTripCounter(server.host or "127.0.0.1", server.port or 5432) as counter:
        trips = _measure(backend, counter)
    assert trips["first"] == [1]
    assert trips["params"] == [1] * 9  # the failing one included
    assert trips["no params"] == [1] * 3
    # After a failure, ROLLBACK TO SAVEPOINT is queued: psycopg 3 (sync and asyncio) drops its prepared statements
    # on seeing a ROLLBACK go through its own execute, so the control goes apart through libpq (one more round trip).
    assert trips["after a failure"] == [1 if backend.name == "postgresql-psycopg2" else 2]
