"""The asyncio API as async code writes it (pytest-asyncio), on each asyncio driver: what the sync contract's
async flavour cannot show (tasks, event loops, async callbacks), its errors, and the examples of docs/async.md.

The functions named ``example_*`` are the page's examples, copied there verbatim (tests/unit/test_docs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from pytest_txscope import (
    AsyncContextError,
    AsyncEngine,
    ConfigurationError,
    Engine,
    SyncWithError,
    TransactionKind,
    TransactionState,
    TransactionStateError,
    UnknownDriverError,
    WrongEventLoopError,
    current_async_session,
    transaction,
)
from pytest_txscope.bridge import driver_loop
from pytest_txscope.dialects import dialect_for_url

from ..backends import Backend, Peer
from ..conftest import ITEMS_DDL

pytestmark = pytest.mark.asyncio_twin("only")


@pytest_asyncio.fixture
async def aengine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    """An `AsyncEngine` on the test's loop, with a fresh ``items`` table, dropped afterwards."""
    engine = AsyncEngine.from_url(backend.url)
    await engine.executescript(f"DROP TABLE IF EXISTS items; {ITEMS_DDL}")
    yield engine
    await engine.executescript("DROP TABLE IF EXISTS items")
    await engine.dispose()


@pytest.fixture
def apeer(backend: Backend) -> Any:
    """An independent connection (the sync driver of the backend's family)."""
    peer = Peer(backend)
    yield peer
    peer.close()


def peer_names(peer: Peer) -> list[str]:
    return [r[0] for r in peer.fetchall("SELECT name FROM items ORDER BY id")]


# ------------------------------------------------------------------------------------------ the page's examples
async def example_blocks(engine: AsyncEngine) -> None:
    async with engine as tx:  # BEGIN ... COMMIT
        await tx.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": "kept"})
        with contextlib.suppress(ValueError):
            async with engine as nested:  # a SAVEPOINT
                await nested.execute("INSERT INTO items (id, name) VALUES (2, 'undone')")
                raise ValueError("rolls back to the savepoint")
        assert await tx.fetchall("SELECT name FROM items") == [("kept",)]


async def example_session(engine: AsyncEngine) -> None:
    async with engine.session() as session:
        assert current_async_session() is session  # per task
        async with transaction() as tx:  # the current session's transaction
            cursor = await tx.execute("SELECT count(*) FROM items")
            assert await cursor.fetchone() == (1,)
        async with session as tx:  # a transaction block of this session
            assert tx.kind is TransactionKind.ROOT


async def example_on_commit(engine: AsyncEngine) -> list[str]:
    sent: list[str] = []

    async def notify() -> None:
        await asyncio.sleep(0)
        sent.append("mail")

    async with engine as tx:
        await tx.execute("UPDATE items SET qty = 1")
        tx.on_commit(notify)  # awaited after the COMMIT
        tx.on_commit(lambda: sent.append("log"))  # a plain function is called
    return sent


@pytest.mark.asyncio
async def test_the_pages_examples_run(aengine: AsyncEngine, apeer: Peer) -> None:
    await example_blocks(aengine)
    assert peer_names(apeer) == ["kept"]
    await example_session(aengine)
    assert await example_on_commit(aengine) == ["mail", "log"]


# --------------------------------------------------------------------------------------------- tasks
@pytest.mark.asyncio
async def test_each_task_has_its_own_current_session(aengine: AsyncEngine) -> None:
    async def opens() -> object:
        async with aengine.session() as mine:
            await asyncio.sleep(0.01)  # the other task opens its own meanwhile
            assert current_async_session() is mine
            return mine

    async with aengine.session() as outer:
        inherited = await asyncio.create_task(asyncio.sleep(0, current_async_session()))
        first, second = await asyncio.gather(opens(), opens())
    assert inherited is outer  # a task starts with a copy of its creator's context
    assert first is outer
    assert second is outer

    async def alone() -> object:
        async with aengine.session() as own:
            await asyncio.sleep(0.01)
            return own

    a, b = await asyncio.gather(alone(), alone())
    assert a is not b  # nothing current when they began: a session each


@pytest.mark.asyncio
async def test_a_block_exited_in_another_task_ends_nothing(aengine: AsyncEngine, apeer: Peer) -> None:
    block = transaction(aengine)
    tx = await block.__aenter__()
    await tx.execute("INSERT INTO items (id, name) VALUES (1, 'kept')")
    with pytest.raises(TransactionStateError) as info:
        await asyncio.create_task(block.__aexit__(None, None, None))
    assert str(info.value) == (
        f"the block of {tx.describe()} was exited in a thread or asyncio task other than the one that entered "
        "it, and was left open; end each block in the thread or task that opened it"
    )
    assert tx.state is TransactionState.ACTIVE
    await block.__aexit__(None, None, None)
    assert peer_names(apeer) == ["kept"]


# ----------------------------------------------------------------------------------------- callbacks
@pytest.mark.asyncio
async def test_async_callbacks_run_after_the_top_level_commit_only(aengine: AsyncEngine) -> None:
    fired: list[str] = []

    def later(name: str) -> Any:
        async def callback() -> None:
            await asyncio.sleep(0)
            fired.append(name)

        return callback

    async with aengine as outer:
        outer.on_commit(later("outer"))
        async with aengine as inner:
            inner.on_commit(later("inner"))
        with pytest.raises(ValueError):
            async with aengine as dropped:
                dropped.on_commit(later("dropped"))
                raise ValueError
        assert fired == []
    assert fired == ["outer", "inner"]


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.asyncio
async def test_a_sync_with_names_async_with(aengine: AsyncEngine) -> None:
    with pytest.raises(SyncWithError) as info, aengine:  # type: ignore[attr-defined]
        pass
    assert str(info.value) == (
        "an AsyncEngine belongs to the asyncio API and cannot be used in a sync 'with' statement; write "
        "'async with an AsyncEngine' in async code, or use a sync Engine (Engine.from_url) in sync code"
    )
    assert isinstance(info.value, TypeError)
    async with aengine.session() as session:
        with pytest.raises(SyncWithError), session:  # type: ignore[attr-defined]
            pass


