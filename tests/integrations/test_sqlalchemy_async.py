"""SQLAlchemy ``AsyncEngine``s pinned to a sandbox, on every backend through the async twin of its driver:
aiosqlite on the sandbox's sqlite3 connection, psycopg's async side on psycopg 3, aiomysql on PyMySQL, asyncpg
on an asyncpg sandbox (``postgresql-asyncpg``).

One contract: the app's ``AsyncSession`` and ``AsyncConnection`` commit, roll back and nest inside the sandbox,
its ORM round-trips common types, nothing it did is seen from an independent connection during or after, an
escape is refused, and an async engine nobody pinned is refused with the exact message. Each test runs its
coroutine with ``asyncio.run`` (a loop of the test's own); the plugin's pytest-asyncio runs are in
tests/plugin/test_asyncio.py.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pytest_txscope import (
    DatabaseURL,
    Engine,
    EngineMismatchError,
    Sandbox,
    SandboxRefusedError,
    UnpinnedEngineError,
)
from pytest_txscope.sqlalchemy import pin_to_sandbox, sqlalchemy_async_url, watch_unpinned
from pytest_txscope.sqlalchemy_checks import check_pinnable, describe_engine

from ..backends import Backend, Peer

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "postgresql-asyncpg", "mysql", exact=True)

INSERT = "INSERT INTO items (id, name) VALUES (:id, :name)"


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


@pytest.fixture
def app(engine: Engine) -> Iterator[Any]:
    """The application's ``AsyncEngine`` on the test database, through the async twin of its driver."""
    from sqlalchemy.ext.asyncio import create_async_engine

    made = create_async_engine(sqlalchemy_async_url(engine.url))  # type: ignore[arg-type]
    yield made
    run(made.dispose)


def names_inside(sandbox: Sandbox) -> list[str]:
    return [row[0] for row in sandbox.session().fetchall("SELECT name FROM items ORDER BY id")]


def assert_nothing_survived(peer: Peer) -> None:
    assert peer.fetchall("SELECT name FROM items") == []


