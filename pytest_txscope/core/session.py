"""Sessions: the transactions one piece of code opens on a connection.

A session usually owns its connection (``engine.session()``, ``Session(conn)``). A *guest* session shares a
connection another session holds open in a transaction (the sandbox; see `Policy`): its root transaction is
sent as a SAVEPOINT, its commit releases it and fires its ``on_commit`` callbacks, its rollback rolls back to
it. The transitions are the machine's (`TxStack`); a session only drives them and the channel's I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from ..dialects import DBAPIConnection, DBAPICursor, Dialect, dialect_for_connection
from ..errors import ConfigurationError, TransactionStateError
from .channel import Channel
from .context import find_opened_by, find_session, is_current
from .host import SessionHost
from .states import ACTIVE, OWNER, Lane, Policy
from .transaction import Executor, Transaction

__all__ = ["Session", "current_session", "exit_block_opened_by"]

_NESTED_MODES = ("savepoint", "virtual")


class Session(Executor, SessionHost):
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
        self.twin: Any = None
        """The `AsyncSession` the asyncio API wraps this session in, once it handed it out."""

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
        inner = self.lane.innermost
        # A block inside an open transaction belongs there; a new root (or a take-over) goes on top.
        return self.open_in_turn(self.lane if inner is not None and not inner.implicit else None, self._begin)

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
        gate = self._channel.take_turn(self.lane)
        try:
            inner = self.transaction or self._autobegin()
            inner.require_active("join the current transaction")
            return self._stack.join(inner)
        finally:
            self._channel.end_turn(gate)

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
        gate = channel.take_turn(self.lane)  # the queue is shared: hold the connection before touching it
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
            channel.end_turn(gate)

    # ------------------------------------------------------------------------------- begin and end
    def _autobegin(self) -> Transaction:
        # A new transaction goes on top (or joins, sending nothing): no wait.
        return self.open_in_turn(None, self._open_implicit)

    def _open_implicit(self) -> Transaction:
        if self.lane.policy.implicit_joins:
            return self._stack.begin(self.lane, implicit=True)
        return self._begin_root(implicit=True)

    def _begin_root(self, *, implicit: bool = False) -> Transaction:
        return self._stack.begin(self.lane, implicit=implicit)


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