def test_the_sync_core_of_an_async_engine_from_sync_code(backend: Backend) -> None:
    engine = AsyncEngine.from_url(backend.url)
    with pytest.raises(AsyncContextError, match="used from synchronous code"), engine.sync_engine.session():
        pass
    with pytest.raises(AsyncContextError), transaction(engine):
        pass


def test_a_connection_used_from_another_loop(backend: Backend) -> None:
    engine = AsyncEngine.from_url(backend.url)

    async def touch() -> None:
        async with engine.session() as session:
            await session.fetchscalar("SELECT 1")

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(touch())  # its connection goes back to the pool, still of that loop
        with pytest.raises(WrongEventLoopError, match="belong to the loop that opened them"):
            asyncio.run(touch())  # another loop, while the first is still open
    finally:
        first.run_until_complete(engine.dispose())
        first.close()


def test_a_closed_loops_connections_are_discarded_not_reused(backend: Backend) -> None:
    engine = AsyncEngine.from_url(backend.url)

    async def connection() -> Any:
        async with engine.session() as session:
            await session.fetchscalar("SELECT 1")
            return session.connection

    first = asyncio.run(connection())  # pooled when its loop closes
    second = asyncio.run(connection())
    assert second is not first
    assert not dialect_for_url(backend.url).is_alive(first)
    asyncio.run(engine.dispose())


# ------------------------------------------------------------------------------------ URLs and drivers
def test_urls_name_the_async_drivers_and_their_sync_twins(backend: Backend, tmp_path: Any) -> None:
    sync_url = backend.url.replace("+aiosqlite", "").replace("+psycopg_async", "").replace("+aiomysql", "")
    assert type(dialect_for_url(backend.url)) is type(dialect_for_url(sync_url))
    sync = Engine.from_url(backend.url)  # the sync twin serves an async spelling in sync code
    with sync.session() as session:
        assert session.fetchscalar("SELECT 1") == 1
        if "+asyncpg" in backend.url:  # no sync twin: asyncpg itself, on the driver loop
            assert type(session.connection.raw).__module__.split(".")[0] == "asyncpg"
            assert session.connection.runner.loop is driver_loop().loop
        else:
            assert type(session.connection).__module__.split(".")[0] in ("sqlite3", "psycopg", "pymysql")
    sync.dispose()

    async def through(url: str) -> str:
        engine = AsyncEngine.from_url(url)
        async with engine.session() as session:
            await session.fetchscalar("SELECT 1")
            module = type(session.connection.raw).__module__.split(".")[0]
        await engine.dispose()
        return module

    expected = {"sqlite": "aiosqlite", "postgresql": "psycopg", "mysql": "aiomysql"}[backend.family]
    if "+asyncpg" in backend.url:
        expected = "asyncpg"
    assert asyncio.run(through(backend.url)) == expected
    assert asyncio.run(through(sync_url)) == expected  # the async twin serves a sync spelling


@pytest.mark.asyncio
async def test_an_engine_over_an_async_connect_function(backend: Backend) -> None:
    if backend.family == "sqlite":
        import aiosqlite

        path = backend.url.partition(":///")[2]

        async def connect() -> Any:
            return await aiosqlite.connect(path)
    elif backend.name == "postgresql-asyncpg-aio":
        import asyncpg

        from pytest_txscope import DatabaseURL

        parsed = DatabaseURL.parse(backend.url)

        async def connect() -> Any:
            return await asyncpg.connect(
                host=parsed.host, port=parsed.port, user=parsed.user, database=parsed.database
            )
    elif backend.family == "postgresql":
        import psycopg

        from pytest_txscope import DatabaseURL

        parsed = DatabaseURL.parse(backend.url)

        async def connect() -> Any:
            return await psycopg.AsyncConnection.connect(
                host=parsed.host, port=parsed.port, user=parsed.user, dbname=parsed.database
            )
    else:
        import aiomysql

        from pytest_txscope import DatabaseURL

        parsed = DatabaseURL.parse(backend.url)

        async def connect() -> Any:
            return await aiomysql.connect(
                host=parsed.host, port=parsed.port, user=parsed.user, db=parsed.database
            )

    engine = AsyncEngine(connect)
    async with engine as tx:
        assert await tx.fetchscalar("SELECT 1") == 1
        assert tx.session.dialect.name == backend.family
    await engine.dispose()


def test_a_driver_with_no_asyncio_twin_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncEngine.from_url("postgresql+psycopg2://app@localhost/shop")
    assert str(info.value) == (
        "PostgreSQL through psycopg2 has no asyncio driver in pytest-txscope; use the synchronous Engine for it, "
        "or an asyncio driver's URL"
    )
    with pytest.raises(UnknownDriverError, match=r"unknown driver 'asyncmy'.*mysql\+aiomysql://"):
        AsyncEngine.from_url("mysql+asyncmy://app@localhost/shop")
    with pytest.raises(ConfigurationError, match="needs an async function"):
        AsyncEngine("sqlite:///x.db")  # type: ignore[arg-type]
