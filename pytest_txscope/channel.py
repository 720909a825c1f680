"""The state of one DB-API connection: what the server holds, what is queued to send, and the stack of
transactions open on it across every session that shares it.

Transaction-control SQL is sent as late as possible and batched: ``BEGIN`` and ``SAVEPOINT`` wait for the
first statement that needs them (a block that runs nothing costs nothing), and releasing or rolling back to a
savepoint waits for the next statement, whose control statements then go in one round trip where the driver
allows. Only ``COMMIT`` and the root ``ROLLBACK`` are sent at once, because they end the unit of work.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .dialects import DBAPIConnection, DBAPICursor, Dialect
from .errors import ConnectionLostError, ImplicitCommitError, TransactionStateError
from .lease import Lease, watch_statements
from .transactions import TransactionState

if TYPE_CHECKING:
    from .transactions import Transaction

__all__ = ["Channel", "Lease"]

_T = TypeVar("_T")
_OUR_SAVEPOINT = re.compile(r"txscope_[a-z]+[0-9]+")


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
        self.lease: Lease | None = None
        """Set while the connection is shared between threads (a shared sandbox)."""
        self.reconnect: Callable[[DBAPIConnection], DBAPIConnection] | None = None
        """Set by an engine: discards a dead connection and returns a new one (see `flush`)."""
        self.target: str | None = None
        """What the connection reaches, for messages (an engine's masked URL)."""
        self.escaped = False
        """True once something committed behind the library's back (work may have escaped a rollback)."""
        self.reported: BaseException | None = None
        """The error raised to the code when the server's transaction ended or the connection was lost."""
        self._watch = dialect.schema_watch()
        self.schema_touched = False
        """True once a statement that may change the schema ran in the open root transaction."""

    @property
    def connection(self) -> DBAPIConnection:
        """The DB-API connection this channel drives."""
        return self._connection

    @connection.setter
    def connection(self, connection: DBAPIConnection) -> None:
        self._connection = connection
        self._send, self._no_params = self.dialect.statement_runner(connection)
        self.open_now: Callable[[], bool] = self.dialect.transaction_probe(connection)
        """Whether the server holds an open transaction on the connection now (no round trip)."""

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
        if self._watch is not None and self._watch(sql):
            self.schema_touched = True
        if self.pending:
            self.flush()
        try:
            cursor = self._send(sql, params)
        except Exception as exc:
            self.after_failure(sql, exc)
            raise
        if self.server_open and not self.open_now():
            self.after_success(sql)
        return cursor

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
        if self._watch is not None and self._watch(sql):
            self.schema_touched = True
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
        if self.server_open and not self.open_now():
            error = ImplicitCommitError(sql, self.dialect.display)
            reason = f"the server ended the transaction while running {short_sql(sql)!r}"
            self.break_all(reason, escaped=not error.rolled_back)
            self.reported = error
            raise error

    def after_failure(self, sql: str, exc: BaseException) -> None:
        """Mark everything broken if the failure ended the transaction (MySQL deadlock); a lost connection
        raises `ConnectionLostError` (from the driver's error) instead."""
        if self.dialect.is_disconnect(exc, self.connection):
            raise self.lost(sql, exc) from exc
        if self.server_open and (not self.open_now() or self.dialect.error_ends_transaction(exc)):
            self.break_all(f"the server ended the transaction when {short_sql(sql)!r} failed: {exc}")

    def flush(self) -> None:
        """Send the queued control statements.

        When they start a unit of work (``BEGIN`` first) and find the connection dead (the server dropped it
        while it sat in the pool), nothing of the work has reached the server yet: an engine's connection is
        replaced by a new one and the statements are sent again, once. Costs nothing until a send fails.
        """
        statements, self.pending = self.pending, []
        try:
            self.control(statements)
        except Exception as exc:
            if not (
                statements[0] is self.begin_sql
                and self.reconnect is not None
                and self.dialect.is_disconnect(exc, self.connection)
            ):
                self.control_failed(statements, exc)
                raise
            try:
                self.connection = self.reconnect(self.connection)
            except Exception:  # the server is unreachable now: the engine's error says so
                self.break_all(f"reconnecting failed after: {type(exc).__name__}: {exc}", escaped=False)
                raise
            try:
                self.control(statements)
            except Exception as again:
                self.control_failed(statements, again)
                raise
        if statements[0] is self.begin_sql:
            self.server_open = True

    def control_failed(self, statements: list[str], exc: BaseException) -> None:
        """Sending control statements failed: mark what is open BROKEN, and raise a clearer error than the
        driver's when the cause is known (a lost connection, a transaction or savepoint ended by raw SQL)."""
        text = "; ".join(statements)
        if self.dialect.is_disconnect(exc, self.connection):
            raise self.lost(text, exc) from exc
        problem = f"sending {text!r} failed: {type(exc).__name__}: {exc}"
        error: TransactionStateError | None = None
        if self.server_open and not self.open_now():
            error = TransactionStateError(
                f"the transaction on this connection had already ended when the library sent {text!r}: code "
                "committed or rolled back on the driver's connection (session.connection) behind the library's "
                "back, and what it committed is in the database; end transactions with tx.commit() / "
                "tx.rollback(), or commit() / rollback() of a DB-API connection from sandbox.connection()"
            )
            self.break_all(problem)
        else:
            message = str(exc)
            ours = _OUR_SAVEPOINT.search(message) if "savepoint" in message.lower() else None
            if ours is None:
                self.break_all(problem)
                return
            error = TransactionStateError(
                f"savepoint {ours.group()}, set by the library, no longer existed when it sent {text!r}: code "
                "released it or rolled back past it with SQL text (RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT) "
                "behind the library's back; every transaction on the connection is rolled back. End "
                "transactions with tx.commit() / tx.rollback(), or commit() / rollback() of a DB-API "
                "connection from sandbox.connection(), never with SQL text"
            )
            self.break_all(problem, escaped=False)
        self.reported = error
        raise error from exc

    def lost(self, sql: str, exc: BaseException, *, committing: bool = False) -> ConnectionLostError:
        """The connection is gone: mark what was open BROKEN (nothing escaped, the server rolls back what a lost
        connection left uncommitted) and return the error to raise."""
        reason = f"the connection was lost while running {short_sql(sql)!r}: {type(exc).__name__}: {exc}"
        self.break_all(reason, escaped=False)
        error = ConnectionLostError(
            self.target or f"the {self.dialect.display} server", sql, exc, committing=committing
        )
        self.reported = error
        return error

    def control(self, statements: list[str]) -> None:
        """Send transaction-control statements now; a driver may keep its caches if no schema changed."""
        if self.schema_touched:
            self.dialect.run_control(self.connection, statements)
        else:
            self.dialect.run_control_keeping_cache(self.connection, statements)

    def end_root(self, statement: str) -> None:
        """Send what is queued and ``statement`` (COMMIT or ROLLBACK), which ends the server transaction."""
        statements, self.pending = self.pending, []
        statements.append(statement)
        self.server_open = False
        try:
            self.control(statements)
        except Exception as exc:
            self.reset_after_failure()
            if self.dialect.is_disconnect(exc, self.connection):
                if statement == "ROLLBACK":
                    return  # the server discarded the transaction with the connection: it is rolled back
                raise self.lost("; ".join(statements), exc, committing=True) from exc
            raise
        finally:
            self.schema_touched = False

    def break_all(self, reason: str, *, escaped: bool = True) -> None:
        """The server no longer holds our transaction: mark every open one BROKEN with ``reason``.

        ``escaped=False`` when nothing can have been committed (a lost connection, a ROLLBACK).
        """
        self.escaped = self.escaped or escaped
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
            if self.open_now():
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


# A thread inside these is sending a statement: the end of a sandbox that displaces it interrupts that first.
watch_statements(Channel.checked.__code__, Channel.control.__code__)


def short_sql(sql: str) -> str:
    """A statement on one line, cut to 80 characters, for messages."""
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "..."
