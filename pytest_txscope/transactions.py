"""Transactions: root (BEGIN ... COMMIT), nested (a SAVEPOINT) and virtual (joins its parent, no SQL)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .context import Scope, push_scope
from .errors import TransactionStateError

if TYPE_CHECKING:
    from .dialects import DBAPICursor
    from .session import Session

__all__ = ["Executor", "Transaction", "TransactionKind", "TransactionState"]


class TransactionKind(enum.Enum):
    """What ending a transaction does on the server."""

    ROOT = "root"
    """``BEGIN`` ... ``COMMIT`` / ``ROLLBACK``: the only kind that really commits."""
    NESTED = "nested"
    """A ``SAVEPOINT``: commit releases it, rollback rolls back to it."""
    VIRTUAL = "virtual"
    """Joins the enclosing transaction: neither commits nor rolls back (``ensure_transaction()``, or nested
    blocks on an engine created with ``nested="virtual"``)."""


class TransactionState(enum.Enum):
    """Where a transaction is in its life."""

    ACTIVE = "active"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"
    BROKEN = "broken"
    """The server ended it behind the library's back (MySQL DDL, a raw COMMIT): see ``Transaction.failure``."""


_ACTIVE = TransactionState.ACTIVE


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


class Transaction(Executor):
    """A unit of work on a `Session`.

    Use it as a context manager: a clean exit commits (a nested transaction releases its savepoint, only the
    top-most one commits), an exception rolls back and propagates. ``commit()`` and ``rollback()`` end it
    explicitly; leaving the block afterwards does nothing more. Statements run with `execute` and the
    ``fetch*`` helpers, always inside this transaction.
    """

    __slots__ = (
        "_callbacks",
        "_entered",
        "_forced",
        "_lease",
        "_owns_session",
        "_token",
        "below",
        "depth",
        "failure",
        "implicit",
        "kind",
        "number",
        "parent",
        "savepoint",
        "session",
        "state",
    )

    def __init__(
        self,
        session: Session,
        kind: TransactionKind,
        parent: Transaction | None,
        number: int,
        *,
        below: Transaction | None,
        savepoint: str | None = None,
    ) -> None:
        self.session = session
        self.kind = kind
        self.parent = parent
        self.below = below
        """The transaction under this one on the connection, whatever its session (for a guest session's root,
        the host's transaction it sits on)."""
        self.depth: int = 0 if below is None else below.depth + (0 if kind is TransactionKind.VIRTUAL else 1)
        """How many savepoints deep this transaction is on the connection."""
        self.number = number
        self.savepoint = savepoint
        self.state = TransactionState.ACTIVE
        self.failure: str | None = None
        """Why the transaction is BROKEN or was force-ended, for the errors raised when it is used again."""
        self.implicit = False
        """True for the transaction a bare session opens by itself for statements run outside any block."""
        self._callbacks: list[Callable[[], object]] = []
        self._token: Token[Scope | None] | None = None
        self._entered = False
        self._forced = False
        self._owns_session = False
        self._lease: Any = None

    # ----------------------------------------------------------------------------------------------- state
    @property
    def is_active(self) -> bool:
        """True until the transaction is committed, rolled back or broken."""
        return self.state is TransactionState.ACTIVE

    def __repr__(self) -> str:
        return f"<Transaction #{self.number} {self.kind.value} {self.state.value}>"

    def describe(self) -> str:
        """Short text naming this transaction in error messages."""
        kind = (
            "root, as a savepoint"
            if self.kind is TransactionKind.ROOT and self.savepoint
            else self.kind.value
        )
        return f"transaction #{self.number} ({kind})"

    def _require_active(self, action: str) -> None:
        if self.state is TransactionState.ACTIVE:
            return
        reason = f": {self.failure}" if self.failure else ""
        raise TransactionStateError(
            f"cannot {action}: {self.describe()} is already {self.state.value}{reason}; "
            "open a new transaction block for more work"
        )

    # ------------------------------------------------------------------------------------------ execution
    def execute(self, sql: str, params: Any = None) -> DBAPICursor:
        """Run one statement in this transaction and return the driver's cursor.

        ``sql`` uses portable placeholders: ``:name`` with a mapping, or ``?`` with a sequence; the same text
        runs on SQLite, PostgreSQL and MySQL/MariaDB. Without parameters the text goes to the driver unchanged.
        """
        session = self.session
        if self.state is not _ACTIVE or session._innermost is not self:
            session._check_executable(self)
        return session._channel.execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> DBAPICursor:
        """Run one statement once per parameter set (portable placeholders, as `execute`)."""
        if self.state is not TransactionState.ACTIVE or self.session._innermost is not self:
            self.session._check_executable(self)
        return self.session._channel.executemany(sql, seq_of_params)

    # ------------------------------------------------------------------------------------------- control
    def begin_nested(self) -> Transaction:
        """Open a transaction nested in this one (a SAVEPOINT, or virtual on engines with nested="virtual")."""
        self._require_active("begin a nested transaction")
        inner = self.session._innermost
        if inner is not None and inner is not self:
            # Only virtual transactions (joined ones) may be open inside this one: the new one goes inside
            # them, as they send nothing, so that the connection's stack stays one line.
            self.session._check_executable(self)
            return self.session._begin_child(inner)
        return self.session._begin_child(self)

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after the top-most transaction commits; drop it if this work is rolled back.

        Callbacks run in the order they were registered. If one raises, the others still run and the first
        exception is raised from the commit, after the data is committed.
        """
        self._require_active("register an on_commit callback")
        target: Transaction = self
        while target.kind is TransactionKind.VIRTUAL and target.parent is not None:
            target = target.parent
        target._callbacks.append(callback)

    def commit(self) -> None:
        """Commit: release the savepoint of a nested transaction, COMMIT a root one, nothing for a virtual one.

        Raises `TransactionStateError` if a transaction opened inside this one is still active.
        """
        self._require_active("commit")
        self.session._commit(self)

    def rollback(self) -> None:
        """Roll back this transaction and every transaction still open inside it.

        On a BROKEN transaction (the server already ended it) this only unwinds the session's bookkeeping.
        """
        if self.state is not TransactionState.BROKEN:
            self._require_active("roll back")
        self.session._rollback(self)

    # ----------------------------------------------------------------------------------- context manager
    def __enter__(self) -> Transaction:
        return self._enter(None)

    def _enter(self, opened_by: object | None) -> Transaction:
        if self._entered:
            raise TransactionStateError(
                f"{self.describe()} is already used as a 'with' block; open a new transaction instead"
            )
        self._require_active("enter a 'with' block")
        if self.session._innermost is not self:
            self.session._check_executable(self)
        self._entered = True
        _, self._token = push_scope(self.session, self, opened_by)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session._exit_block(self, exc)
