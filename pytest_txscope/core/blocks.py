"""``transaction()`` and ``ensure_transaction()``: blocks that find the current session from context."""

from __future__ import annotations

from types import TracebackType

from ..bridge import run_sync
from ..errors import MissingEngineError, TransactionStateError
from .aio import AsyncTransaction, async_transaction
from .aio_engine import AsyncEngine
from .context import find_session
from .engine import Engine
from .session import Session, current_session
from .transaction import Transaction

__all__ = ["ensure_transaction", "transaction"]


class TransactionBlock:
    """The context manager returned by `transaction` and `ensure_transaction`.

    Nothing happens until the block is entered; entering yields the `Transaction`. In async code ``async with``
    runs the same block through the greenlet bridge and yields its `AsyncTransaction`.
    """

    __slots__ = ("_engine", "_join", "_name", "_tx")

    def __init__(self, engine: Engine | AsyncEngine | None, *, join: bool, name: str) -> None:
        self._engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        self._join = join
        self._name = name
        self._tx: Transaction | None = None

    def __enter__(self) -> Transaction:
        session: Session | None
        if self._engine is None:
            session = current_session()
            if session is None:
                raise MissingEngineError(self._name)
        else:
            session = find_session(Session, self._engine)
        if session is None:
            assert self._engine is not None
            tx = self._engine.begin()  # nothing current: a new session and root transaction of its own
        elif self._join:
            tx = session.join()
        else:
            tx = session.begin()
        self._tx = tx
        return tx.enter(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tx, self._tx = self._tx, None
        if tx is None:
            raise TransactionStateError(
                f"a {self._name}() block was exited without being entered, or twice; use it as "
                f"'with {self._name}(...) as tx:'"
            )
        try:
            tx.session.exit_block(tx, exc)
        finally:
            if tx.block_token is not None:  # exited in another thread or task: still open, for its own to end
                self._tx = tx

    async def __aenter__(self) -> AsyncTransaction:
        return async_transaction(await run_sync(self.__enter__))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await run_sync(self.__exit__, exc_type, exc, tb)


def transaction(engine: Engine | AsyncEngine | None = None) -> TransactionBlock:
    """A transaction block in the current session: nested (a SAVEPOINT) when one is open, else the root one.

    Without ``engine`` the innermost current session of this thread or task is used, and
    `MissingEngineError` is raised when there is none. With ``engine``, that
    engine's current session is used, or a new one is opened for the block (and closed after it):

        with transaction(engine) as tx:
            tx.execute("INSERT INTO t (name) VALUES (:name)", {"name": "x"})

    In async code, with an `AsyncEngine` or inside one's session: ``async with transaction() as tx:``.
    """
    return TransactionBlock(engine, join=False, name="transaction")


def ensure_transaction(engine: Engine | AsyncEngine | None = None) -> TransactionBlock:
    """Join the current transaction if there is one, else open one.

    Joining yields a virtual transaction: it neither commits nor rolls back, the enclosing transaction decides.
    Inside a bare ``engine.session()`` block it joins the session's own implicit transaction, which is rolled
    back when the session closes. With nothing current, ``engine`` is required and a new transaction is opened
    (and committed on a clean exit); without it `MissingEngineError` is raised.
    """
    return TransactionBlock(engine, join=True, name="ensure_transaction")
