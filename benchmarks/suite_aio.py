"""The async strategies' part of the generated benchmark suites (``-p benchmarks.suite_aio``, after the suite
plugin and pytest-asyncio).

Their tests are ``async def`` on pytest-asyncio's function-scoped loop and do `work_aio`: the work of the ORM
strategies (`benchmarks.suite_plugin.work_orm`) through an ``AsyncSession`` on the application's
``AsyncEngine`` (`engine`, made at import as applications make theirs). The three strategies differ only in
the fixture that hands the test its session:

- ``aio_session`` (``aio-none``): a session of the app's session factory; its commits are real;
- ``aio_app_session`` (``txscope-aio``): the same, once ``db_sandbox`` has started: pytest-txscope pins
  `engine` (``txscope_engines = benchmarks.suite_aio:engine``), so the commits become savepoint releases;
- ``aio_recipe_session`` (``aio-recipe``): SQLAlchemy's async "join an external transaction" recipe.

The asyncio driver of each family is in `AIO_DRIVERS`; ``bench.json``'s ``aio_driver`` (the harness's
``--aio-driver``) replaces it, which is where another driver of a backend (asyncpg) comes in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from benchmarks import schema
from benchmarks import suite_models as m
from benchmarks.suite_plugin import CONFIG, FAMILY, MEMORY, ROWS, TABLES, URL, rows_for
from pytest_txscope.sqlalchemy import sqlalchemy_async_url

__all__ = [
    "AIO_DRIVERS",
    "LOOP_BOUND",
    "aio_app_session",
    "aio_recipe_session",
    "aio_session",
    "engine",
    "sessions",
    "work_aio",
]

AIO_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+aiomysql"}
"""The SQLAlchemy asyncio dialect of each family (the asyncio twins pytest-txscope pins)."""
LOOP_BOUND = {"mysql+aiomysql", "postgresql+asyncpg"}
"""Drivers whose connections belong to the event loop that opened them: with a loop per test, the pool is
emptied after each test (SQLAlchemy's advice), so each test connects. The others' connections are reused."""

DRIVER: str = CONFIG.get("aio_driver") or AIO_DRIVERS[FAMILY]


def _make_engine(*, savepoint_fix: bool) -> AsyncEngine:
    made = create_async_engine(sqlalchemy_async_url(URL).set(drivername=DRIVER))
    if FAMILY != "sqlite":
        return made

    @event.listens_for(made.sync_engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        if savepoint_fix:  # SQLAlchemy's documented aiosqlite fix: no implicit transactions of the driver...
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    if savepoint_fix:

        @event.listens_for(made.sync_engine, "begin")
        def _begin(conn: Any) -> None:  # ...and SQLAlchemy sends BEGIN itself
            conn.exec_driver_sql("BEGIN")

    return made


engine = _make_engine(savepoint_fix=CONFIG.get("savepoint_fix", False))
"""The application's ``AsyncEngine``: what ``txscope_engines`` names in the ``txscope-aio`` suites."""
sessions = async_sessionmaker(engine)
"""The application's session factory, on `engine`."""


async def work_aio(session: AsyncSession, i: int) -> None:
    """Add the rows as ORM objects, commit, and read them back with an ORM join (`work_orm`, awaited)."""
    session.add_all([m.MODELS[table](**params) for table, params in rows_for(i)])
    await session.commit()
    assert len((await session.execute(m.JOIN, {"id": schema.BASE_ID + 16 * i})).all()) == 6


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session", autouse=True)
def _aio_memory_schema() -> Iterator[None]:
    """In-memory SQLite without pytest-txscope: the tables on the engine's one connection (a static pool).

    aiosqlite's connection runs in a thread of its own and answers on whichever loop awaits it, so the
    connection made here on a loop of its own serves the tests' loops."""
    if MEMORY and not CONFIG.get("txscope"):
        statements = schema.create_statements(FAMILY, TABLES) + schema.seed_statements(FAMILY, TABLES, ROWS)

        async def build() -> None:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.exec_driver_sql(statement)

        asyncio.run(build())
    yield
    if not CONFIG.get("txscope"):  # pytest-txscope closes a pinned engine's pool itself
        asyncio.run(engine.dispose())


async def _release_pool() -> None:
    if DRIVER in LOOP_BOUND and not CONFIG.get("txscope"):
        await engine.dispose()


@pytest.fixture
async def aio_session() -> AsyncIterator[AsyncSession]:
    """A session of the app's factory: its commits are real, nothing is cleaned (the async baseline)."""
    async with sessions() as session:
        yield session
    await _release_pool()


@pytest.fixture
async def aio_app_session(db_sandbox: Any) -> AsyncIterator[AsyncSession]:
    """A session of the app's factory inside the test's sandbox (its engine pinned by ``txscope_engines``)."""
    async with sessions() as session:
        yield session


@pytest.fixture
async def aio_recipe_session() -> AsyncIterator[AsyncSession]:
    """SQLAlchemy's async recipe: an ``AsyncConnection`` in a transaction rolled back after the test, and a
    session joined to it with ``join_transaction_mode="create_savepoint"`` (its commits release savepoints)."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        await session.close()
        await transaction.rollback()
    await _release_pool()
