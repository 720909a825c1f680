"""asyncpg's own API on a pinned SQLAlchemy asyncpg engine's raw connection (``driver_connection``), as
application code reaches it: rows as asyncpg's records, ``$1`` placeholders, ``transaction()`` blocks that nest,
prepared statements, cursors, codecs that end with the test, asyncpg's errors, and calls the sandbox refuses by
name. SQLAlchemy's own use of the face is tests/integrations/test_sqlalchemy_async.py's contract."""

from __future__ import annotations

import decimal
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from pytest_txscope import Engine, Sandbox, SandboxIsolationWarning
from pytest_txscope.sqlalchemy import pin_to_sandbox

from ..backends import Peer
from .test_sqlalchemy_async import app, assert_nothing_survived, names_inside, run

__all__ = ["app"]  # the fixture, shared with test_sqlalchemy_async.py

pytestmark = pytest.mark.backends("postgresql-asyncpg", exact=True)


@pytest.fixture
def on_raw(engine: Engine, app: Any) -> Iterator[Callable[[Callable[[Any], Awaitable[Any]]], Any]]:
    """Run ``body(driver_connection)`` on one of the app's pooled connections, inside a sandbox whose session
    the test reads through ``on_raw.sandbox``."""
    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))

        def call(body: Callable[[Any], Awaitable[Any]]) -> Any:
            async def main() -> Any:
                async with app.connect() as connection:
                    raw = await connection.get_raw_connection()
                    return await body(raw.driver_connection)

            return run(main)

        call.sandbox = sandbox  # type: ignore[attr-defined]
        yield call


def test_rows_are_records_and_statements_keep_at_once(on_raw: Any, peer: Peer) -> None:
    async def body(conn: Any) -> Any:
        status = await conn.execute("INSERT INTO items (id, name) VALUES ($1, $2)", 1, "one")
        await conn.executemany("INSERT INTO items (id, name) VALUES ($1, $2)", [(2, "two"), (3, "three")])
        rows = await conn.fetch("SELECT id, name FROM items WHERE id > $1 ORDER BY id", 1)
        first = await conn.fetchrow("SELECT id, name FROM items ORDER BY id")
        count = await conn.fetchval("SELECT count(*) FROM items")
        return status, rows, first, count

    status, rows, first, count = on_raw(body)
    assert status == "INSERT 0 1"
    assert [(row["id"], row["name"]) for row in rows] == [(2, "two"), (3, "three")]
    assert (first[0], first.get("name"), dict(first.items())) == (1, "one", {"id": 1, "name": "one"})
    assert count == 3
    # asyncpg keeps a statement outside transaction() at once; here that is the sandbox's transaction.
    assert names_inside(on_raw.sandbox) == ["one", "two", "three"]
    assert_nothing_survived(peer)


def test_transaction_blocks_nest_and_roll_back_their_own_work(on_raw: Any, peer: Peer) -> None:
    async def body(conn: Any) -> Any:
        async with conn.transaction():
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'kept')")
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO items (id, name) VALUES (2, 'undone')")
                    assert conn.is_in_transaction()
                    raise ZeroDivisionError
        outer = conn.transaction()
        await outer.start()
        await conn.execute("INSERT INTO items (id, name) VALUES (3, 'rolled back')")
        await outer.rollback()
        return conn.is_in_transaction()

    assert on_raw(body) is False
    assert names_inside(on_raw.sandbox) == ["kept"]
    assert_nothing_survived(peer)


def test_a_failing_statement_spares_the_rest_and_raises_asyncpg_error(on_raw: Any, peer: Peer) -> None:
    import asyncpg

    async def body(conn: Any) -> None:
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'first')")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO items (id, name) VALUES ($1, $2)", 1, "again")
        await conn.execute("INSERT INTO items (id, name) VALUES (2, 'after')")

    on_raw(body)
    assert names_inside(on_raw.sandbox) == ["first", "after"]
    assert_nothing_survived(peer)


def test_prepared_statements_and_cursors(on_raw: Any, peer: Peer) -> None:
    async def body(conn: Any) -> Any:
        await conn.executemany(
            "INSERT INTO items (id, name) VALUES ($1, $2)", [(n, f"n{n}") for n in range(5)]
        )
        statement = await conn.prepare("SELECT id, name FROM items WHERE id >= $1 ORDER BY id")
        columns = [(a.name, a.type.name) for a in statement.get_attributes()]
        values = [row["id"] for row in await statement.fetch(3)]
        async with conn.transaction():
            cursor = await statement.cursor(0)
            batch = [row["id"] for row in await cursor.fetch(2)]
            await cursor.forward(1)
            rest = [row["id"] async for row in cursor]
            streamed = [row["name"] async for row in conn.cursor("SELECT name FROM items WHERE id < $1", 2)]
        return columns, values, batch, rest, streamed

    columns, values, batch, rest, streamed = on_raw(body)
    assert columns == [("id", "int4"), ("name", "varchar")]
    assert (values, batch, rest, streamed) == ([3, 4], [0, 1], [3, 4], ["n0", "n1"])
    assert_nothing_survived(peer)


def test_a_codec_set_by_the_app_ends_with_the_test(engine: Engine, on_raw: Any) -> None:
    async def body(conn: Any) -> Any:
        await conn.set_type_codec(
            "numeric", schema="pg_catalog", encoder=str, decoder=lambda text: f"numeric {text}", format="text"
        )
        return await conn.fetchval("SELECT 1.5::numeric")

    assert on_raw(body) == "numeric 1.5"
    on_raw.sandbox.stop()
    with Sandbox(engine) as next_test:  # the same pooled connection, for the next test
        assert next_test.session().fetchscalar("SELECT 1.5::numeric") == decimal.Decimal("1.5")


def test_another_isolation_level_warns_once(on_raw: Any) -> None:
    async def body(conn: Any) -> None:
        for _ in range(2):
            async with conn.transaction(isolation="serializable"):
                await conn.execute("SELECT 1")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on_raw(body)
    found = [w for w in caught if issubclass(w.category, SandboxIsolationWarning)]
    assert len(found) == 1, [str(w.message) for w in caught]
    assert "isolation level SERIALIZABLE" in str(found[0].message)


def test_calls_that_would_bypass_the_sandbox_are_refused_by_name(on_raw: Any) -> None:
    async def body(conn: Any) -> str:
        with pytest.raises(AttributeError) as info:
            conn.copy_records_to_table  # noqa: B018
        return str(info.value)

    assert on_raw(body) == (
        "asyncpg's Connection.copy_records_to_table is not available on a sandbox connection (pytest-txscope "
        "offers execute, executemany, fetch, fetchrow, fetchval, prepare, cursor, transaction and set_type_codec)"
    )
