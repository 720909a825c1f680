"""Transactions as code sees them: root (BEGIN ... COMMIT), nested (a SAVEPOINT) and virtual (joins its parent).

A `Transaction` is a `Frame` of the state machine with the methods code calls; each one asks the session that
opened it (its `Host`) to carry out the transition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import Token
from types import TracebackType
from typing import Any, Protocol

from ..dialects import DBAPICursor
from ..errors import TransactionStateError
from .states import ACTIVE, Frame, Lane, TransactionKind, TransactionState

__all__ = ["Executor", "Host", "Sender", "Transaction"]


class Executor:
    """The statement helpers shared by `Transaction` and `Session`."""

    __slots__ = ()

    def execute(self, sql: str, params: Any = None) -> DBAPICursor:
        """Run one statement; see `Transaction.execute`."""
        raise NotImplementedError

    def fetchall(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run a query and return every row as a tuple."""
        cursor = self.execute(sql, params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def fetchone(self, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        """Run a query and return its first row, or None."""
        cursor = self.execute(sql, params)
        try:
            row = cursor.fetchone()
            return None if row is None else tuple(row)
        finally:
            cursor.close()

    def fetchscalar(self, sql: str, params: Any = None) -> Any:
        """Run a query and return the first column of its first row, or None when there is no row."""
        row = self.fetchone(sql, params)
        return None if row is None else row[0]


class Sender(Protocol):
    """Where a transaction's statements go (the connection's channel)."""

    def execute(self, sql: str, params: Any, lane: Lane | None = None) -> DBAPICursor:
        """Send one statement (``lane``: the session sending it)."""

    def executemany(self, sql: str, seq: Sequence[Any], lane: Lane | None = None) -> DBAPICursor:
        """Send one statement once per parameter set."""


class Host(Protocol):
    """What a transaction asks of the session that opened it (`Session` implements it)."""

    @property
    def engine(self) -> Any:
        """The engine the session came from, or None."""

    @property
    def closed(self) -> bool:
        """Whether the session was closed."""

    def check_usable(self, tx: Transaction) -> None:
        """Refuse a statement on ``tx`` unless it is the session's innermost real transaction."""

    def open_inside(self, tx: Transaction) -> Transaction:
        """Open a transaction nested in ``tx``."""

    def end(self, tx: Transaction, *, commit: bool) -> None:
        """Commit or roll back ``tx``."""

    def enter_block(self, tx: Transaction, opened_by: object | None) -> None:
        """Make ``tx`` current for a ``with`` block."""

    def exit_block(self, tx: Transaction, exc: BaseException | None) -> None:
        """End the ``with`` block of ``tx``."""


class Transaction(Frame, Executor):
    """A unit of work on a `Session`.

    Use it as a context manager: a clean exit commits (a nested transaction releases its savepoint, only the
    top-most one commits), an exception rolls back and propagates. ``commit()`` and ``rollback()`` end it
    explicitly; leaving the block afterwards does nothing more. Statements run with `execute` and the
    ``fetch*`` helpers, always inside this transaction.
    """

    __slots__ = ("block_token", "entered", "forced", "sender", "session", "twin")

    def __init__(
        self,
        lane: Lane,
        kind: TransactionKind,
        parent: Transaction | None,
        number: int,
        below: Transaction | None,
    ) -> None:
        super().__init__(lane, kind, parent, number, below)
        self.session: Host = lane.owner
        """The `Session` the transaction belongs to."""
        self.sender: Sender = lane.io
        """The channel of the transaction's connection."""
        self.block_token: Token[Any] | None = None
        """Undoes the current-session change of the transaction's ``with`` block, while it is open."""
        self.entered = False
        """Whether the transaction was used as a ``with`` block."""
        self.forced = False
        """An enclosing block ended first (out of order) and rolled this one back."""
        self.twin: Any = None
        """The `AsyncTransaction` the asyncio API wraps this one in, once it handed it out (one per transaction,
        so that the async API's objects compare as the sync ones do)."""

    def __repr__(self) -> str:
        return f"<Transaction #{self.number} {self.kind.value} {self.state.value}>"

    # ------------------------------------------------------------------------------------------ execution
    def execute(self, sql: str, params: Any = None) -> DBAPICursor:
        """Run one statement in this transaction and return the driver's cursor.

        ``sql`` uses portable placeholders: ``:name`` with a mapping, or ``?`` with a sequence; the same text
        runs on SQLite, PostgreSQL and MySQL/MariaDB. Without parameters the text goes to the driver unchanged.
        """
        if self.state is not ACTIVE or self.lane.innermost is not self:
            self.session.check_usable(self)
        return self.sender.execute(sql, params, self.lane)

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> DBAPICursor:
        """Run one statement once per parameter set (portable placeholders, as `execute`)."""
        if self.state is not ACTIVE or self.lane.innermost is not self:
            self.session.check_usable(self)
        return self.sender.executemany(sql, seq_of_params, self.lane)

    # ------------------------------------------------------------------------------------------- control
    def begin_nested(self) -> Transaction:
        """Open a transaction nested in this one (a SAVEPOINT, or virtual on engines with nested="virtual")."""
        self.require_active("begin a nested transaction")
        return self.session.open_inside(self)

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after the top-most transaction commits; drop it if this work is rolled back.

        Callbacks run in the order they were registered. If one raises, the others still run and the first
        exception is raised from the commit, after the data is committed.
        """
        self.require_active("register an on_commit callback")
        target: Frame = self
        while target.kind is TransactionKind.VIRTUAL and target.parent is not None:
            target = target.parent
        target.callbacks.append(callback)

    def commit(self) -> None:
        """Commit: release the savepoint of a nested transaction, COMMIT a root one, nothing for a virtual one.

        Raises `TransactionStateError` if a transaction opened inside this one is still active.
        """
        self.require_active("commit")
        self.session.end(self, commit=True)

    def rollback(self) -> None:
        """Roll back this transaction and every transaction still open inside it.

        On a BROKEN transaction (the server already ended it) this only unwinds the session's bookkeeping.
        """
        if self.state is not TransactionState.BROKEN:
            self.require_active("roll back")
        self.session.end(self, commit=False)

    # ----------------------------------------------------------------------------------- context manager
    def __enter__(self) -> Transaction:
        return self.enter(None)

    def enter(self, opened_by: object | None) -> Transaction:
        """Use the transaction as a ``with`` block opened by ``opened_by`` (an engine, a session, or None)."""
        if self.entered:
            raise TransactionStateError(
                f"{self.describe()} is already used as a 'with' block; open a new transaction instead"
            )
        self.require_active("enter a 'with' block")
        self.session.enter_block(self, opened_by)
        self.entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.exit_block(self, exc)