# ------------------------------------------------------------------------------------------- sessions
def test_async_session_commit_is_a_savepoint_release(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    async def main() -> None:
        for n in (1, 2):  # two sessions, two checkouts of the pool
            async with AsyncSession(app) as session:
                await session.execute(text(INSERT), {"id": n, "name": f"app-{n}"})
                await session.commit()

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        run(main)
        assert names_inside(sandbox) == ["app-1", "app-2"]
        assert_nothing_survived(peer)  # during: the sandbox's transaction is not committed
    assert_nothing_survived(peer)


def test_async_session_rollback_undoes_only_its_own_work(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    async def main() -> list[str]:
        async with AsyncSession(app) as session:
            await session.execute(text(INSERT), {"id": 1, "name": "kept"})
            await session.commit()
            await session.execute(text(INSERT), {"id": 2, "name": "undone"})
            await session.rollback()
            return list((await session.execute(text("SELECT name FROM items"))).scalars())

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        assert run(main) == ["kept"]
        assert names_inside(sandbox) == ["kept"]
    assert_nothing_survived(peer)


def test_begin_nested_nests_inside_the_app_transaction(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    async def main() -> None:
        async with AsyncSession(app) as session:
            await session.execute(text(INSERT), {"id": 1, "name": "outer"})
            inner = await session.begin_nested()
            await session.execute(text(INSERT), {"id": 2, "name": "inner undone"})
            await inner.rollback()
            async with session.begin_nested():
                await session.execute(text(INSERT), {"id": 3, "name": "inner kept"})
            await session.commit()

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        run(main)
        assert names_inside(sandbox) == ["outer", "inner kept"]
    assert_nothing_survived(peer)


def test_async_connection_and_engine_begin(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text

    async def main() -> None:
        async with app.begin() as conn:  # committed at the end of the block
            await conn.execute(text(INSERT), {"id": 1, "name": "begin"})
        async with app.connect() as conn:
            await conn.execute(text(INSERT), {"id": 2, "name": "committed"})
            await conn.commit()
            await conn.execute(text(INSERT), {"id": 3, "name": "rolled back"})
            await conn.rollback()
        with pytest.raises(ValueError, match="the app fails"):
            async with app.begin() as conn:
                await conn.execute(text(INSERT), {"id": 4, "name": "failed block"})
                raise ValueError("the app fails")

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        run(main)
        assert names_inside(sandbox) == ["begin", "committed"]
    assert_nothing_survived(peer)


def test_streamed_results_read_through_the_sandbox(engine: Engine, app: Any, peer: Peer) -> None:
    # stream() asks for a server-side cursor (psycopg: a named cursor in the sandbox's transaction; aiomysql's
    # unbuffered cursor becomes a buffered one: it would hold the shared connection until read to the end).
    from sqlalchemy import text

    async def main() -> list[str]:
        async with app.begin() as conn:
            for n in range(1, 6):
                await conn.execute(text(INSERT), {"id": n, "name": f"row-{n}"})
            result = await conn.stream(text("SELECT name FROM items ORDER BY id"))
            return [row[0] async for row in result]

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        assert run(main) == [f"row-{n}" for n in range(1, 6)]
    assert_nothing_survived(peer)


def test_autocommit_mode_never_commits_for_real(engine: Engine, app: Any, peer: Peer) -> None:
    # Each driver's own switch: aiosqlite's isolation_level (set through its call queue by SQLAlchemy 2.1),
    # psycopg's set_autocommit(), aiomysql's autocommit(); the sandbox connection's autocommit mode.
    from sqlalchemy import text

    async def main() -> None:
        async with app.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text(INSERT), {"id": 1, "name": "autocommit"})
        async with app.begin() as conn:  # the pool's connection is back in its usual mode
            await conn.execute(text(INSERT), {"id": 2, "name": "after"})

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        run(main)
        assert names_inside(sandbox) == ["autocommit", "after"]
    assert_nothing_survived(peer)


def test_tasks_take_turns_on_the_sandbox_connection(engine: Engine, app: Any, peer: Peer) -> None:
    # Two tasks, each in a transaction of its own across an await: the second waits for the first's to end by
    # letting the loop run (before: ConnectionBusyError, "waiting would block the loop that runs the other task").
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    async def worker(n: int) -> None:
        async with AsyncSession(app) as session:
            await session.execute(text(INSERT), {"id": n, "name": f"first-{n}"})
            await asyncio.sleep(0.01)  # the other task runs meanwhile
            await session.execute(text(INSERT), {"id": n + 10, "name": f"second-{n}"})
            await session.commit()

    async def main() -> None:
        await asyncio.gather(worker(1), worker(2))

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        run(main)
        assert sorted(names_inside(sandbox)) == ["first-1", "first-2", "second-1", "second-2"]
    assert_nothing_survived(peer)


def test_sandbox_engines_take_an_async_engine(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text

    async def main() -> None:
        async with app.begin() as conn:
            await conn.execute(text(INSERT), {"id": 1, "name": "listed"})

    with Sandbox(engine, engines=[app]) as sandbox:
        run(main)
        assert names_inside(sandbox) == ["listed"]
    assert_nothing_survived(peer)


def test_pinned_from_inside_a_running_loop(engine: Engine, peer: Peer) -> None:
    # The engine's first connection (SQLAlchemy reads the server's facts) is made while the test's loop runs:
    # on a loop of its own in a helper thread, not on the running one.
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def main() -> list[str]:
        fresh = create_async_engine(sqlalchemy_async_url(engine.url))  # type: ignore[arg-type]
        try:
            with Sandbox(engine) as sandbox:
                pin_to_sandbox(sandbox, (fresh,))
                async with fresh.begin() as conn:
                    await conn.execute(text(INSERT), {"id": 1, "name": "in the loop"})
                return names_inside(sandbox)
        finally:
            await fresh.dispose()

    assert run(main) == ["in the loop"]
    assert_nothing_survived(peer)


# ---------------------------------------------------------------------------------------- ORM and types
class Base(DeclarativeBase):
    pass


class Thing(Base):
    """A row of common column types."""

    __tablename__ = "async_things"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    at: Mapped[datetime.datetime] = mapped_column(sa.DateTime)
    price: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(10, 2))
    data: Mapped[Any] = mapped_column(sa.JSON)
    key: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    done: Mapped[bool] = mapped_column(sa.Boolean)


@pytest.fixture
def things(app: Any) -> Iterator[type[Thing]]:
    """The mapped class ``Thing``, its table created for the test (through the app's engine, before it is
    pinned: SQLAlchemy's asyncpg dialect has no sync engine)."""

    def on_app(*calls: Callable[..., None]) -> None:
        async def main() -> None:
            async with app.begin() as connection:
                for call in calls:
                    await connection.run_sync(call)
            await app.dispose()  # its connections belong to this loop

        run(main)

    on_app(Base.metadata.drop_all, Base.metadata.create_all)
    yield Thing
    on_app(Base.metadata.drop_all)


def test_orm_round_trip_of_common_types(engine: Engine, app: Any, things: Any, peer: Peer) -> None:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import async_sessionmaker

    values = {
        "name": "thing",
        "at": datetime.datetime(2024, 5, 6, 7, 8, 9),
        "price": decimal.Decimal("12.34"),
        "data": {"tags": ["a", "b"], "n": 1},
        "key": uuid.uuid4(),
        "done": True,
    }
    make = async_sessionmaker(app, expire_on_commit=True)

    async def main() -> tuple[dict[str, Any], int]:
        async with make() as session:
            thing = things(**values)
            session.add(thing)
            await session.commit()
            await session.refresh(thing)  # expired by the commit: a SELECT through the sandbox
            assert thing.id >= 1
        async with make() as session:
            again = (await session.execute(select(things))).scalar_one()
            return {name: getattr(again, name) for name in values}, again.id

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        read, read_id = run(main)
        assert read == values
        assert read_id >= 1
    assert peer.fetchall("SELECT name FROM async_things") == []


# --------------------------------------------------------------------------------------------- escapes
def test_commit_sent_as_sql_stays_in_the_sandbox(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text

    async def main() -> None:
        async with app.connect() as conn:
            await conn.execute(text(INSERT), {"id": 1, "name": "raw commit"})
            await conn.exec_driver_sql("COMMIT")  # the app's commit: a savepoint release, not the sandbox's

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        run(main)
        assert names_inside(sandbox) == ["raw commit"]
    assert_nothing_survived(peer)


def test_a_two_phase_commit_is_refused(engine: Engine, app: Any, backend: Backend, peer: Peer) -> None:
    statement = "XA START 'txscope'" if backend.family == "mysql" else "PREPARE TRANSACTION 'txscope'"

    async def main() -> None:
        async with app.connect() as conn:
            await conn.exec_driver_sql(statement)

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        with pytest.raises(SandboxRefusedError) as info:
            run(main)
    assert str(info.value) == (
        f"{statement!r} sent as SQL is refused on the sandbox's connection: a prepared (two-phase) transaction "
        "outlives it; the test's transaction must stay open until the sandbox rolls it back (mark the test "
        "@pytest.mark.txscope(commit=True) to run it with real commits instead)"
    )
    assert_nothing_survived(peer)


def test_an_unpinned_async_engine_is_refused(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text

    async def main() -> None:
        async with app.begin() as conn:
            await conn.execute(text(INSERT), {"id": 1, "name": "escaped"})

    with Sandbox(engine) as sandbox:
        watch_unpinned(sandbox)
        with pytest.raises(UnpinnedEngineError) as info:
            run(main)
    message = str(info.value)
    assert re.fullmatch(
        re.escape(f"{describe_engine(app)} connected to the ")
        + re.escape(f"test database ({engine.url}) at ")
        + r"\S*test_sqlalchemy_async\.py:\d+ in main"
        + re.escape(
            ", but it is not pinned to the test's sandbox: what it writes would be committed for real and "
            "outlive the test; add its import path (package.module:attribute) to txscope_engines so that the "
            "sandbox pins it, or mark the test @pytest.mark.txscope(commit=True) if it must commit for real"
        ),
        message,
    ), message
    assert_nothing_survived(peer)


# ------------------------------------------------------------------------------------- refused engines
@pytest.mark.backends("postgresql", exact=True)
def test_an_asyncpg_engine_on_a_psycopg_sandbox_is_refused_with_the_fix(backend: Backend) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    test = DatabaseURL.parse(backend.url)
    app = create_async_engine("postgresql+asyncpg://app:secret@localhost/shop_test")
    with pytest.raises(EngineMismatchError) as info:
        check_pinnable(app, test, "psycopg", None)
    assert str(info.value) == (
        "txscope_engines: AsyncEngine(postgresql+asyncpg://app:***@localhost/shop_test) uses the asyncpg driver, "
        f"which pytest-txscope serves from a sandbox on asyncpg, but the test database is reached through "
        f"psycopg ({test}); make the test database's URL postgresql+asyncpg://"
    )


@pytest.mark.backends("postgresql", exact=True)
def test_an_async_engine_whose_twin_is_not_the_sandbox_driver_is_refused(backend: Backend) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    test = DatabaseURL.parse(backend.url.replace("postgresql://", "postgresql+psycopg2://"))
    app = create_async_engine(sqlalchemy_async_url(DatabaseURL.parse(backend.url)))
    with pytest.raises(EngineMismatchError) as info:
        check_pinnable(app, test, "psycopg2", None)
    assert str(info.value) == (
        f"txscope_engines: {describe_engine(app)} uses the psycopg "
        f"driver, which pytest-txscope serves from a sandbox on psycopg, but the test database is reached "
        f"through psycopg2 ({test}); make the test database's URL postgresql+psycopg://"
    )
