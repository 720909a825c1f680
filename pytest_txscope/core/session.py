"""Sessions: the transactions one piece of code opens on a connection.

A session usually owns its connection (``engine.session()``, ``Session(conn)``). A *guest* session shares a
connection another session holds open in a transaction (the sandbox; see `Policy`): its root transaction is
sent as a SAVEPOINT, its commit releases it and fires its ``on_commit`` callbacks, its rollback rolls back to
it. The transitions are the machine's (`TxStack`); a session only drives them and the channel's I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from ..dialects import DBAPIConnection, DBAPICursor, Dialect, dialect_for_connection
from ..errors import ConfigurationError, TransactionStateError
from .channel import Channel
from .context import Scope, current_scope, find_opened_by, find_session, is_current, push_scope, reset_scope
from .states import ACTIVE, OWNER, Lane, Policy, Step, TransactionKind, TransactionState
from .transaction import Executor, Transaction

__all__ = ["Session", "current_session", "exit_block_opened_by"]

_NESTED_MODES = ("savepoint", "virtual")


class Session(Executor):
    """A connection and the transactions on it.

    ``Session(conn)`` wraps a DB-API connection you opened yourself (sqlite3, psycopg 3 or PyMySQL): the
    dialect is detected from it, it is switched to autocommit while the session lasts so that the session can
    send ``BEGIN`` / ``SAVEPOINT`` itself, and `close()` rolls back what is open and restores the connection's
    settings without closing it. Sessions of an `Engine` come from ``engine.session()`` and go back to its pool
    when closed.

    ``with Session(conn) as session:`` is a *session block*: the session is current inside it, its work runs in
    one transaction (committed on a clean exit, rolled back by an exception), and the session is closed at the
    end. ``with session as tx:`` on a session that is current (inside a session block, or ``engine.session()``)
    opens a transaction block: the root transaction, or a nested one (a SAVEPOINT) when one is open.
    Statements run on the session outside any block open a transaction of their own, which is rolled back when
    the session closes, unless a later ``with session:`` block takes it over and commits it.
    """

    engine: Any
    """The engine the session came from (None for ``Session(conn)``)."""
    dialect: Dialect
    """The backend's dialect."""

    def __init__(self, connection: DBAPIConnection, *, nested: str = "savepoint") -> None:
        _check_nested(nested)
        dialect = dialect_for_connection(connection)
        restore = dialect.take_control(connection)
        self._setup(Channel(connection, dialect), None, Policy(nested_virtual=nested == "virtual"))
        self._restore: Callable[[], None] | None = restore

    @classmethod
    def on_channel(
        cls,
        channel: Channel,
        engine: Any,
        policy: Policy = OWNER,
        *,
        release: Callable[[DBAPIConnection], None] | None = None,
    ) -> Session:
        """A session on ``channel`` (what engines and the sandbox build sessions with).

        ``policy`` says how its transactions sit on the connection (a guest's root is a savepoint);
        ``release`` takes the connection back when the session closes (an engine's pool).
        """
        session = cls.__new__(cls)
        session._setup(channel, engine, policy)
        session._restore = None
        session._release = release
        return session

    def _setup(self, channel: Channel, engine: Any, policy: Policy) -> None:
        self._channel = channel
        self._stack = channel.stack
        self.lane = Lane(policy, self, channel)
        """The session's view of the connection's transaction stack."""
        self._protect = policy.protect_statements
        self.dialect = channel.dialect
        self.engine = engine
        self._release: Callable[[DBAPIConnection], None] | None = None
        self._block: Transaction | None = None

    # ------------------------------------------------------------------------------------------- public
    @property
    def channel(self) -> Channel:
        """The connection's I/O layer and state machine, shared by every session on the connection."""
        return self._channel

    @property
    def connection(self) -> DBAPIConnection:
        """The underlying DB-API connection. Statements sent on it directly bypass queued BEGIN/SAVEPOINT
        statements; prefer `execute()`."""
        return self._channel.connection

    @property
    def transaction(self) -> Transaction | None:
        """The innermost open transaction, or None."""
        return self.lane.innermost  # type: ignore[return-value]  # the lane's frames are Transactions

    @property
    def closed(self) -> bool:
        """True once `close()` ran (or, for a guest, its sandbox ended)."""
        return self.lane.closed

    @property
    def is_guest(self) -> bool:
        """True for a session sharing a connection another session holds (inside a sandbox)."""
        return self.lane.policy.guest

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"innermost={self.transaction!r}"
        return f"<Session {self.dialect.display} {state}>"

    def begin(self) -> Transaction:
        """Open a transaction: the root one, or a nested one inside the innermost open transaction.

        It is not made current; use it as a ``with`` block for that, or end it with ``commit()`` or
        ``rollback()``.
        """
        self.lane.require_open()
        gate = self._channel.gate
        if gate is None:
            return self._begin()
        inner = self.lane.innermost
        # A block inside an open transaction belongs there; a new root (or a take-over) goes on top.
        gate.acquire(self.lane if inner is not None and not inner.implicit else None)
        try:
            tx = self._begin()
            gate.opened(tx)
            return tx
        finally:
            gate.release()

    def _begin(self) -> Transaction:
        inner: Transaction | None = self.lane.innermost  # type: ignore[assignment]  # the lane's are Transactions
        if inner is None:
            return self._begin_root()
        if inner.implicit:
            # The transaction statements outside blocks opened becomes this block's; its work is kept.
            return inner if self._stack.take_over(inner) else self._begin_root()
        if inner.state is not ACTIVE:
            inner.require_active("begin a transaction")
        return self._stack.begin_nested(inner)

    def join(self) -> Transaction:
        """A virtual transaction joined to the innermost open one (``ensure_transaction()``), opening the
        implicit transaction first if none is open."""
        self.lane.require_open()
        gate = self._channel.gate
        if gate is not None:
            gate.acquire(self.lane)
        try:
            inner = self.transaction or self._autobegin()
            inner.require_active("join the current transaction")
            return self._stack.join(inner)
        finally:
            if gate is not None:
                gate.release()

    def execute(self, sql: str, params: Any = None) -> DBAPICursor:
        """Run one statement in the innermost open transaction (see `Transaction.execute`)."""
        # The hot path of db_session: inlined, as a Python call is a sizeable share of a statement on SQLite.
        inner = self.lane.innermost
        if inner is None:
            inner = self._autobegin()
        elif inner.state is not ACTIVE:
            inner.require_active("run a statement")
        if inner.implicit and self._protect:
            return self._execute_protected(sql, params, many=False)
        return self._channel.execute(sql, params, self.lane)

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> DBAPICursor:
        """Run one statement once per parameter set, in the innermost open transaction."""
        inner = self.autobegin()
        if inner.implicit and self.lane.policy.protect_statements:
            return self._execute_protected(sql, seq_of_params, many=True)
        return self._channel.executemany(sql, seq_of_params, self.lane)

    def close(self) -> None:
        """Roll back whatever is open and give the connection back (to the pool, or to its owner).

        A guest session only rolls back its own transactions; the connection stays with its host.
        """
        if self.lane.closed:
            return
        # Closed first: rolling back a root that owns its session (engine.begin()) calls close() again, which
        # would give the connection back twice, and the pool would then hand it to two sessions at once.
        self.lane.closed = True
        try:
            root = self.lane.root
            if root is not None and root.state is ACTIVE:
                self.end(root, commit=False)  # type: ignore[arg-type]  # the lane's frames are Transactions
        finally:
            self.lane.root = self.lane.innermost = None
            if self._release is not None:
                self._stack.forget()
                self._release(self._channel.connection)
            elif self._restore is not None:
                self._restore()

    def __enter__(self) -> Any:
        if self._restore is not None and self._block is None and not is_current(self):
            # A session over the caller's own connection, entered where it is not current: a session block.
            self._block = self.begin().enter(self)
            return self
        return self.begin().enter(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        block = self._block
        scope = find_opened_by(self)
        if block is None or scope is None or scope.transaction is not block:
            exit_block_opened_by(self, exc)
            return
        self._block = None
        try:
            self.exit_block(block, exc)
        finally:
            self.close()

    # ------------------------------------------------------------------------- the transactions' Host
    def check_usable(self, tx: Transaction) -> None:
        """Refuse a statement on ``tx`` unless it is the session's innermost real transaction."""
        self._stack.check_executable(tx)

    def open_inside(self, tx: Transaction) -> Transaction:
        """Open a transaction nested in ``tx`` (`Transaction.begin_nested`)."""
        gate = self._channel.gate
        if gate is not None:
            gate.acquire(self.lane)
        try:
            inner = self.transaction
            if inner is not None and inner is not tx:
                # Only virtual transactions (joined ones) may be open inside this one: the new one goes inside
                # them, as they send nothing, so that the connection's stack stays one line.
                self._stack.check_executable(tx)
                nested = self._stack.begin_nested(inner)
            else:
                nested = self._stack.begin_nested(tx)
            if gate is not None:
                gate.opened(nested)
            return nested
        finally:
            if gate is not None:
                gate.release()

    def end(self, tx: Transaction, *, commit: bool) -> None:
        """Commit or roll back ``tx`` (`Transaction.commit`, `Transaction.rollback`, a block's end)."""
        gate = self._channel.gate
        if gate is None:
            callbacks = self._end(tx, commit)
        else:
            gate.acquire(tx)  # waits while another thread's transaction is open above it
            try:
                # Unless the end of the sandbox ended it meanwhile (a thread that outlived its test).
                ended = tx.state is TransactionState.ROLLED_BACK
                callbacks = None if ended else self._end(tx, commit)
            finally:
                gate.release()
        if callbacks is not None:  # a top-level commit: after the gate, as a callback may wait for a thread
            if tx.owns_session:
                self.close()
            _fire(callbacks)

    def _end(self, tx: Transaction, commit: bool) -> Sequence[Callable[[], object]] | None:
        """End ``tx``; return the callbacks to fire when it was a top-level commit (None otherwise)."""
        if not commit:
            self._rollback(tx)
            return None
        self._stack.check_commit(tx)
        if tx.kind is not TransactionKind.VIRTUAL and self._channel.failed():
            self._rollback(tx)
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: a statement in it failed and PostgreSQL aborts the "
                "transaction until it is rolled back, so it was rolled back; catch errors inside a nested "
                "block (with tx.begin_nested(): ...) to keep the rest of the work"
            )
        if tx.parent is None and self.lane.policy.guest:
            self._channel.arm_checks(tx)
        step = self._stack.commit(tx)
        callbacks = step.callbacks
        if step.end is not None:
            callbacks = self._commit_root(tx, step)
        elif step.checks:
            try:
                self._channel.send_checks(tx, step)
            except Exception:
                if tx.owns_session:
                    self.close()
                raise
        elif step.released:
            self._channel.apply(step)
        if tx.parent is None and tx.kind is not TransactionKind.VIRTUAL:
            return callbacks
        return None

    def enter_block(self, tx: Transaction, opened_by: object | None) -> None:
        """Make ``tx`` current for its ``with`` block (`Transaction.enter`)."""
        if self.lane.innermost is not tx:
            self._stack.check_executable(tx)
        tx.block_token = push_scope(self, tx, opened_by)

    def exit_block(self, tx: Transaction, exc: BaseException | None) -> None:
        """End the ``with`` block of ``tx``: commit on a clean exit, roll back on an exception; a block left
        out of order rolls back what was opened inside it too, and raises."""
        token, tx.block_token = tx.block_token, None
        if tx.forced:
            # An enclosing block already ended (out of order) and rolled this one back.
            if exc is None:
                raise TransactionStateError(
                    f"{tx.failure or tx.describe() + ' was already rolled back'}; leave inner blocks before outer "
                    "ones, in the thread or task that opened them"
                )
            return
        scope = current_scope()  # taken before the reset: _end_block tells an in-order exit by it
        if token is not None:
            # Before anything ends, so that a block exited in another thread or task ends nothing: the token
            # knows where it was entered, and the block stays open for that thread or task to end.
            try:
                reset_scope(token)
            except ValueError:
                tx.block_token = token
                raise TransactionStateError(
                    f"the block of {tx.describe()} was exited in a thread or asyncio task other than the one that "
                    "entered it, and was left open; end each block in the thread or task that opened it"
                ) from None
        error: TransactionStateError | None = None
        try:
            if tx.state is TransactionState.BROKEN:
                self._channel.apply(self._stack.unwind(tx))
                if exc is None:
                    error = TransactionStateError(
                        f"{tx.describe()} cannot commit: {tx.failure}; "
                        "its work is not where you expect it, and the transaction is gone"
                    )
            elif tx.state is ACTIVE:
                error = self._end_block(tx, exc, scope)
        finally:
            if tx.owns_session:
                self.close()
        if error is not None:
            raise error

    # ---------------------------------------------------------------------------------- statements
    def autobegin(self) -> Transaction:
        """The transaction a statement sent on the session runs in: the innermost open one, or the implicit one,
        opened now if none is (a DB-API connection's first statement)."""
        inner = self.transaction
        if inner is None:
            return self._autobegin()
        if inner.state is not ACTIVE:
            inner.require_active("run a statement")
        return inner

    def _execute_protected(self, sql: str, params: Any, *, many: bool) -> DBAPICursor:
        """Run one statement inside its own savepoint, so that its failure leaves the transaction usable
        (PostgreSQL otherwise refuses every later statement with "current transaction is aborted")."""
        channel = self._channel
        gate = channel.gate
        if gate is not None:  # the queue is shared: hold the connection before touching it
            gate.acquire(self.lane)
        try:
            name = self._stack.protect()
            try:
                cursor = (
                    channel.executemany(sql, params, self.lane)
                    if many
                    else channel.execute(sql, params, self.lane)
                )
            except Exception:
                self._stack.protected(name, failed=True)
                raise
            self._stack.protected(name, failed=False)
            return cursor
        finally:
            if gate is not None:
                gate.release()

    # ------------------------------------------------------------------------------- begin and end
    def _autobegin(self) -> Transaction:
        gate = self._channel.gate
        if gate is None:
            return self._open_implicit()
        gate.acquire()  # a new transaction goes on top (or joins, sending nothing): it never waits
        try:
            tx = self._open_implicit()
            gate.opened(tx)
            return tx
        finally:
            gate.release()

    def _open_implicit(self) -> Transaction:
        if self.lane.policy.implicit_joins:
            return self._stack.begin(self.lane, implicit=True)
        return self._begin_root(implicit=True)

    def _begin_root(self, *, implicit: bool = False) -> Transaction:
        return self._stack.begin(self.lane, implicit=implicit)

    def _commit_root(self, tx: Transaction, step: Step) -> Sequence[Callable[[], object]]:
        """Send the COMMIT of a root transaction; its callbacks run only if it committed."""
        try:
            self._channel.apply(step)
        except Exception:
            self._stack.root_ended(tx, committed=False)
            if tx.owns_session:
                self.close()
            raise
        return self._stack.root_ended(tx, committed=True)

    def _rollback(self, tx: Transaction) -> None:
        try:
            self._channel.apply(self._stack.rollback(tx))
        finally:
            if tx.owns_session:
                self.close()

    def _end_block(
        self, tx: Transaction, exc: BaseException | None, scope: Scope | None
    ) -> TransactionStateError | None:
        top = self._stack.top
        in_order = self.lane.innermost is tx and scope is not None and scope.transaction is tx
        if in_order and (
            top is tx
            or top is None
            or top.lane is self.lane
            or tx.kind is TransactionKind.VIRTUAL
            # another thread's transaction above: end() waits until it has ended
            or (self._channel.gate is not None and top.thread not in (None, threading.get_ident()))
        ):
            self.end(tx, commit=exc is None)
            return None
        above = top if in_order else self.transaction
        above_name = above.describe() if above is not None and above is not tx else "a block opened inside it"
        open_blocks = []
        t = top
        while t is not None and t is not tx:
            open_blocks.append(t)
            t = t.below  # type: ignore[assignment]  # the stack holds Transactions
        self._rollback(tx)
        for t in open_blocks:
            if t.entered and t.block_token is not None and t.session is self:
                t.forced = True
                t.failure = f"{t.describe()} was rolled back when the block of {tx.describe()} ended"
        return TransactionStateError(
            f"the block of {tx.describe()} ended while {above_name} was still open; both were rolled "
            "back; leave inner blocks (or end inner transactions) before outer ones"
        )


def _fire(callbacks: Sequence[Callable[[], object]]) -> None:
    first: BaseException | None = None
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


def _check_nested(nested: str) -> None:
    if nested not in _NESTED_MODES:
        raise ConfigurationError(f"nested={nested!r} is not valid; use one of: {', '.join(_NESTED_MODES)}")


def current_session() -> Session | None:
    """The innermost open session of this thread or task, whatever its engine."""
    return find_session(Session)


def exit_block_opened_by(owner: object, exc: BaseException | None) -> None:
    """End the innermost block that ``with owner:`` opened (``owner`` is an engine or a session)."""
    scope = find_opened_by(owner)
    if scope is None or scope.transaction is None:
        raise TransactionStateError(
            f"'with {type(owner).__name__.lower()}:' block ended, but no transaction it opened is current in this "
            "thread or task; blocks must end in the thread or task that opened them"
        )
    tx = scope.transaction
    tx.session.exit_block(tx, exc)
