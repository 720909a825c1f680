"""A DB-API connection object over a sandbox's connection, for code that wants a raw connection.

It behaves like the driver's own connection in its default (non-autocommit) mode: the first statement opens a
transaction, ``commit()`` ends it, ``rollback()`` undoes it, ``close()`` discards what is uncommitted. Inside the
sandbox those become a SAVEPOINT, its RELEASE and a ROLLBACK TO it. Statements use the driver's own parameter
style, as they would on the real connection. What would end the sandbox's transaction is refused.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from .core import Channel, Session
from .errors import SandboxRefusedError, TransactionStateError
from .places import Place, caller_place

__all__ = ["SandboxConnection", "SandboxCursor"]

# Statements that only read, or only control transactions: the rest may change data.
_READS = (
    "SELECT",
    "SHOW",
    "EXPLAIN",
    "DESCRIBE",
    "PRAGMA",
    "VALUES",
    "SET",
    "SAVEPOINT",
    "RELEASE",
    "ROLLBACK",
)


def _may_write(sql: str) -> bool:
    return not sql.lstrip()[:9].upper().startswith(_READS)


class SandboxCursor:
    """A cursor whose statements run inside the sandbox (the driver's cursor does the rest)."""

    def __init__(self, connection: SandboxConnection, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._connection = connection
        self._args = (args, kwargs)
        # The driver's cursor is made when first needed: the first statement of a sandbox may find its connection
        # dead and replace it (see Channel.flush), and sqlite3 refuses even a cursor on a closed connection.
        self._raw: Any = None
        self._cursor: Any = None

    def _current(self, raw: Any) -> Any:
        """The driver's cursor on ``raw``, made now if there is none on it yet."""
        if raw is not self._raw:
            self._raw = raw
            self._cursor = raw.cursor(*self._args[0], **self._args[1])
            self.adopt(self._cursor)
        return self._cursor

    def adopt(self, cursor: Any) -> None:
        """Hook for a driver's face: set up the driver's cursor just made for this one (nothing here)."""

    def execute(self, sql: str, params: Any = None) -> SandboxCursor:
        """Run a statement (driver's parameter style) inside the connection's current savepoint."""
        channel = self._connection._begin()
        if not self._connection.wrote and _may_write(sql):
            self._connection.wrote = True
        if params is None:
            channel.checked(sql, lambda: self._current(channel.connection).execute(sql))
        else:
            channel.checked(sql, lambda: self._current(channel.connection).execute(sql, params))
        return self

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> SandboxCursor:
        """Run a statement once per parameter set inside the connection's current savepoint."""
        channel = self._connection._begin()
        if not self._connection.wrote and _may_write(sql):
            self._connection.wrote = True
        channel.checked(sql, lambda: self._current(channel.connection).executemany(sql, seq_of_params))
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self._current(self._connection.session.connection))

    def __enter__(self) -> SandboxCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the driver's cursor; quietly when its connection is gone (nothing is left to free)."""
        if self._cursor is not None:
            try:
                self._cursor.close()
            except Exception:
                if self._connection.session.dialect.is_alive(self._raw):
                    raise

    def __getattr__(self, name: str) -> Any:
        # fetchone, fetchall, rowcount, description, lastrowid ...: the driver's own cursor answers.
        return getattr(self._current(self._connection.session.connection), name)


class SandboxConnection:
    """A DB-API connection on the sandbox's connection, for code (or a library) that wants a raw one.

    It behaves like the driver's connection in its default, non-autocommit mode: the first statement opens a
    transaction (a SAVEPOINT in the sandbox), ``commit()`` releases it, ``rollback()`` rolls back to it,
    ``close()`` discards uncommitted work and leaves the real connection open. Statements use the driver's own
    parameter style. Switching to autocommit and two-phase commit are refused with `SandboxRefusedError`;
    psycopg's ``with conn.transaction():`` and PyMySQL's ``begin()`` map onto savepoints.
    """

    cursor_class: type[SandboxCursor] = SandboxCursor
    """The cursor class `cursor()` makes (a driver's face gives its own)."""

    def __init__(
        self,
        session: Session,
        check_thread: Callable[[], None] | None = None,
        *,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._session = session
        self.connect_kwargs: dict[str, Any] = dict(connect_kwargs or {})
        """The keyword arguments the code gave the driver's ``connect()``, honoured as the driver would."""
        self._closed = False
        self._check_thread = check_thread
        self.began_at: Place | None = None
        """Where the code that began the current transaction is (for the end-of-test check of open ones)."""
        self.wrote = False
        """Whether a statement of the current transaction may have changed data (the same check)."""

    @property
    def session(self) -> Session:
        """The guest session behind this connection."""
        return self._session

    def _begin(self) -> Channel:
        if self._closed:
            raise self.closed_error()
        if self._check_thread is not None:
            self._check_thread()  # a pool may hand this object to another thread
        session = self._session
        if session.transaction is None:
            self.began_at = caller_place(inspect.currentframe())
            self.wrote = False
        session.autobegin()
        return session.channel

    def closed_error(self) -> Exception:
        """The error for using a closed connection (a driver's face raises the driver's own class too)."""
        return TransactionStateError("this sandbox connection is closed; ask the sandbox for a new one")

    def cursor(self, *args: Any, **kwargs: Any) -> SandboxCursor:
        """A cursor on the sandbox connection."""
        self._begin()
        return self.cursor_class(self, args, kwargs)

    def execute(self, sql: str, params: Any = None) -> SandboxCursor:
        """Shortcut of sqlite3 and psycopg: a new cursor, executed."""
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> SandboxCursor:
        """Shortcut of sqlite3: a new cursor, ``executemany``'d."""
        return self.cursor().executemany(sql, seq_of_params)

    def executescript(self, script: str) -> SandboxCursor:
        """sqlite3's ``executescript`` commits first; here the statements run one by one in the savepoint."""
        cursor = self.cursor()
        for statement in self._session.dialect.split_script(script):
            cursor.execute(statement)
        return cursor

    def begin(self) -> None:
        """PyMySQL's explicit ``begin()``: opens the transaction that ``commit()`` ends (a savepoint).

        As on MySQL, where BEGIN first commits a pending transaction, an open one is committed first.
        """
        tx = self._session.transaction
        if tx is not None and tx.is_active:
            tx.commit()
        self._begin()

    @contextlib.contextmanager
    def transaction(self, savepoint_name: str | None = None, force_rollback: bool = False) -> Iterator[Any]:
        """psycopg's ``with conn.transaction():``: with no transaction open, the connection's transaction,
        committed at the end of the block (a savepoint release in the sandbox); inside an open one, a savepoint
        of its own. An exception (or ``force_rollback``) rolls the block back. ``savepoint_name`` is ignored:
        the sandbox names savepoints itself."""
        # As psycopg does: with no transaction open the block is the transaction (committed at its end);
        # inside an open one it is a savepoint of its own.
        opened = self._session.transaction is None
        self._begin()
        inner = self._session.transaction
        assert inner is not None
        if opened:
            inner.implicit = False  # the block owns the transaction the call opened
        with inner if opened else inner.begin_nested() as tx:
            yield tx
            if force_rollback and tx.is_active:
                tx.rollback()

    def commit(self) -> None:
        """Release the current savepoint (the application's commit) and fire its callbacks."""
        tx = self._session.transaction
        if tx is not None:
            tx.commit()  # a broken transaction (another session's rollback took it) raises, never silently

    def rollback(self) -> None:
        """Roll back to the current savepoint (the application's rollback)."""
        tx = self._session.transaction
        if tx is not None:
            tx.rollback()

    def close(self) -> None:
        """Discard what is uncommitted; the real connection stays open for the sandbox."""
        if not self._closed:
            self._closed = True
            self._session.close()

    @property
    def closed(self) -> bool:
        """psycopg's and the DB-API's flag."""
        return self._closed

    # ---------------------------------------------------------------------- what would end the transaction
    @property
    def autocommit(self) -> Any:
        """False: the sandbox keeps a transaction open. Setting it to True (or PyMySQL's
        ``autocommit(True)``) raises `SandboxRefusedError`; ``autocommit(False)`` is accepted."""
        return _AutocommitFlag(self)

    @autocommit.setter
    def autocommit(self, value: object) -> None:
        if value:
            raise SandboxRefusedError("switching to autocommit", "every statement would commit at once")

    def get_autocommit(self) -> bool:
        """PyMySQL's getter: always False in a sandbox."""
        return False

    @property
    def isolation_level(self) -> str:
        """sqlite3's setting: a transaction is always open."""
        return "DEFERRED"

    @isolation_level.setter
    def isolation_level(self, value: object) -> None:
        if value is None:
            raise SandboxRefusedError(
                "isolation_level = None (autocommit)", "every statement would commit at once"
            )

    def __enter__(self) -> SandboxConnection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # As psycopg and sqlite3 do: commit on a clean exit, roll back on an exception.
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def set_autocommit(self, value: object) -> None:
        """psycopg's setter method: refused for True, as the attribute is."""
        self.autocommit = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("tpc_"):
            raise SandboxRefusedError(
                f"two-phase commit ({name})", "it commits outside the sandbox's transaction"
            )
        # Read-only driver attributes (info, server_version, in_transaction, ...) come from the real one.
        return getattr(self._session.connection, name)


class _AutocommitFlag:
    """``conn.autocommit`` reads False (psycopg) and ``conn.autocommit(False)`` works (PyMySQL)."""

    def __init__(self, connection: SandboxConnection) -> None:
        self._connection = connection

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return other is False or other == 0

    def __hash__(self) -> int:
        return hash(False)

    def __repr__(self) -> str:
        return "False"

    def __call__(self, value: object) -> None:
        self._connection.autocommit = value
