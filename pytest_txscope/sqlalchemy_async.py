"""SQLAlchemy ``AsyncEngine``s inside the sandbox: pinned as sync engines are, through their ``sync_engine``.

The sandbox's connection stays a sync driver connection: the async driver's twin (sqlite3 for aiosqlite,
psycopg 3 for SQLAlchemy's async psycopg dialect, PyMySQL for aiomysql). While an ``AsyncEngine`` is pinned,
its pool gets, for each new connection, SQLAlchemy's own asyncio adapter (``AsyncAdapt_aiosqlite_connection``
...) built around an async face of a sandbox connection (`pytest_txscope.facades.aio_base.AsyncFace`) instead of
around a driver connection: the app's ``AsyncSession`` commits become savepoint releases, its rollbacks roll back
to the savepoint, ``begin_nested()`` nests, and nothing survives the sandbox. The face runs each statement at
once on the sandbox's connection, blocking the event loop for that time.

SQLAlchemy reads the server's facts on an engine's first connection; that one is real, made on an event loop of
its own in a helper thread (so that no pooled connection is bound to the test's loop, and a running loop is
not re-entered), and disposed of at once.

SQLAlchemy is imported lazily: this module is loaded when an async engine is pinned.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

from .dbapi import SandboxConnection
from .errors import ConfigurationError, TxScopeError
from .facades import async_face_for
from .facades.aio_base import SandboxFace
from .url import DatabaseURL

__all__ = [
    "adapter_maker",
    "async_drivername",
    "create_all_apart",
    "initialize_apart",
    "is_async_engine_object",
    "sandbox_connection_of",
    "sync_engine_of",
]

# The SQLAlchemy dialect's driver -> the name of its asyncio adapter class, in the dialect's own module.
_ADAPTERS = {
    "aiosqlite": "AsyncAdapt_aiosqlite_connection",
    "psycopg": "AsyncAdapt_psycopg_connection",
    "aiomysql": "AsyncAdapt_aiomysql_connection",
    "asyncpg": "AsyncAdapt_asyncpg_connection",
}

# The test database's driver (as URLs spell it) -> the SQLAlchemy asyncio dialect of its twin; the default
# driver of each backend, whose twin is named when the test database's driver has none.
_ASYNC_SPELLINGS = {
    "pysqlite": "sqlite+aiosqlite",
    "psycopg": "postgresql+psycopg",
    "pymysql": "mysql+aiomysql",
    "asyncpg": "postgresql+asyncpg",
}
_DEFAULT_TWINS = {"sqlite": "pysqlite", "postgresql": "psycopg", "mysql": "pymysql"}


def async_drivername(url: DatabaseURL) -> str:
    """The SQLAlchemy asyncio dialect (``mysql+aiomysql``) an app's ``AsyncEngine`` must use to be pinned to a
    sandbox on ``url``; `ConfigurationError` for a driver with no asyncio twin (psycopg2, mysqlclient)."""
    from .dialects import dialect_for_url

    driver = dialect_for_url(url).url_driver
    name = _ASYNC_SPELLINGS.get(driver)
    if name is None:
        default = _DEFAULT_TWINS[url.backend]
        raise ConfigurationError(
            f"the test database {url} is reached through {driver}, which has no asyncio twin that pytest-txscope "
            f"pins; make the test database's URL {url.backend}+{default}:// to serve "
            f"{_ASYNC_SPELLINGS[default]}:// engines"
        )
    return name


def is_async_engine_object(obj: object) -> bool:
    """Whether ``obj`` is a SQLAlchemy ``AsyncEngine`` itself (not its ``sync_engine``)."""
    return any(
        c.__module__.startswith("sqlalchemy.") and c.__name__ == "AsyncEngine" for c in type(obj).__mro__
    )


def sync_engine_of(engine: Any) -> Any:
    """The ``Engine`` that does the work of ``engine``: its ``sync_engine`` for an ``AsyncEngine``."""
    return engine.sync_engine if is_async_engine_object(engine) else engine


def sandbox_connection_of(dbapi_connection: Any) -> SandboxConnection | None:
    """The sandbox connection a pool's connection is (sync engines) or wraps (SQLAlchemy's asyncio adapter
    around a `SandboxFace`, read through its public ``driver_connection``); None for a real connection."""
    if isinstance(dbapi_connection, SandboxConnection):
        return dbapi_connection
    face = getattr(dbapi_connection, "driver_connection", None)
    return face.sandbox_connection if isinstance(face, SandboxFace) else None


def initialize_apart(sync_engine: Any) -> None:
    """Let SQLAlchemy read the server's facts for an async engine on one real connection, opened and closed on
    a temporary event loop in a helper thread (the caller's loop, if one runs, is neither used nor blocked on
    anything but that thread)."""
    from sqlalchemy.ext.asyncio import AsyncEngine

    async def connect_once() -> None:
        engine = AsyncEngine(sync_engine)
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()  # no pooled connection stays bound to this loop

    _run_apart(connect_once, "txscope-initialize")


def create_all_apart(metadata: Any, async_url: Any) -> None:
    """``metadata.create_all()`` through an ``AsyncEngine`` on ``async_url`` (asyncpg has no sync SQLAlchemy
    dialect), on a temporary event loop in a helper thread, as `initialize_apart`."""
    from sqlalchemy.ext.asyncio import create_async_engine

    async def create() -> None:
        engine = create_async_engine(async_url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
        finally:
            await engine.dispose()

    _run_apart(create, "txscope-create-all")


def _run_apart(main: Callable[[], Any], name: str) -> None:
    failures: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # handed to the caller's thread, raised there
            failures.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def adapter_maker(sync_engine: Any) -> Callable[[SandboxConnection], Any]:
    """What turns a sandbox connection into the connection ``sync_engine``'s pool expects: SQLAlchemy's asyncio
    adapter of the engine's dialect around the connection's async face, built as the dialect's own ``connect()``
    builds it (SQLAlchemy 2.0 and 2.1 give it different arguments)."""
    import importlib

    dialect = sync_engine.dialect
    name = _ADAPTERS.get(dialect.driver)
    if name is None:
        raise TxScopeError(f"no asyncio adapter is known for SQLAlchemy's {dialect.driver} dialect")
    # The adapter classes are not public API, but are the dialect's own way of adapting a driver connection:
    # building one keeps everything SQLAlchemy does on top of it (cursors, errors, pool events) as it is.
    adapter = getattr(importlib.import_module(type(dialect).__module__), name)
    takes_dbapi = "dbapi" in inspect.signature(adapter).parameters
    dbapi = dialect.dbapi

    def adapt(connection: SandboxConnection) -> Any:
        face_class = async_face_for(connection.session.dialect.driver)
        if face_class is None:
            raise TxScopeError(f"no async face for the sandbox's driver {connection.session.dialect.driver}")
        face = face_class(connection)
        return adapter(dbapi, face) if takes_dbapi else adapter(face)

    return adapt
