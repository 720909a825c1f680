"""The sync I/O layer: one DB-API connection, and the state machine of the transactions on it.

The channel sends what the machine (`TxStack`) asks for, as late as possible and batched: ``BEGIN`` and
``SAVEPOINT`` wait for the first statement that needs them (a block that runs nothing costs nothing), and
releasing or rolling back to a savepoint waits for the next statement, whose control statements then go in one
round trip where the driver allows. Only ``COMMIT`` and the root ``ROLLBACK`` are sent at once, because they
end the unit of work. It also watches the server: a statement that ended the transaction behind the library's
back, or a lost connection, becomes a transition of the machine (``break_all``) and a clear error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..dialects import CONSTRAINTS, SCHEMA, DBAPIConnection, DBAPICursor, Dialect
from ..errors import ConnectionLostError, ImplicitCommitError, TransactionStateError
from .gate import Gate
from .hooks import STATEMENT_OBSERVERS
from .machine import TxStack
from .states import Frame, Lane, Step
from .transaction import Transaction

__all__ = ["Channel", "Gate", "short_sql"]

_T = TypeVar("_T")
_OUR_SAVEPOINT = re.compile(r"txscope_[a-z]+[0-9]+")


class Channel:
    """One connection's I/O, shared by the sessions that use the connection."""

    def __init__(self, connection: DBAPIConnection, dialect: Dialect) -> None:
        self.dialect = dialect
        self.connection = connection  # the setter also binds the statement runner
        self.stack: TxStack[Transaction] = TxStack(dialect, Transaction)
        """The transactions open on the connection, across sessions: the state machine."""
        self.run = dialect.execute
        self.prepare: Callable[[str, Any], tuple[str, Any]] | None = (
            None if getattr(dialect.prepare, "__func__", None) is Dialect.prepare else dialect.prepare
        )
        self.gate: Gate | None = None
        """Set while the connection is shared between threads (a shared sandbox)."""
        self.ungated = 0
        """How many steps the calling thread runs now without the gate (see `take_turn`)."""
        self.reconnect: Callable[[DBAPIConnection], DBAPIConnection] | None = None
        """Set by an engine: discards a dead connection and returns a new one (see `flush`)."""
        self.target: str | None = None
        """What the connection reaches, for messages (an engine's masked URL)."""
        self.reported: BaseException | None = None
        """The error raised to the code when the server's transaction ended or the connection was lost."""
        self._watch = dialect.statement_watch()
        self.schema_touched = False
        """True once a statement that may change the schema ran in the open root transaction."""
        self.facts: dict[str, object] = {}
        """What was learned about the database, kept as long as whoever sets it (an engine) keeps it."""
        self.undo: list[str] = []
        """Statements undoing the session state the code changed that a rollback leaves in place, oldest
        first (see `restore_state`)."""
        self.undo_lost = False
        """True once the code changed session state that no statement can undo: drop the connection."""
        self.constraints_touched = False
        """True once the code ran ``SET CONSTRAINTS`` or made a constraint ``DEFERRABLE`` (see `commit_checks`)."""

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

    # ------------------------------------------------------------------------------------ statements
    def execute(self, sql: str, params: Any, lane: Lane | None = None) -> DBAPICursor:
        """Send queued control statements, then ``sql`` (portable placeholders); watch the server's state.
        ``lane`` is the session sending it (on a shared connection, it tells where the statement belongs)."""
        # The hot path of every statement: no calls beyond the driver's own where they can be avoided (a
        # Python call is a sizeable share of a statement on SQLite).
        if STATEMENT_OBSERVERS:  # told the text as the code wrote it, before placeholders are converted
            self.tell(sql, lane)
        if params is None:
            params = self._no_params
        elif self.prepare is not None:
            sql, params = self.prepare(sql, params)
        if self.gate is None:
            self.ungated += 1  # then the gate is read again: see `take_turn`
            if self.gate is None:
                try:
                    if self._watch is not None:
                        seen = self._watch(sql)
                        if seen:
                            self.watched(sql, seen)
                    if self.stack.outbox:
                        cursor = self.send_after_control(sql, params)
                    else:  # inline rather than `_send_alone`: one call fewer on every statement
                        try:
                            cursor = self._send(sql, params)
                        except Exception as exc:
                            self.after_failure(sql, exc)
                            raise
                    if self.stack.server_open and not self.open_now():
                        self.after_success(sql)
                    return cursor
                finally:
                    self.ungated -= 1
            self.ungated -= 1
        return self.checked(sql, lambda: self._send(sql, params), lane, quiet=True)

    def executemany(self, sql: str, seq: Sequence[Any], lane: Lane | None = None) -> DBAPICursor:
        """Send queued control statements, then ``sql`` once per parameter set."""
        if STATEMENT_OBSERVERS:
            self.tell(sql, lane)
        sql, seq = self.dialect.prepare_many(sql, seq)
        return self.checked(
            sql, lambda: self.dialect.executemany(self.connection, sql, seq), lane, quiet=True
        )

    def checked(
        self, sql: str, send: Callable[[], _T], lane: Lane | None = None, *, quiet: bool = False
    ) -> _T:
        """Flush queued control statements, call ``send`` (which runs ``sql``), and watch the server's state:
        a failure or success that ended our transaction marks it broken. On a shared connection the calling
        thread holds the gate meanwhile (``lane``, the session sending it, tells where it belongs). ``quiet``: the
        statement observers are not told (the library's own query, or one told already)."""
        gate = self.take_turn(lane)
        if gate is not None:
            gate.sending(True)
        try:
            if STATEMENT_OBSERVERS and not quiet:
                self.tell(sql, lane)
            if self._watch is not None:
                seen = self._watch(sql)
                if seen:
                    self.watched(sql, seen)
            if self.stack.outbox:
                self.flush()
            try:
                result = send()
            except Exception as exc:
                self.after_failure(sql, exc)
                raise
            self.after_success(sql)
            return result
        finally:
            if gate is not None:
                gate.sending(False)
            self.end_turn(gate)

    def tell(self, sql: str, lane: Lane | None) -> None:
        """Tell the statement observers (`hooks.STATEMENT_OBSERVERS`) that the application sends ``sql``;
        a statement with no lane is the library's own (the deferred-constraint lookup): not told."""
        if lane is not None:
            for observe in tuple(STATEMENT_OBSERVERS):
                observe(sql, lane)

    def take_turn(self, at: Frame | Lane | None = None) -> Gate | None:
        """Take the gate for one step (``at`` as in `Gate.acquire`) and return it; or, while the connection is
        not shared, return None and count the step as running without it until `end_turn`.

        The thread that owns a sandbox goes without the gate until a second thread comes: that costs it
        nothing per statement. The newcomer sets the gate, then waits until no step counted here is running
        (`idle`). A step finding no gate counts itself, then reads the gate again: so either the newcomer sees
        the step or the step sees the gate, never neither. Only the owner counts (every other thread finds
        the gate set), so the count needs no lock.
        """
        gate = self.gate
        if gate is None:
            self.ungated += 1
            gate = self.gate
            if gate is None:
                return None
            self.ungated -= 1
        gate.acquire(at)
        return gate

    def end_turn(self, gate: Gate | None) -> None:
        """End a step that `take_turn` began (with what it returned)."""
        if gate is None:
            self.ungated -= 1
        else:
            gate.release()

    def idle(self) -> bool:
        """Whether no step runs on the connection without the gate now (see `take_turn`)."""
        return self.ungated <= 0

    def after_success(self, sql: str) -> None:
        """Stop if a statement that succeeded ended our transaction (MySQL DDL, a COMMIT sent as SQL)."""
        if self.stack.server_open and not self.open_now():
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
        if self.stack.server_open and (not self.open_now() or self.dialect.error_ends_transaction(exc)):
            self.break_all(f"the server ended the transaction when {short_sql(sql)!r} failed: {exc}")

    # ------------------------------------------------------------------------------------ session state
    def watched(self, sql: str, seen: int) -> None:
        """The dialect's watch flagged ``sql`` (about to be sent) as changing what ``seen`` says."""
        if seen & SCHEMA:
            self.schema_touched = True
        if seen & CONSTRAINTS:
            self.constraints_touched = True
        if seen & ~(SCHEMA | CONSTRAINTS):  # STATE: work out how to undo it before it happens
            undo = self.dialect.undo_state(self.connection, sql)
            if undo is None:
                self.undo_lost = True
            else:
                self.undo.extend(undo)

    def restore_state(self, mark: int) -> bool:
        """Undo the session state changed since ``len(undo)`` was ``mark``, newest change first (after what is
        queued). False when some change cannot be undone: the connection should not be reused."""
        undo = self.undo[mark:]
        del self.undo[mark:]
        if undo:
            try:
                if self.stack.outbox:
                    self.flush()
                self.dialect.run_control(self.connection, list(reversed(undo)))
            except Exception:  # the connection is failing or gone: it is not reused, which undoes it all
                return False
        return not self.undo_lost

    # ------------------------------------------------------------------------------- control statements
    def flush(self) -> None:
        """Send the queued control statements.

        When they start a unit of work (``BEGIN`` first) and find the connection dead (the server dropped it
        while it sat in the pool), nothing of the work has reached the server yet: an engine's connection is
        replaced by a new one and the statements are sent again, once. Costs nothing until a send fails.
        """
        statements = self.stack.statement()
        begins = statements[0] is self.stack.begin_sql
        try:
            self.control(statements)
        except Exception as exc:
            if not (
                begins and self.reconnect is not None and self.dialect.is_disconnect(exc, self.connection)
            ):
                self.control_failed(statements, exc)
                raise
            self._resend_on_new_connection(statements, exc)
        if begins:
            self.stack.opened()

    def send_after_control(self, sql: str, params: Any) -> DBAPICursor:
        """Send the queued control statements and ``sql`` in one round trip where the dialect can (else apart),
        and return the cursor. A failure is told apart as `flush` and `execute` tell theirs: the control's
        (`control_failed`, or a new connection for a dead one found by BEGIN) or the statement's."""
        if not self.dialect.combines_control:
            self.flush()
            return self._send_alone(sql, params)
        try:
            cursor = self.dialect.execute_after(
                self.connection, self.stack.outbox, sql, params, not self.schema_touched
            )
        except Exception as exc:
            return self._combined_failed(sql, params, exc)
        if cursor is None:  # not in one round trip now: apart, as before
            self.flush()
            return self._send_alone(sql, params)
        if self.stack.statement()[0] is self.stack.begin_sql:
            self.stack.opened()
        return cursor

    def _combined_failed(self, sql: str, params: Any, exc: Exception) -> DBAPICursor:
        """`send_after_control` failed with ``exc``: raise the error `flush` or `execute` would have; or, when
        BEGIN found the connection dead, send everything again on a new one (as `flush`) and return the cursor."""
        if not self.dialect.failed_in_control(exc, self.connection):
            if self.stack.statement()[0] is self.stack.begin_sql:
                self.stack.opened()  # the statement failed inside the transaction BEGIN opened
            self.after_failure(sql, exc)
            raise exc
        statements = self.stack.statement()
        if not (
            statements[0] is self.stack.begin_sql
            and self.reconnect is not None
            and self.dialect.is_disconnect(exc, self.connection)
        ):
            self.control_failed(statements, exc)
            raise exc
        self._resend_on_new_connection(statements, exc)  # BEGIN found the connection dead: nothing is lost
        self.stack.opened()
        return self._send_alone(sql, params)

    def _send_alone(self, sql: str, params: Any) -> DBAPICursor:
        """Send ``sql`` with no control statements before it; a failure is the statement's (`after_failure`)."""
        try:
            return self._send(sql, params)
        except Exception as exc:
            self.after_failure(sql, exc)
            raise

    def _resend_on_new_connection(self, statements: list[str], exc: BaseException) -> None:
        assert self.reconnect is not None
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

    def control_failed(self, statements: list[str], exc: BaseException) -> None:
        """Sending control statements failed: mark what is open BROKEN, and raise a clearer error than the
        driver's when the cause is known (a lost connection, a transaction or savepoint ended by raw SQL)."""
        text = "; ".join(statements)
        if self.dialect.is_disconnect(exc, self.connection):
            raise self.lost(text, exc) from exc
        problem = f"sending {text!r} failed: {type(exc).__name__}: {exc}"
        if self.stack.server_open and not self.open_now():
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

    def control(self, statements: list[str]) -> None:
        """Send transaction-control statements now; a driver may keep its caches if no schema changed."""
        gate = self.gate
        if gate is not None:
            gate.sending(True)
        try:
            if self.schema_touched:
                self.dialect.run_control(self.connection, statements)
            else:
                self.dialect.run_control_keeping_cache(self.connection, statements)
        finally:
            if gate is not None:
                gate.sending(False)

    # ---------------------------------------------------------------------------------- transitions
    def apply(self, step: Step) -> None:
        """Carry out what a transition asked for: send the ``COMMIT`` or ``ROLLBACK`` that ends a root."""
        if step.end is not None:
            self.end_root(step.end)

    def end_root(self, end: str) -> None:
        """Send what is queued and ``end`` (COMMIT or ROLLBACK), which ends the server's transaction."""
        statements = self.stack.end_root(end)
        if not statements:
            return
        try:
            self.control(statements)
        except Exception as exc:
            self.reset_after_failure()
            if self.dialect.is_disconnect(exc, self.connection):
                if end == "ROLLBACK":
                    return  # the server discarded the transaction with the connection: it is rolled back
                raise self.lost("; ".join(statements), exc, committing=True) from exc
            raise
        finally:
            self.schema_touched = False

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

    def break_all(self, reason: str, *, escaped: bool = True) -> None:
        """The server no longer holds our transaction: the machine marks every open one BROKEN with ``reason``,
        and whatever the server still holds is rolled back."""
        self.stack.break_all(reason, escaped=escaped)
        # The connection may be failing already; the caller raises the real error.
        with contextlib.suppress(Exception):
            if self.open_now():
                self.run(self.connection, "ROLLBACK", None).close()

    def failed(self) -> bool:
        """Whether an error aborted the server transaction (PostgreSQL), after sending what is queued."""
        if not self.stack.server_open or not self.dialect.transaction_failed(self.connection):
            return False
        if self.stack.outbox:  # a queued ROLLBACK TO may be what recovers the transaction
            self.flush()
            return self.dialect.transaction_failed(self.connection)
        return True

    def reset_after_failure(self) -> None:
        """Forget queued work and roll back whatever the server still holds."""
        self.stack.forget()
        # The connection is failing; the caller re-raises the original error.
        with contextlib.suppress(Exception):
            self.dialect.reset(self.connection)


def short_sql(sql: str) -> str:
    """A statement on one line, cut to 80 characters, for messages."""
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "..."
