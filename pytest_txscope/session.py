"""Sessions: one DB-API connection, and the stack of transactions open on it.

Transaction-control SQL is sent as late as possible and batched: ``BEGIN`` and ``SAVEPOINT`` wait for the first
statement that needs them (a block that runs nothing costs nothing), and releasing or rolling back to a
savepoint waits for the next statement, which carries it in the same round trip where the driver allows. Only
``COMMIT`` and the root ``ROLLBACK`` are sent at once, because they end the unit of work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .context import Scope, find_opened_by, push_scope, reset_scope
from .dialects import DBAPIConnection, DBAPICursor, Dialect, dialect_for_connection
from .errors import ConfigurationError, ImplicitCommitError, TransactionStateError
from .transactions import Executor, Transaction, TransactionKind, TransactionState

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Session"]

_ACTIVE = TransactionState.ACTIVE


class Session(Executor):
    """A connection and the transactions on it.

    ``Session(conn)`` wraps a DB-API connection you opened yourself (sqlite3, psycopg 3 or PyMySQL): the
    dialect is detected from it, it is switched to autocommit while the session lasts so that the session can
    send ``BEGIN`` / ``SAVEPOINT`` itself, and `close` rolls back what is open and restores the
    connection's settings without closing it. Sessions of an `Engine` come from
    ``engine.session()`` and go back to its pool when closed.

    ``with session as tx:`` opens a transaction (nested when one is open) and makes the session current.
    Statements run on the session outside any block open a transaction of their own, which is rolled back when
    the session closes, unless a later ``with session:`` block takes it over and commits it.
    """

    def __init__(self, connection: DBAPIConnection, *, nested: str = "savepoint") -> None:
        if nested not in ("savepoint", "virtual"):
            raise ConfigurationError(f"nested={nested!r} is not valid; use one of: savepoint, virtual")
        dialect = dialect_for_connection(connection)
        restore = dialect.take_control(connection)
        self._setup(connection, dialect, None, restore, nested)

    @classmethod
    def _for_engine(cls, engine: Engine, connection: DBAPIConnection, dialect: Dialect) -> Session:
        session = cls.__new__(cls)
        session._setup(connection, dialect, engine, None, engine.nested)
        return session

    def _setup(
        self,
        connection: DBAPIConnection,
        dialect: Dialect,
        engine: Engine | None,
        restore: Callable[[], None] | None,
        nested: str,
    ) -> None:
        self._conn = connection
        self.dialect = dialect
        self.engine = engine
        self._restore = restore
        self._nested_virtual = nested == "virtual"
        self.closed = False
        self._root: Transaction | None = None
        self._innermost: Transaction | None = None
        self._pending: list[str] = []
        self._server_open = False
        self._counter = 0
        self._begin_sql = dialect.begin_statement()
        self._run = dialect.execute
        self._run_many = dialect.executemany
        self._prepare: Callable[[str, Any], tuple[str, Any]] | None = (
            None if dialect.prepare.__func__ is Dialect.prepare else dialect.prepare  # type: ignore[attr-defined]
        )
        self._in_tx = dialect.in_transaction

    # ------------------------------------------------------------------------------------------- public
    @property
    def connection(self) -> DBAPIConnection:
        """The underlying DB-API connection. Statements sent on it directly bypass pending BEGIN/SAVEPOINT
        statements; prefer `execute`."""
        return self._conn

    @property
    def transaction(self) -> Transaction | None:
        """The innermost open transaction, or None."""
        return self._innermost

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"innermost={self._innermost!r}"
        return f"<Session {self.dialect.display} {state}>"

    def begin(self) -> Transaction:
        """Open a transaction: the root one, or a nested one inside the innermost open transaction.

        It is not made current; use it as a ``with`` block for that, or end it with ``commit()``/``rollback()``.
        """
        self._require_open()
        inner = self._innermost
        if inner is None:
            return self._new_root()
        if inner.implicit:
            # The transaction statements outside blocks opened becomes this block's; its work is kept.
            inner.implicit = False
            return inner
        if inner.state is not _ACTIVE:
            inner._require_active("begin a transaction")
        return self._begin_child(inner)

    def execute(self, sql: str, params: Any = None) -> DBAPICursor:
        """Run one statement in the innermost open transaction (see `Transaction.execute`)."""
        inner = self._innermost
        if inner is None:
            self._autobegin()
        elif inner.state is not _ACTIVE:
            inner._require_active("run a statement")
        return self._execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Any]) -> DBAPICursor:
        """Run one statement once per parameter set, in the innermost open transaction."""
        inner = self._innermost
        if inner is None:
            self._autobegin()
        elif inner.state is not _ACTIVE:
            inner._require_active("run a statement")
        return self._executemany(sql, seq_of_params)

    def close(self) -> None:
        """Roll back whatever is open and give the connection back (to the pool, or to its owner)."""
        if self.closed:
            return
        try:
            root = self._root
            if root is not None and root.state is _ACTIVE:
                self._rollback(root)
        finally:
            self.closed = True
            self._root = self._innermost = None
            self._pending = []
            if self.engine is not None:
                self.engine._release(self._conn)
            elif self._restore is not None:
                self._restore()

    def __enter__(self) -> Transaction:
        return self.begin()._enter(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        exit_block_opened_by(self, exc)

    # ------------------------------------------------------------------------------------ statements
    def _autobegin(self) -> None:
        self._new_root().implicit = True

    def _execute(self, sql: str, params: Any) -> DBAPICursor:
        if self._pending:
            self._flush()
        if params is not None and self._prepare is not None:
            sql, params = self._prepare(sql, params)
        try:
            cursor = self._run(self._conn, sql, params)
        except Exception as exc:
            if self._server_open and (
                not self._in_tx(self._conn) or self.dialect.error_ends_transaction(exc)
            ):
                self._break(f"the server ended the transaction when {_short(sql)!r} failed: {exc}")
            raise
        if self._server_open and not self._in_tx(self._conn):
            self._break(f"the server ended the transaction while running {_short(sql)!r}")
            raise ImplicitCommitError(sql, self.dialect.display)
        return cursor

    def _executemany(self, sql: str, seq: Sequence[Any]) -> DBAPICursor:
        if self._pending:
            self._flush()
        sql, seq = self.dialect.prepare_many(sql, seq)
        try:
            cursor = self._run_many(self._conn, sql, seq)
        except Exception as exc:
            if self._server_open and (
                not self._in_tx(self._conn) or self.dialect.error_ends_transaction(exc)
            ):
                self._break(f"the server ended the transaction when {_short(sql)!r} failed: {exc}")
            raise
        if self._server_open and not self._in_tx(self._conn):
            self._break(f"the server ended the transaction while running {_short(sql)!r}")
            raise ImplicitCommitError(sql, self.dialect.display)
        return cursor

    def _flush(self) -> None:
        statements, self._pending = self._pending, []
        try:
            self.dialect.run_control(self._conn, statements)
        except Exception as exc:
            self._break(f"sending {'; '.join(statements)!r} failed: {type(exc).__name__}: {exc}")
            raise
        if statements[0] is self._begin_sql:
            self._server_open = True

    def _break(self, reason: str) -> None:
        """The server no longer holds our transaction: mark every open one BROKEN with ``reason``."""
        tx = self._innermost
        while tx is not None:
            if tx.state is _ACTIVE:
                tx.state = TransactionState.BROKEN
                tx.failure = reason
                tx._callbacks.clear()
            tx = tx.parent
        self._pending = []
        self._server_open = False
        # The connection may be failing already; the caller raises the real error.
        with contextlib.suppress(Exception):
            if self._in_tx(self._conn):
                self._run(self._conn, "ROLLBACK", None).close()

    # ------------------------------------------------------------------------------- begin and end
    def _require_open(self) -> None:
        if self.closed:
            raise TransactionStateError("this session is closed; open a new one with engine.session()")

    def _new_root(self) -> Transaction:
        self._require_open()
        self._counter += 1
        tx = Transaction(self, TransactionKind.ROOT, None, self._counter)
        self._pending.append(self._begin_sql)
        self._root = self._innermost = tx
        return tx

    def _begin_child(self, parent: Transaction) -> Transaction:
        self._counter += 1
        if self._nested_virtual:
            tx = Transaction(self, TransactionKind.VIRTUAL, parent, self._counter)
        else:
            # Named by depth, not by a counter: the same few texts recur, so psycopg's prepared-statement cache
            # is not churned by ever-new SAVEPOINT texts (each new text can trigger a DEALLOCATE ALL).
            name = f"txscope_sp{_depth(parent) + 1}"
            tx = Transaction(self, TransactionKind.NESTED, parent, self._counter, name)
            self._pending.append(self.dialect.savepoint(name))
        self._innermost = tx
        return tx

    def _join(self, parent: Transaction) -> Transaction:
        """A virtual transaction joined to ``parent`` (``ensure_transaction()``)."""
        self._counter += 1
        tx = Transaction(self, TransactionKind.VIRTUAL, parent, self._counter)
        self._innermost = tx
        return tx

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
            assert self._innermost is not None
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: {self._innermost.describe()}, opened inside it, is still "
                "active; commit or roll back the inner transaction first"
            )
        kind = tx.kind
        if kind is not TransactionKind.VIRTUAL and self._server_open and self._failed():
            self._rollback(tx)
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: a statement in it failed and PostgreSQL aborts the "
                "transaction until it is rolled back, so it was rolled back; catch errors inside a nested "
                "block (with tx.begin_nested(): ...) to keep the rest of the work"
            )
        if kind is TransactionKind.VIRTUAL:
            tx.state = TransactionState.COMMITTED
            self._innermost = tx.parent
            return
        if kind is TransactionKind.NESTED:
            assert tx.parent is not None
            assert tx.savepoint is not None
            pending = self._pending
            if pending and pending[-1] == self.dialect.savepoint(tx.savepoint):
                pending.pop()  # never sent: nothing ran inside it
            else:
                pending.append(self.dialect.release(tx.savepoint))
            tx.parent._callbacks.extend(tx._callbacks)
            tx.state = TransactionState.COMMITTED
            self._innermost = tx.parent
            return
        # The root transaction.
        statements, self._pending = self._pending, []
        self._root = self._innermost = None
        if self._server_open:
            self._server_open = False
            statements.append("COMMIT")
            try:
                self.dialect.run_control(self._conn, statements)
            except Exception:
                tx.state = TransactionState.ROLLED_BACK
                self._reset_after_failure()
                if tx._owns_session:
                    self.close()
                raise
        tx.state = TransactionState.COMMITTED
        if tx._owns_session:
            self.close()
        self._fire(tx._callbacks)

    def _rollback(self, tx: Transaction) -> None:
        chain: list[Transaction] = []
        inner = self._innermost
        while inner is not None and inner is not tx:
            chain.append(inner)
            inner = inner.parent
        if inner is None:
            if tx.state is TransactionState.BROKEN:
                return  # already unwound
            raise TransactionStateError(f"{tx.describe()} is not open on this session")
        chain.append(tx)
        # The outermost real (root or savepoint) transaction among tx and what is open inside it.
        target = next((t for t in reversed(chain) if t.kind is not TransactionKind.VIRTUAL), None)
        for t in chain:
            if t.state is _ACTIVE:
                t.state = TransactionState.ROLLED_BACK
            t._callbacks.clear()
        self._innermost = tx.parent
        if target is None or tx.state is TransactionState.BROKEN:
            return
        if target.kind is TransactionKind.ROOT:
            self._root = None
            self._pending = []
            try:
                if self._server_open:
                    self._server_open = False
                    try:
                        self._run(self._conn, "ROLLBACK", None).close()
                    except Exception:
                        self._reset_after_failure()
                        raise
            finally:
                if target._owns_session:
                    self.close()
            return
        assert target.savepoint is not None
        savepoint = self.dialect.savepoint(target.savepoint)
        pending = self._pending
        if savepoint in pending:
            del pending[pending.index(savepoint) :]  # never sent: drop it and all queued after it
        else:
            # Everything queued was queued after the savepoint was sent, and rolling back to it discards it.
            pending.clear()
            pending.extend(
                (self.dialect.rollback_to(target.savepoint), self.dialect.release(target.savepoint))
            )

    def _failed(self) -> bool:
        if not self.dialect.transaction_failed(self._conn):
            return False
        if self._pending:  # a queued ROLLBACK TO may be what recovers the transaction
            self._flush()
            return self.dialect.transaction_failed(self._conn)
        return True

    def _reset_after_failure(self) -> None:
        self._pending = []
        self._server_open = False
        # The connection is failing; the caller re-raises the original error.
        with contextlib.suppress(Exception):
            self.dialect.reset(self._conn)

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
                raise TransactionStateError(tx.failure or f"{tx.describe()} was already rolled back")
            return
        error: TransactionStateError | None = None
        try:
            if tx.state is TransactionState.BROKEN:
                if self._innermost is tx:
                    self._innermost = tx.parent
                    if tx.parent is None:
                        self._root = None
                if exc is None:
                    error = TransactionStateError(
                        f"{tx.describe()} cannot commit: {tx.failure}; "
                        "its work is not where you expect it, and the transaction is gone"
                    )
            elif tx.state is _ACTIVE:
                from .context import current_scope

                scope = current_scope()
                inner = self._innermost
                if inner is not tx or scope is None or scope.transaction is not tx:
                    inner_name = inner.describe() if inner is not tx and inner else "a block opened inside it"
                    open_blocks = []
                    t = inner
                    while t is not None and t is not tx:
                        open_blocks.append(t)
                        t = t.parent
                    self._rollback(tx)
                    for t in open_blocks:
                        if t._entered and t._token is not None:
                            t._forced = True
                            t.failure = (
                                f"{t.describe()} was rolled back when the block of {tx.describe()} ended"
                            )
                    error = TransactionStateError(
                        f"the block of {tx.describe()} ended while {inner_name} was still open; both were rolled "
                        "back; leave inner blocks (or end inner transactions) before outer ones"
                    )
                elif exc is None:
                    self._commit(tx)
                else:
                    self._rollback(tx)
        finally:
            if token is not None:
                reset_scope(token)
            if tx._owns_session:
                self.close()
        if error is not None:
            raise error


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


def _depth(tx: Transaction) -> int:
    depth = 0
    parent = tx.parent
    while parent is not None:
        depth += 1
        parent = parent.parent
    return depth


def _short(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "..."


def push_session(session: Session, opened_by: object | None = None) -> Token[Scope | None]:
    """Make a session current without opening a transaction (``engine.session()`` blocks)."""
    return push_scope(session, None, opened_by)[1]
