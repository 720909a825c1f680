"""The state of one DB-API connection: what the server holds, what is queued to send, and the stack of
transactions open on it across every session that shares it.

Transaction-control SQL is sent as late as possible and batched: ``BEGIN`` and ``SAVEPOINT`` wait for the
first statement that needs them (a block that runs nothing costs nothing), and releasing or rolling back to a
savepoint waits for the next statement, whose control statements then go in one round trip where the driver
allows. Only ``COMMIT`` and the root ``ROLLBACK`` are sent at once, because they end the unit of work.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from .dialects import DBAPIConnection, DBAPICursor, Dialect
from .errors import ConnectionBusyError, ImplicitCommitError
from .transactions import TransactionState

if TYPE_CHECKING:
    from .transactions import Transaction

__all__ = ["Channel", "Lease"]

_T = TypeVar("_T")


class Lease:
    """Which thread may use a shared connection now: one at a time, re-entrant, with a timeout.

    A guest session holds it for the whole of its top-level transaction; a statement sent outside one holds it
    for that statement. Waiting longer than ``timeout`` raises `ConnectionBusyError` naming the holder.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._cond = threading.Condition()
        self.owner: threading.Thread | None = None
        self._frame: FrameType | None = None  # formatted only when someone times out waiting
        self._depth = 0

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lease (again, if this thread holds it), waiting up to ``timeout`` seconds."""
        me = threading.current_thread()
        with self._cond:
            if self.owner is me:
                self._depth += 1
                return
            limit = self.timeout if timeout is None else timeout
            deadline = time.monotonic() + limit
            while self.owner is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    where = _where(self._frame)
                    raise ConnectionBusyError(
                        f"thread {me.name!r} waited {limit:g}s for the sandbox's connection, which thread "
                        f"{self.owner.name!r} holds since {where}; a thread holds it for the whole of its "
                        "transaction (or ORM session transaction): commit or roll back sooner there, or raise "
                        "txscope_thread_timeout"
                    )
                self._cond.wait(remaining)
            self.owner = me
            self._depth = 1
            self._frame = inspect.currentframe()

    def release(self) -> None:
        """Give the lease back (once per acquire)."""
        with self._cond:
            self._depth -= 1
            if self._depth <= 0:
                self.owner = None
                self._frame = None
                self._depth = 0
                self._cond.notify()

    def reset(self) -> None:
        """Forget the holder (the sandbox is ending and rolls its work back)."""
        with self._cond:
            self.owner = None
            self._frame = None
            self._depth = 0
            self._cond.notify_all()


_LIBRARIES = ("pytest_txscope", "sqlalchemy", "factory", "pytest_factoryboy")


def _where(frame: FrameType | None) -> str:
    """The innermost caller outside the libraries between user code and the connection, as ``file:line``."""
    while frame is not None:
        path = frame.f_code.co_filename
        if not any(f"{os.sep}{name}{os.sep}" in path for name in _LIBRARIES):
            return f"{path}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "an unknown place"


class Channel:
    """One connection's transaction state, shared by the sessions that use the connection."""

    def __init__(self, connection: DBAPIConnection, dialect: Dialect) -> None:
        self.dialect = dialect
        self.connection = connection  # the setter also binds the statement runner
        self.pending: list[str] = []
        """Control statements queued for the next round trip."""
        self.server_open = False
        """True once BEGIN reached the server and until COMMIT/ROLLBACK."""
        self.top: Transaction | None = None
        """The most recently opened transaction still open on this connection, whatever its session."""
        self.counter = 0
        """Numbers transactions for messages, unique on this connection."""
        self.begin_sql = dialect.begin_statement()
        self.run = dialect.execute
        self.run_many = dialect.executemany
        self.prepare: Callable[[str, Any], tuple[str, Any]] | None = (
            None if dialect.prepare.__func__ is Dialect.prepare else dialect.prepare  # type: ignore[attr-defined]
        )
        self.in_tx = dialect.in_transaction
        self.lease: Lease | None = None
        """Set while the connection is shared between threads (a shared sandbox)."""

    @property
    def connection(self) -> DBAPIConnection:
        """The DB-API connection this channel drives."""
        return self._connection

    @connection.setter
    def connection(self, connection: DBAPIConnection) -> None:
        self._connection = connection
        self._send, self._no_params = self.dialect.statement_runner(connection)
        self._open_now = self.dialect.transaction_probe(connection)

    def execute(self, sql: str, params: Any) -> DBAPICursor:
        """Send queued control statements, then ``sql`` (portable placeholders); watch the server's state."""
        # The hot path of every statement: no calls beyond the driver's own where they can be avoided (the
        # issue's target is 1.3x a raw cursor call on SQLite, where a Python call is a sizeable share).
        if params is None:
            params = self._no_params
        elif self.prepare is not None:
            sql, params = self.prepare(sql, params)
        if self.lease is not None:
            return self.checked(sql, lambda: self._send(sql, params))
        if self.pending:
            self.flush()
        try:
            cursor = self._send(sql, params)
        except Exception as exc:
            self.after_failure(sql, exc)
            raise
        if self.server_open and not self._open_now():
            self.after_success(sql)
        return cursor

    def execute_native(self, sql: str, params: Any) -> DBAPICursor:
        """Like :meth:`execute` for SQL already in the driver's own parameter style; control is flushed."""
        return self.checked(sql, lambda: self._send(sql, self._no_params if params is None else params))

    def executemany(self, sql: str, seq: Sequence[Any]) -> DBAPICursor:
        """Send queued control statements, then ``sql`` once per parameter set."""
        sql, seq = self.dialect.prepare_many(sql, seq)
        return self.checked(sql, lambda: self.run_many(self.connection, sql, seq))

    def checked(self, sql: str, send: Callable[[], _T]) -> _T:
        """Flush queued control statements, call ``send`` (which runs ``sql``), and watch the server's state:
        a failure or success that ended our transaction marks it broken. On a shared connection the calling
        thread holds the lease meanwhile."""
        lease = self.lease
        if lease is not None:
            lease.acquire()
        try:
            if self.pending:
                self.flush()
            try:
                result = send()
            except Exception as exc:
                self.after_failure(sql, exc)
                raise
            self.after_success(sql)
            return result
        finally:
            if lease is not None:
                lease.release()

    def after_success(self, sql: str) -> None:
        """Stop if a statement that succeeded ended our transaction (MySQL DDL, a COMMIT sent as SQL)."""
        if self.server_open and not self.in_tx(self.connection):
            self.break_all(f"the server ended the transaction while running {short_sql(sql)!r}")
            raise ImplicitCommitError(sql, self.dialect.display)

    def after_failure(self, sql: str, exc: BaseException) -> None:
        """Mark everything broken if the failure ended the transaction (connection lost, MySQL deadlock)."""
        if self.server_open and (not self.in_tx(self.connection) or self.dialect.error_ends_transaction(exc)):
            self.break_all(f"the server ended the transaction when {short_sql(sql)!r} failed: {exc}")

    def flush(self) -> None:
        """Send the queued control statements."""
        statements, self.pending = self.pending, []
        try:
            self.dialect.run_control(self.connection, statements)
        except Exception as exc:
            self.break_all(f"sending {'; '.join(statements)!r} failed: {type(exc).__name__}: {exc}")
            raise
        if statements[0] is self.begin_sql:
            self.server_open = True

    def break_all(self, reason: str) -> None:
        """The server no longer holds our transaction: mark every open one BROKEN with ``reason``."""
        tx = self.top
        while tx is not None:
            if tx.state is TransactionState.ACTIVE:
                tx.state = TransactionState.BROKEN
                tx.failure = reason
                tx._callbacks.clear()
            tx = tx.below
        self.pending = []
        self.server_open = False
        # The connection may be failing already; the caller raises the real error.
        with contextlib.suppress(Exception):
            if self.in_tx(self.connection):
                self.run(self.connection, "ROLLBACK", None).close()

    def failed(self) -> bool:
        """Whether an error aborted the server transaction (PostgreSQL), after sending what is queued."""
        if not self.server_open or not self.dialect.transaction_failed(self.connection):
            return False
        if self.pending:  # a queued ROLLBACK TO may be what recovers the transaction
            self.flush()
            return self.dialect.transaction_failed(self.connection)
        return True

    def reset_after_failure(self) -> None:
        """Forget queued work and roll back whatever the server still holds."""
        self.pending = []
        self.server_open = False
        # The connection is failing; the caller re-raises the original error.
        with contextlib.suppress(Exception):
            self.dialect.reset(self.connection)


def short_sql(sql: str) -> str:
    """A statement on one line, cut to 80 characters, for messages."""
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "..."
