"""Sessions: the transactions one piece of code opens on a connection.

A session usually owns its connection (``engine.session()``, ``Session(conn)``). A *guest* session shares a
connection another session holds open in a transaction (the sandbox): its root transaction is sent as a
SAVEPOINT, its commit releases it and fires its ``on_commit`` callbacks, its rollback rolls back to it.
Transactions of all sessions on one connection form one stack on the server and must end in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .channel import Channel
from .context import Scope, current_scope, find_opened_by, reset_scope
from .dialects import DBAPIConnection, DBAPICursor, Dialect, dialect_for_connection
from .errors import ConfigurationError, TransactionStateError
from .transactions import Executor, Transaction, TransactionKind, TransactionState

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Session"]

_ACTIVE = TransactionState.ACTIVE
_NESTED_MODES = ("savepoint", "virtual")


class Session(Executor):
    """A connection and the transactions on it.

    ``Session(conn)`` wraps a DB-API connection you opened yourself (sqlite3, psycopg 3 or PyMySQL): the
    dialect is detected from it, it is switched to autocommit while the session lasts so that the session can
    send ``BEGIN`` / ``SAVEPOINT`` itself, and `close()` rolls back what is open and restores the connection's
    settings without closing it. Sessions of an `Engine` come from ``engine.session()`` and go back to its pool
    when closed.

    ``with session as tx:`` opens a transaction (nested when one is open) and makes the session current.
    Statements run on the session outside any block open a transaction of their own, which is rolled back when
    the session closes, unless a later ``with session:`` block takes it over and commits it.
    """

    engine: Engine | None
    """The engine the session came from (None for ``Session(conn)``)."""
    dialect: Dialect
    """The backend's dialect."""
    closed: bool
    """True once `close()` ran."""

    def __init__(self, connection: DBAPIConnection, *, nested: str = "savepoint") -> None:
        _check_nested(nested)
        dialect = dialect_for_connection(connection)
        restore = dialect.take_control(connection)
        self._setup(Channel(connection, dialect), None, nested)
        self._restore: Callable[[], None] | None = restore

    @classmethod
    def _for_engine(cls, engine: Engine, connection: DBAPIConnection, dialect: Dialect) -> Session:
        session = cls.__new__(cls)
        channel = Channel(connection, dialect)
        channel.reconnect = engine._reconnect
        channel.target = engine._target
        session._setup(channel, engine, engine.nested)
        session._release = True
        return session

    @classmethod
    def _guest(
        cls,
        channel: Channel,
        engine: Engine | None,
        *,
        nested: str = "savepoint",
        implicit_savepoint: bool = True,
        protect_statements: bool = False,
    ) -> Session:
        """A session on ``channel``, whose root transactions are savepoints on what is open there."""
        session = cls.__new__(cls)
        session._setup(channel, engine, nested)
        session._is_guest = True
        session._implicit_savepoint = implicit_savepoint
        session._protect = protect_statements
        return session

    def _setup(self, channel: Channel, engine: Engine | None, nested: str) -> None:
        self._channel = channel
        self.dialect = channel.dialect
        self.engine = engine
        self.closed = False
        self._nested_virtual = nested == "virtual"
        self._root: Transaction | None = None
        self._innermost: Transaction | None = None
        self._restore = None
        self._release = False
        self._is_guest = False
        self._implicit_savepoint = True
        self._protect = False
        self._off_stack: Transaction | None = None
        """A guest's joined implicit transaction: it sends nothing and is not on the connection's stack."""

    # ------------------------------------------------------------------------------------------- public
    @property
    def connection(self) -> DBAPIConnection:
        """The underlying DB-API connection. Statements sent on it directly bypass queued BEGIN/SAVEPOINT
        statements; prefer `execute()`."""
        return self._channel.connection

    @property
    def transaction(self) -> Transaction | None:
        """The innermost open transaction, or None."""
        return self._innermost

    @property
    def is_guest(self) -> bool:
        """True for a session sharing a connection another session holds (inside a sandbox)."""
        return self._is_guest

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"innermost={self._innermost!r}"
        return f"<Session {self.dialect.display} {state}>"

    def begin(self) -> Transaction:
        """Open a transaction: the root one, or a nested one inside the innermost open transaction.

        It is not made current; use it as a ``with`` block for that, or end it with ``commit()`` or
        ``rollback()``.
        """
        self._require_open()
        inner = self._innermost
        if inner is None:
            return self._new_root()
        if inner.implicit:
            if inner.kind is TransactionKind.VIRTUAL:
                # A guest's implicit work joined the host directly; a block needs a real (savepoint) root.
                inner.state = TransactionState.COMMITTED
                self._pop(inner)
                return self._new_root()
            # The transaction statements outside blocks opened becomes this block's; its work is kept.
            inner.implicit = False
            return inner
        if inner.state is not _ACTIVE:
            inner._require_active("begin a transaction")
        return self._begin_child(inner)

    def execute(self, sql: str, params: Any = None) -> DBAPICursor:
        """Run one statement in the innermost open transaction (see `Transaction.execute`)."""
        inner = self._statement_transaction()
        if self._protect and inner.implicit:
            return self._execute_protected(sql, params, many=False)
        return self._channel.execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> DBAPICursor:
        """Run one statement once per parameter set, in the innermost open transaction."""
        inner = self._statement_transaction()
        if self._protect and inner.implicit:
            return self._execute_protected(sql, seq_of_params, many=True)
        return self._channel.executemany(sql, seq_of_params)

    def close(self) -> None:
        """Roll back whatever is open and give the connection back (to the pool, or to its owner).

        A guest session only rolls back its own transactions; the connection stays with its host.
        """
        if self.closed:
            return
        # Closed first: rolling back a root that owns its session (engine.begin()) calls close() again, which
        # would give the connection back twice, and the pool would then hand it to two sessions at once.
        self.closed = True
        try:
            root = self._root
            if root is not None and root.state is _ACTIVE:
                self._rollback(root)
        finally:
            self._root = self._innermost = None
            if self._release:
                assert self.engine is not None
                self._channel.pending = []
                self.engine._release(self._channel.connection)
            elif self._restore is not None:
                self._restore()

    def __enter__(self) -> Transaction:
        return self.begin()._enter(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        exit_block_opened_by(self, exc)

    # ---------------------------------------------------------------------------------- statements
    def _statement_transaction(self) -> Transaction:
        """The transaction a statement sent on the session runs in (opened implicitly if none is)."""
        inner = self._innermost
        if inner is None:
            return self._autobegin()
        if inner.state is not _ACTIVE:
            inner._require_active("run a statement")
        return inner

    def _execute_protected(self, sql: str, params: Any, *, many: bool) -> DBAPICursor:
        """Run one statement inside its own savepoint, so that its failure leaves the transaction usable
        (PostgreSQL otherwise refuses every later statement with "current transaction is aborted")."""
        channel = self._channel
        lease = channel.lease
        if lease is not None:  # the queue is shared: hold the connection before touching it
            lease.acquire()
        try:
            name = f"txscope_stmt{channel.top.depth + 1 if channel.top else 1}"
            channel.pending.append(self.dialect.savepoint(name))
            try:
                cursor = channel.executemany(sql, params) if many else channel.execute(sql, params)
            except Exception:
                if channel.server_open:
                    channel.pending.extend((self.dialect.rollback_to(name), self.dialect.release(name)))
                raise
            channel.pending.append(self.dialect.release(name))
            return cursor
        finally:
            if lease is not None:
                lease.release()

    # ------------------------------------------------------------------------------- begin and end
    def _require_open(self) -> None:
        if self.closed:
            if self._is_guest:
                raise TransactionStateError(
                    "this session belonged to a sandbox that has ended (a session kept from an earlier test, "
                    "such as a scoped_session that was not removed); open a new session in this test"
                )
            raise TransactionStateError("this session is closed; open a new one with engine.session()")

    def _push(self, tx: Transaction) -> Transaction:
        self._innermost = tx
        self._channel.top = tx
        return tx

    def _pop(self, tx: Transaction) -> None:
        _release_lease(tx)
        if tx is self._off_stack:
            self._off_stack = None
        self._innermost = tx.parent
        if tx.parent is None:
            self._root = None
        if self._channel.top is tx:
            self._channel.top = tx.below

    def _autobegin(self) -> Transaction:
        if self._is_guest and not self._implicit_savepoint:
            # It joins whatever is open on the connection and sends nothing, so it is not on the
            # connection's stack: other sessions' transactions may begin and end around it.
            self._require_open()
            channel = self._channel
            channel.counter += 1
            tx = Transaction(self, TransactionKind.VIRTUAL, None, channel.counter, below=channel.top)
            tx.implicit = True
            self._root = self._innermost = self._off_stack = tx
            return tx
        tx = self._new_root()
        tx.implicit = True
        return tx

    def _new_root(self) -> Transaction:
        self._require_open()
        channel = self._channel
        channel.counter += 1
        below = channel.top
        if self._is_guest:
            lease = channel.lease
            if lease is not None:  # the thread holds the shared connection for this whole transaction
                lease.acquire()
                below = channel.top
            if below is None or below.state is not _ACTIVE:
                if lease is not None:
                    lease.release()
                raise TransactionStateError(
                    "this session shares a sandbox connection whose transaction is no longer open; the sandbox "
                    "has ended (or was broken): open sessions inside the sandbox's lifetime"
                )
            tx = Transaction(self, TransactionKind.ROOT, None, channel.counter, below=below)
            tx._lease = lease
            tx.savepoint = f"txscope_sp{tx.depth}"
            channel.pending.append(self.dialect.savepoint(tx.savepoint))
        else:
            tx = Transaction(self, TransactionKind.ROOT, None, channel.counter, below=below)
            channel.pending.append(channel.begin_sql)
        self._root = tx
        return self._push(tx)

    def _begin_child(self, parent: Transaction) -> Transaction:
        channel = self._channel
        if parent is not self._off_stack:
            self._check_on_top(parent, "open a transaction inside")
        channel.counter += 1
        below = channel.top if parent is self._off_stack else parent
        if self._nested_virtual:
            tx = Transaction(self, TransactionKind.VIRTUAL, parent, channel.counter, below=below)
        else:
            tx = Transaction(self, TransactionKind.NESTED, parent, channel.counter, below=below)
            # Named by depth, not by a counter: the same few texts recur, so psycopg's prepared-statement
            # cache is not churned by ever-new SAVEPOINT texts (each new text can trigger DEALLOCATE ALL).
            tx.savepoint = f"txscope_sp{tx.depth}"
            channel.pending.append(self.dialect.savepoint(tx.savepoint))
        return self._push(tx)

    def _join(self, parent: Transaction) -> Transaction:
        """A virtual transaction joined to ``parent`` (``ensure_transaction()``)."""
        channel = self._channel
        channel.counter += 1
        # On top of whatever is open on the connection, which may be another session's transaction opened
        # after ``parent``: below ``parent`` itself, that one would drop out of the connection's stack.
        return self._push(
            Transaction(self, TransactionKind.VIRTUAL, parent, channel.counter, below=channel.top)
        )

    def _check_on_top(self, tx: Transaction, action: str) -> None:
        top = self._channel.top
        if top is tx or top is None or top.session is self:
            return
        raise TransactionStateError(
            f"cannot {action} {tx.describe()}: {top.describe()} of another session sharing this connection was "
            "opened after it and is still open; sessions sharing a connection (in a sandbox) must end their "
            "transactions in reverse order of opening"
        )

    def _check_executable(self, tx: Transaction) -> None:
        tx._require_active("run a statement")
        self._require_open()
        inner = self._innermost
        while inner is not None:
            if inner is tx:
                return
            if inner.kind is not TransactionKind.VIRTUAL:
                break
            inner = inner.parent
        raise TransactionStateError(
            f"cannot use {tx.describe()}: {self._innermost.describe() if self._innermost else 'nothing'}, "
            "opened inside it, is still active; use the innermost transaction, or end it first"
        )

    def _commit(self, tx: Transaction) -> None:
        if self._innermost is not tx:
            if self._innermost is None:  # its session was closed (or ended it) without marking it
                self._require_open()
                raise TransactionStateError(
                    f"cannot commit {tx.describe()}: its session no longer has it open; open a new transaction "
                    "block for more work"
                )
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: {self._innermost.describe()}, opened inside it, is still "
                "active; commit or roll back the inner transaction first"
            )
        channel = self._channel
        kind = tx.kind
        if kind is TransactionKind.VIRTUAL:
            tx.state = TransactionState.COMMITTED
            self._pop(tx)
            return
        self._check_on_top(tx, "commit")
        if channel.failed():
            self._rollback(tx)
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: a statement in it failed and PostgreSQL aborts the "
                "transaction until it is rolled back, so it was rolled back; catch errors inside a nested "
                "block (with tx.begin_nested(): ...) to keep the rest of the work"
            )
        if tx.savepoint is not None:
            pending = channel.pending
            if pending and pending[-1] == self.dialect.savepoint(tx.savepoint):
                pending.pop()  # never sent: nothing ran inside it
            else:
                pending.append(self.dialect.release(tx.savepoint))
            tx.state = TransactionState.COMMITTED
            self._pop(tx)
            if tx.parent is not None:
                tx.parent._callbacks.extend(tx._callbacks)
            else:  # a guest's root: its commit is the application's commit
                self._end_root(tx)
            return
        # The root transaction of a session that owns its connection.
        self._pop(tx)
        if not channel.server_open:
            channel.pending = []
        else:
            try:
                channel.end_root("COMMIT")
            except Exception:
                tx.state = TransactionState.ROLLED_BACK
                if tx._owns_session:
                    self.close()
                raise
        tx.state = TransactionState.COMMITTED
        self._end_root(tx)

    def _end_root(self, tx: Transaction) -> None:
        if tx._owns_session:
            self.close()
        if tx.state is TransactionState.COMMITTED:
            self._fire(tx._callbacks)

    def _rollback(self, tx: Transaction) -> None:
        if tx is self._off_stack:
            # A joined implicit transaction (off the connection's stack): nothing to send.
            tx.state = TransactionState.ROLLED_BACK
            tx._callbacks.clear()
            self._pop(tx)
            if tx._owns_session:
                self.close()
            return
        channel = self._channel
        chain: list[Transaction] = []
        inner = channel.top
        while inner is not None and inner is not tx:
            chain.append(inner)
            inner = inner.below
        if inner is None:
            if tx.state is TransactionState.BROKEN:
                self._unwind_broken(tx)
                return
            raise TransactionStateError(
                f"{tx.describe()} is not open on this connection: it ended with a transaction it was opened in; "
                "open a new transaction block for more work"
            )
        chain.append(tx)
        # The outermost real (root or savepoint) transaction among tx and what is open above it.
        target = next((t for t in reversed(chain) if t.kind is not TransactionKind.VIRTUAL), None)
        for t in chain:
            if t.state is _ACTIVE:
                if t.session is self:
                    t.state = TransactionState.ROLLED_BACK
                else:
                    t.state = TransactionState.BROKEN
                    t.failure = (
                        f"it was rolled back when {tx.describe()}, opened before it by another session on the "
                        "same connection, rolled back"
                    )
            t._callbacks.clear()
            if t.session is self:
                _release_lease(t)
                if self._innermost is t:
                    self._innermost = t.parent
                    if t.parent is None:
                        self._root = None
        channel.top = tx.below
        broken = tx.state is TransactionState.BROKEN
        if target is None or broken:
            if broken and tx._owns_session:
                self.close()
            return
        if target.savepoint is None:  # the root of a session that owns its connection
            self._rollback_owned_root(target)
            return
        savepoint = self.dialect.savepoint(target.savepoint)
        pending = channel.pending
        if savepoint in pending:
            del pending[pending.index(savepoint) :]  # never sent: drop it and all queued after it
        else:
            # Everything queued was queued after the savepoint was sent; rolling back to it discards it.
            pending.clear()
            pending.extend(
                (self.dialect.rollback_to(target.savepoint), self.dialect.release(target.savepoint))
            )
        if tx.parent is None and tx._owns_session:
            self.close()

    def _rollback_owned_root(self, root: Transaction) -> None:
        channel = self._channel
        try:
            if channel.server_open:
                # Queued control statements are dropped, not sent: the rollback discards what they did.
                channel.pending = []
                channel.end_root("ROLLBACK")
            else:
                channel.pending = []
        finally:
            if root._owns_session:
                self.close()

    def _unwind_broken(self, tx: Transaction) -> None:
        _release_lease(tx)
        if self._innermost is tx:
            self._innermost = tx.parent
            if tx.parent is None:
                self._root = None
        if tx._owns_session:
            self.close()

    @staticmethod
    def _fire(callbacks: list[Callable[[], object]]) -> None:
        first: BaseException | None = None
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    # ------------------------------------------------------------------------------------ blocks
    def _exit_block(self, tx: Transaction, exc: BaseException | None) -> None:
        token: Token[Scope | None] | None = tx._token
        tx._token = None
        if tx._forced:
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
                tx._token = token
                raise TransactionStateError(
                    f"the block of {tx.describe()} was exited in a thread or asyncio task other than the one that "
                    "entered it, and was left open; end each block in the thread or task that opened it"
                ) from None
        error: TransactionStateError | None = None
        try:
            if tx.state is TransactionState.BROKEN:
                self._unwind_broken(tx)
                if exc is None:
                    error = TransactionStateError(
                        f"{tx.describe()} cannot commit: {tx.failure}; "
                        "its work is not where you expect it, and the transaction is gone"
                    )
            elif tx.state is _ACTIVE:
                error = self._end_block(tx, exc, scope)
        finally:
            if tx._owns_session:
                self.close()
        if error is not None:
            raise error

    def _end_block(
        self, tx: Transaction, exc: BaseException | None, scope: Scope | None
    ) -> TransactionStateError | None:
        inner = self._innermost
        top = self._channel.top
        in_order = inner is tx and scope is not None and scope.transaction is tx
        if in_order and (
            top is tx or top is None or top.session is self or tx.kind is TransactionKind.VIRTUAL
        ):
            if exc is None:
                self._commit(tx)
            else:
                self._rollback(tx)
            return None
        above = top if in_order else inner
        above_name = above.describe() if above is not None and above is not tx else "a block opened inside it"
        open_blocks = []
        t = top
        while t is not None and t is not tx:
            open_blocks.append(t)
            t = t.below
        self._rollback(tx)
        for t in open_blocks:
            if t._entered and t._token is not None and t.session is self:
                t._forced = True
                t.failure = f"{t.describe()} was rolled back when the block of {tx.describe()} ended"
        return TransactionStateError(
            f"the block of {tx.describe()} ended while {above_name} was still open; both were rolled "
            "back; leave inner blocks (or end inner transactions) before outer ones"
        )


def _release_lease(tx: Transaction) -> None:
    lease, tx._lease = tx._lease, None
    if lease is not None:
        lease.release()


def _check_nested(nested: str) -> None:
    if nested not in _NESTED_MODES:
        raise ConfigurationError(f"nested={nested!r} is not valid; use one of: {', '.join(_NESTED_MODES)}")


def exit_block_opened_by(owner: object, exc: BaseException | None) -> None:
    """End the innermost block that ``with owner:`` opened (``owner`` is an engine or a session)."""
    scope = find_opened_by(owner)
    if scope is None or scope.transaction is None:
        raise TransactionStateError(
            f"'with {type(owner).__name__.lower()}:' block ended, but no transaction it opened is current in this "
            "thread or task; blocks must end in the thread or task that opened them"
        )
    tx = scope.transaction
    tx.session._exit_block(tx, exc)
