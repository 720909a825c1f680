"""`AsyncEngine`: the asyncio API's engine, a sync `Engine` whose connections are asyncio drivers' adapters.

The sync engine keeps the pool and the rules; this one runs its methods through the greenlet bridge. Its
connect function opens the asyncio driver's connection on the running loop (`Dialect.connect_async`), so each
connection belongs to the loop that opened it: used from another loop it raises `WrongEventLoopError`, and
once that loop is closed the pool discards it instead of handing it out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

from ..bridge import LoopRunner, await_, run_sync
from ..dialects import DBAPIConnection
from ..dialects.adapters import AiomysqlAdapter, AiosqliteAdapter, PsycopgAsyncAdapter
from ..dialects.asyncpg_adapter import AsyncpgAdapter
from ..errors import ConfigurationError, SyncWithError, TxScopeError
from ..url import DatabaseURL
from .aio import AsyncSession, AsyncTransaction, async_session, async_transaction
from .engine import Engine

__all__ = ["AsyncEngine"]

AsyncConnect = Callable[[], Awaitable[Any]]


class AsyncEngine:
    """A source of sessions over one database through an asyncio driver, for async code.

    ``async with engine as tx:`` opens a session and a transaction, commits on a clean exit and rolls back when
    the block raises; inside an open transaction of the same engine (in this task) it opens a nested one: a
    SAVEPOINT, or with ``nested="virtual"`` a virtual transaction that sends nothing.

    Args:
        connect: an async function returning a new connection of psycopg (``AsyncConnection``), aiosqlite or
            aiomysql; it is put in autocommit mode, as the library sends BEGIN itself.
        nested: ``"savepoint"`` (default) or ``"virtual"``, as for `Engine`.
        pool_size: how many idle connections to keep for reuse.
        max_connections: how many connections may be open at once; None for no limit.
        acquire_timeout: seconds to wait for a connection when ``max_connections`` are all in use.
    """

    def __init__(
        self,
        connect: AsyncConnect,
        *,
        nested: str = "savepoint",
        pool_size: int = 5,
        max_connections: int | None = None,
        acquire_timeout: float = 30.0,
    ) -> None:
        if not callable(connect):
            raise ConfigurationError(
                f"AsyncEngine() needs an async function that opens a new connection, not "
                f"{type(connect).__name__}; for a URL use AsyncEngine.from_url(url)"
            )
        sync = Engine(
            functools.partial(_open_adapted, connect),
            nested=nested,
            pool_size=pool_size,
            max_connections=max_connections,
            acquire_timeout=acquire_timeout,
        )
        self._bind(sync)

    def _bind(self, sync: Engine) -> None:
        self.sync_engine = sync
        """The sync `Engine` that holds the pool and runs the rules (what a sandbox pins)."""
        sync.twin = self

    @classmethod
    def from_url(cls, url: str | DatabaseURL, **connect_kwargs: Any) -> AsyncEngine:
        """An engine for an application's URL, through the backend's asyncio driver: ``sqlite+aiosqlite:///``,
        ``postgresql+psycopg_async://`` or ``mysql+aiomysql://``; the sync spellings (``sqlite:///``,
        ``postgresql://``, ``mysql://``) name the same asyncio drivers here. Options as `Engine.from_url`."""
        try:
            parsed = url if isinstance(url, DatabaseURL) else DatabaseURL.parse(url)
        except TxScopeError:
            url = "<not shown: it may hold a password>"  # pytest prints this frame's arguments
            raise
        engine = cls.__new__(cls)
        engine._bind(Engine.on_url(parsed, _bridged_connector, connect_kwargs))
        return engine

    # ----------------------------------------------------------------------------------------- facts
    @property
    def url(self) -> DatabaseURL | None:
        """The parsed URL (password masked when shown), when the engine was made from one."""
        return self.sync_engine.url

    @property
    def nested(self) -> str:
        """``"savepoint"`` or ``"virtual"``: what a block inside an open transaction does."""
        return self.sync_engine.nested

    @property
    def target(self) -> str:
        """What this engine connects to, safe to print (the password is masked)."""
        return self.sync_engine.target

    def __repr__(self) -> str:
        return f"<AsyncEngine {self.target} nested={self.nested}>"

    # -------------------------------------------------------------------------------------- sessions
    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """``async with engine.session() as session:``: this engine's current session in this task, or a new
        one, current for the block and closed at its end (see `Engine.session`)."""
        block = self.sync_engine.session()
        session = await run_sync(block.__enter__)
        try:
            yield async_session(session)
        except BaseException as exc:
            if not await run_sync(block.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            await run_sync(block.__exit__, None, None, None)

    async def begin(self) -> AsyncTransaction:
        """A transaction in this engine's current session, or the root one of a new session (closed when the
        transaction ends); see `Engine.begin`."""
        return async_transaction(await run_sync(self.sync_engine.begin))

    async def __aenter__(self) -> AsyncTransaction:
        return async_transaction(await run_sync(self.sync_engine.__enter__))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await run_sync(self.sync_engine.__exit__, exc_type, exc, tb)

    def __enter__(self) -> None:
        raise SyncWithError("an AsyncEngine")

    def __exit__(self, *exc_info: object) -> None:
        """Never reached: `__enter__` refuses."""

    async def executescript(self, script: str, *, source: str = "<script>") -> None:
        """Run an SQL script on a connection of its own, outside any transaction (see `Engine.executescript`)."""
        await run_sync(self.sync_engine.executescript, script, source=source)

    async def dispose(self) -> None:
        """Close every idle connection (call it before the loop that opened them closes)."""
        await run_sync(self.sync_engine.dispose)


def _bridged_connector(url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
    """The dialect's asyncio connect function, called from the sync engine inside the bridge."""
    from ..dialects import dialect_for_url

    connect = dialect_for_url(url).connect_async(url, kwargs)
    return lambda: await_(connect())


def _open_adapted(connect: AsyncConnect) -> DBAPIConnection:
    """A user's asyncio connection, behind the adapter the dialect drives (an adapted one passes as it is)."""
    raw = await_(connect())
    loop = asyncio.get_running_loop()
    module = type(raw).__module__
    what = f"{module.partition('.')[0]} connection from {getattr(connect, '__qualname__', repr(connect))}"
    package = module.partition(".")[0]  # psycopg's public classes say "psycopg", not their module
    if package == "psycopg" and hasattr(raw, "set_autocommit"):
        return PsycopgAsyncAdapter(raw, LoopRunner(loop, what))
    if package == "aiosqlite":
        return AiosqliteAdapter(raw, LoopRunner(loop, what))
    if package == "aiomysql":
        return AiomysqlAdapter(raw, LoopRunner(loop, what))
    if package == "asyncpg":
        return AsyncpgAdapter(raw, LoopRunner(loop, what), None)
    return raw  # an adapter already, or what the engine's UnsupportedConnectionError names
