"""The asyncio API's transactions, sessions and cursors: thin twins of the sync ones, run through the greenlet
bridge.

Every method awaits the sync method of the object it wraps with `pytest_txscope.bridge.run_sync`: the
transaction rules are the sync core's, written once. Each sync object has at most one twin (kept on it), so that
``tx.session is outer.session`` holds in async code as in sync code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any

from ..bridge import run_sync
from ..dialects import Dialect
from ..errors import SyncWithError
from .session import Session, current_session
from .states import TransactionKind, TransactionState
from .transaction import Executor, Transaction

__all__ = [
    "AsyncCursor",
    "AsyncExecutor",
    "AsyncSession",
    "AsyncTransaction",
    "async_session",
    "async_transaction",
    "current_async_session",
]


class AsyncCursor:
    """The cursor of a statement run through the asyncio API: ``await cursor.fetchall()``, ``async for row in
    cursor``. It wraps the cursor the sync core returned (rows an asyncio driver's adapter has read already)."""

    __slots__ = ("sync",)

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        """The DB-API cursor wrapped."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed or returned, as the driver counts them."""
        return int(self.sync.rowcount)

    @property
    def description(self) -> Any:
        """The DB-API description of the result's columns (None for a statement with no result)."""
        return self.sync.description

    @property
    def lastrowid(self) -> Any:
        """The id of the row an INSERT added, where the driver reports it."""
        return getattr(self.sync, "lastrowid", None)

    async def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or None."""
        row = await run_sync(self.sync.fetchone)
        return None if row is None else tuple(row)

    async def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to ``size`` more rows (the cursor's ``arraysize`` by default)."""
        rows = (
            await run_sync(self.sync.fetchmany) if size is None else await run_sync(self.sync.fetchmany, size)
        )
        return [tuple(row) for row in rows]

    async def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row not read yet."""
        return [tuple(row) for row in await run_sync(self.sync.fetchall)]

    async def close(self) -> None:
        """Close the cursor."""
        await run_sync(self.sync.close)

    def __aiter__(self) -> AsyncIterator[tuple[Any, ...]]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[tuple[Any, ...]]:
        while (row := await self.fetchone()) is not None:
            yield row


class AsyncExecutor:
    """The statement helpers `AsyncTransaction` and `AsyncSession` share (awaitable `Executor` methods)."""

    __slots__ = ()

    sync: Executor

    async def execute(self, sql: str, params: Any = None) -> AsyncCursor:
        """Run one statement (portable placeholders: ``:name`` with a mapping, ``?`` with a sequence)."""
        return AsyncCursor(await run_sync(self.sync.execute, sql, params))

    async def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> AsyncCursor:
        """Run one statement once per parameter set."""
        return AsyncCursor(await run_sync(self.sync.executemany, sql, seq_of_params))  # type: ignore[attr-defined]

    async def fetchall(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run a query and return every row as a tuple."""
        return await run_sync(self.sync.fetchall, sql, params)

    async def fetchone(self, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        """Run a query and return its first row, or None."""
        return await run_sync(self.sync.fetchone, sql, params)

    async def fetchscalar(self, sql: str, params: Any = None) -> Any:
        """Run a query and return the first column of its first row, or None when there is no row."""
        return await run_sync(self.sync.fetchscalar, sql, params)


class AsyncTransaction(AsyncExecutor):
    """A `Transaction` for async code: ``async with`` it, ``await`` its statements, `commit` and `rollback`.

    A clean exit of its ``async with`` block commits (a nested transaction releases its savepoint), an exception
    rolls back and propagates, exactly as the sync `Transaction`'s ``with`` block does.
    """

    __slots__ = ("sync",)

    def __init__(self, sync: Transaction) -> None:
        self.sync: Transaction = sync
        """The sync transaction this one runs."""

    def __repr__(self) -> str:
        return f"<AsyncTransaction #{self.number} {self.kind.value} {self.state.value}>"

    # ----------------------------------------------------------------------------------------- state
    @property
    def kind(self) -> TransactionKind:
        """ROOT, NESTED (a savepoint) or VIRTUAL (joins its parent)."""
        return self.sync.kind

    @property
    def state(self) -> TransactionState:
        """ACTIVE, COMMITTED, ROLLED_BACK or BROKEN."""
        return self.sync.state

    @property
    def number(self) -> int:
        """Its number in the session (``transaction #2``)."""
        return self.sync.number

    @property
    def implicit(self) -> bool:
        """True for the transaction statements outside any block opened by themselves."""
        return self.sync.implicit

    @property
    def is_active(self) -> bool:
        """True until the transaction is committed, rolled back or broken."""
        return self.sync.is_active

    @property
    def parent(self) -> AsyncTransaction | None:
        """The transaction this one was opened in (None for a root)."""
        parent = self.sync.parent
        return None if parent is None else async_transaction(parent)  # type: ignore[arg-type]

    @property
    def session(self) -> Any:
        """The `AsyncSession` the transaction belongs to."""
        return async_session(self.sync.session)  # type: ignore[arg-type]  # a Host is a Session

    def describe(self) -> str:
        """Short text naming this transaction in messages."""
        return self.sync.describe()

    # --------------------------------------------------------------------------------------- control
    async def begin_nested(self) -> AsyncTransaction:
        """Open a transaction nested in this one (a SAVEPOINT, or virtual on engines with nested="virtual")."""
        return async_transaction(await run_sync(self.sync.begin_nested))

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after the top-most transaction commits (a coroutine function's coroutine is awaited
        then); drop it if this work is rolled back. See `Transaction.on_commit`."""
        self.sync.on_commit(callback)

    async def commit(self) -> None:
        """Commit: release a nested transaction's savepoint, COMMIT a root one, nothing for a virtual one."""
        await run_sync(self.sync.commit)

    async def rollback(self) -> None:
        """Roll back this transaction and every transaction still open inside it."""
        await run_sync(self.sync.rollback)

    # ------------------------------------------------------------------------------- context manager
    async def __aenter__(self) -> AsyncTransaction:
        await run_sync(self.sync.__enter__)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await run_sync(self.sync.__exit__, exc_type, exc, tb)

    def __enter__(self) -> None:
        raise SyncWithError("an AsyncTransaction")

    def __exit__(self, *exc_info: object) -> None:
        """Never reached: `__enter__` refuses."""


def async_transaction(tx: Transaction) -> AsyncTransaction:
    """The one `AsyncTransaction` of ``tx``."""
    twin: AsyncTransaction | None = tx.twin
    if twin is None:
        twin = tx.twin = AsyncTransaction(tx)
    return twin


class AsyncSession(AsyncExecutor):
    """A `Session` for async code: a connection and the transactions on it.

    ``async with session as tx:`` opens a transaction block (the root one, or a SAVEPOINT inside the open one);
    statements awaited on the session outside any block run in its implicit transaction, rolled back when it
    closes. Sessions come from ``async with engine.session() as session:``.
    """

    __slots__ = ("sync",)

    def __init__(self, sync: Session) -> None:
        self.sync: Session = sync
        """The sync session this one runs."""

    def __repr__(self) -> str:
        return f"<AsyncSession of {self.sync!r}>"

    @property
    def engine(self) -> Any:
        """The `AsyncEngine` the session came from (the sync `Engine` for a sync engine's session)."""
        engine = self.sync.engine
        return engine if engine is None or engine.twin is None else engine.twin

    @property
    def dialect(self) -> Dialect:
        """The backend's dialect."""
        return self.sync.dialect

    @property
    def connection(self) -> Any:
        """The connection the session drives (an asyncio driver's adapter, whose ``raw`` is the driver's own)."""
        return self.sync.connection

    @property
    def closed(self) -> bool:
        """True once the session was closed."""
        return self.sync.closed

    @property
    def is_guest(self) -> bool:
        """True for a session sharing a connection another session holds (inside a sandbox)."""
        return self.sync.is_guest

    @property
    def transaction(self) -> AsyncTransaction | None:
        """The innermost open transaction, or None."""
        tx = self.sync.transaction
        return None if tx is None else async_transaction(tx)

    async def begin(self) -> AsyncTransaction:
        """Open a transaction: the root one, or a nested one inside the innermost open transaction."""
        return async_transaction(await run_sync(self.sync.begin))

    async def join(self) -> AsyncTransaction:
        """A virtual transaction joined to the innermost open one (what ``ensure_transaction()`` yields)."""
        return async_transaction(await run_sync(self.sync.join))

    async def close(self) -> None:
        """Roll back whatever is open and give the connection back to the engine's pool."""
        await run_sync(self.sync.close)

    async def __aenter__(self) -> Any:
        entered = await run_sync(self.sync.__enter__)
        return self if entered is self.sync else async_transaction(entered)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await run_sync(self.sync.__exit__, exc_type, exc, tb)

    def __enter__(self) -> None:
        raise SyncWithError("an AsyncSession")

    def __exit__(self, *exc_info: object) -> None:
        """Never reached: `__enter__` refuses."""


def async_session(session: Session) -> AsyncSession:
    """The one `AsyncSession` of ``session``."""
    twin: AsyncSession | None = session.twin
    if twin is None:
        twin = session.twin = AsyncSession(session)
    return twin


def current_async_session() -> AsyncSession | None:
    """The innermost open session of this task (or thread), as an `AsyncSession`; None when there is none."""
    session = current_session()
    return None if session is None else async_session(session)
