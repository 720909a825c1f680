"""A DB-API connection object over a sandbox's connection, for code that wants a raw connection.

It behaves like the driver's own connection: in the default (non-autocommit) mode the first statement opens a
transaction, ``commit()`` ends it, ``rollback()`` undoes it, ``close()`` discards what is uncommitted; inside the
sandbox those become a SAVEPOINT, its RELEASE and a ROLLBACK TO it. In autocommit mode each statement is
"committed" at once: it runs in the sandbox's transaction with no savepoint of the application's. Statements use
the driver's own parameter style, and every driver call that sends SQL runs after the sandbox's pending
BEGIN / SAVEPOINT. Transaction control sent as SQL text (``COMMIT``, ``ROLLBACK``, ``BEGIN``) maps onto the
application's transaction. What would end the sandbox's transaction is refused. The per-driver faces
(`pytest_txscope.facades`) add each driver's own API and errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .core import Channel, Session
from .core.channel import short_sql
from .dbapi_cursor import SandboxCursor
from .dbapi_support import LEVEL, AutocommitFlag, driver_error, level_name
from .errors import SandboxIsolationWarning, SandboxRefusedError, TransactionStateError
from .places import Place, caller_place

__all__ = ["SandboxConnection", "SandboxCursor", "driver_error"]

_T = TypeVar("_T")


class SandboxConnection:
    """A DB-API connection on the sandbox's connection, for code (or a library) that wants a raw one.

    In the driver's default mode the first statement opens a transaction (a SAVEPOINT in the sandbox),
    ``commit()`` releases it, ``rollback()`` rolls back to it, ``close()`` discards uncommitted work and leaves the
    real connection open. In autocommit mode (``connect(autocommit=True)`` or switched on) each statement runs
    in the sandbox's transaction at once and ``commit()`` does nothing. ``COMMIT``, ``ROLLBACK`` and ``BEGIN``
    sent as SQL map onto ``commit()``, ``rollback()`` and a new transaction; isolation levels cannot apply and
    give one `SandboxIsolationWarning`; two-phase commit is refused with `SandboxRefusedError`.
    """

    closed_error_spec: tuple[str, str, str] | None = None
    """The driver's error for a closed connection: (module, class name, message); None raises ours alone."""
    begin_commits_first = True
    """``BEGIN`` inside an open transaction commits it first (MySQL); PostgreSQL ignores it (with a warning)."""
    isolation_query = "SHOW transaction_isolation"
    """The query whose last column of the first row is the level of the sandbox's transaction."""
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
        # The real connection: what set-up the code did on it stays there for `rebind`.
        self._made_on = session.connection
        self.connect_kwargs: dict[str, Any] = dict(connect_kwargs or {})
        """The keyword arguments the code gave the driver's ``connect()``, honoured as the driver would."""
        self._closed = False
        self._check_thread = check_thread
        self.began_at: Place | None = None
        """Where the code that began the current transaction is (for the end-of-test check of open ones)."""
        self.wrote = False
        """Whether a statement of the current transaction may have changed data (the same check)."""
        self._protects = False  # autocommit mode where the sandbox protects statements (see `protecting`)
        self._autocommit = False
        self._in_effect: str | None = None
        self._warned: set[str] = set()
        if self.connect_kwargs.get("autocommit"):
            self.switch_autocommit(True)

    @property
    def session(self) -> Session:
        """The guest session behind this connection."""
        return self._session

    def _check(self) -> None:
        if self._closed:  # every statement passes here: no call unless it raises
            self._check_open()
        if self._check_thread is not None:
            self._check_thread()  # a pool may hand this object to another thread

    def _check_open(self) -> None:
        if self._closed:
            raise self.closed_error()

    def closed_error(self) -> Exception:
        """The error for using a closed connection: the driver's own class (`closed_error_spec`) and ours."""
        message = "this sandbox connection is closed; ask the sandbox for a new one"
        if self.closed_error_spec is None:
            return TransactionStateError(message)
        module, name, text = self.closed_error_spec
        return driver_error(module, name, TransactionStateError)(f"{text}: {message}")

    def statement_channel(self) -> Channel:
        """Check the connection is usable, open its transaction if none is, and return the channel."""
        self._check()
        session = self._session
        if session.transaction is None:
            self.began_at = caller_place(inspect.currentframe())
            self.wrote = False
        session.autobegin()
        return session.channel

    @property
    def protecting(self) -> bool:
        """True in autocommit mode, outside a transaction the application opened, where the sandbox protects
        statements: each runs in a savepoint of its own. Inside the application's transaction a failure aborts
        it, as on the server (and a statement savepoint released there would take the application's own
        savepoints with it)."""
        return self._protects and self._app_transaction() is None

    def send(self, channel: Channel, sql: str, send: Callable[[], _T], *, quiet: bool = False) -> _T:
        """Run ``send`` (a driver call that sends ``sql``) after what is queued, as a statement of this
        connection: in its own savepoint when `protecting`. ``quiet``: not a statement of the application's
        to count (asyncpg's prepare-to-describe before the statement runs)."""
        if self.protecting:
            return self.send_protected(channel, sql, send, quiet=quiet)
        return channel.checked(sql, send, self._session.lane, quiet=quiet)

    def send_protected(
        self, channel: Channel, sql: str, send: Callable[[], _T], *, quiet: bool = False
    ) -> _T:
        """Run ``send`` inside a statement savepoint, so that its failure leaves the sandbox's transaction usable
        (autocommit mode on PostgreSQL: the statement has no savepoint of the application's around it)."""
        gate = channel.take_turn(self._session.lane)  # the queue is shared: hold it before touching it
        try:
            stack = channel.stack
            name = stack.protect()
            try:
                result = channel.checked(sql, send, self._session.lane, quiet=quiet)
            except Exception:
                stack.protected(name, failed=True)
                raise
            stack.protected(name, failed=False)
            return result
        finally:
            channel.end_turn(gate)

    def cursor(self, *args: Any, **kwargs: Any) -> SandboxCursor:
        """A cursor on the sandbox connection (the driver's ``cursor()`` arguments)."""
        self._check()
        return self.cursor_class(self, args, kwargs)

    def execute(self, sql: str, params: Any = None, **kwargs: Any) -> SandboxCursor:
        """Shortcut of sqlite3 and psycopg: a new cursor, executed."""
        return self.cursor().execute(sql, params, **kwargs)

    def executemany(self, sql: str, seq_of_params: Sequence[Any], **kwargs: Any) -> SandboxCursor:
        """Shortcut of sqlite3: a new cursor, ``executemany``'d."""
        return self.cursor().executemany(sql, seq_of_params, **kwargs)

    def executescript(self, script: str) -> SandboxCursor:
        """sqlite3's ``executescript`` commits first; here the statements run one by one in the savepoint."""
        cursor = self.cursor()
        for statement in self._session.dialect.split_script(script):
            cursor.execute(statement)
        return cursor

    # ------------------------------------------------------------------------------------ transactions
    def _app_transaction(self) -> Any:
        """The transaction the application has open (not the joined one of autocommit mode), or None."""
        tx = self._session.transaction
        if tx is None or (self._autocommit and tx.implicit):
            return None
        return tx

    def begin(self) -> None:
        """PyMySQL's explicit ``begin()``: opens the transaction that ``commit()`` ends (a savepoint), in
        autocommit mode too. As on MySQL, where BEGIN first commits a pending transaction, an open one is
        committed first."""
        self._check()
        tx = self._app_transaction()
        if tx is not None and tx.is_active:
            tx.commit()
        self._open_explicit()

    def _open_explicit(self) -> Any:
        self.statement_channel()
        if self._autocommit:  # the joined transaction gives way to a savepoint of the application's
            self.began_at = caller_place(inspect.currentframe())
            return self._session.begin()
        return self._session.transaction

    @contextlib.contextmanager
    def transaction(self, savepoint_name: str | None = None, force_rollback: bool = False) -> Iterator[Any]:
        """psycopg's ``with conn.transaction():``: with no transaction open (in autocommit mode too), the
        connection's transaction, committed at the end of the block (a savepoint release in the sandbox);
        inside an open one, a savepoint of its own. An exception (or ``force_rollback``) rolls the block back.
        ``savepoint_name`` is ignored: the sandbox names savepoints itself."""
        with self.open_block() as tx:
            yield tx
            if force_rollback and tx.is_active:
                tx.rollback()

    def open_block(self) -> Any:
        """Open what psycopg's ``transaction()`` and asyncpg's ``transaction().start()`` open: with no transaction
        of the application's open (in autocommit mode too), its transaction, which the block owns; inside one,
        a savepoint. Returns the core transaction (``commit()``, ``rollback()``, a context manager)."""
        self._check()
        outer = self._app_transaction()
        if outer is None:
            block = self._open_explicit()
            block.implicit = False  # the block owns the transaction the call opened
            return block
        return outer.begin_nested()

    @property
    def in_app_transaction(self) -> bool:
        """Whether the application has a transaction open (not autocommit mode's joined one)."""
        return self._app_transaction() is not None

    def commit(self) -> None:
        """Release the current savepoint (the application's commit) and fire its callbacks; nothing in
        autocommit mode outside an explicit transaction."""
        self._check_open()
        tx = self._app_transaction()
        if tx is not None:
            tx.commit()  # a broken transaction (another session's rollback took it) raises, never silently

    def rollback(self) -> None:
        """Roll back to the current savepoint (the application's rollback)."""
        # No thread check: a pool's finalizer may roll back from anywhere, after the sandbox ended too.
        self._check_open()
        tx = self._app_transaction()
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

    # ------------------------------------------------------------------------------- re-pointing
    def reusable_on(self, real: object) -> bool:
        """Whether `rebind` may re-point this connection at a session on the real connection ``real``: it is
        open, its own session was closed (its sandbox ended: nothing of that sandbox is left to use it), and it
        was made on ``real`` itself (so what was set up on it, such as SQLite functions, is still there)."""
        return not self._closed and self._session.closed and real is self._made_on

    def rebind(self, session: Session, check_thread: Callable[[], None] | None = None) -> None:
        """Re-point this connection, whose sandbox ended, at ``session`` (a guest of a later sandbox on the same
        real connection): what a pool that kept it checks out is then as a connection that sandbox just made,
        without the pool's reconnect and its on-connect set-up.

        The per-transaction state starts afresh (no transaction, nothing written or warned about); settings
        the code gave the connection stay, as they would on the driver's connection a pool keeps (autocommit
        mode, row factories, what `mark_set_up` kept). Raises `TransactionStateError` unless `reusable_on`.
        """
        if not self.reusable_on(session.connection):
            raise TransactionStateError(
                "only an open sandbox connection whose sandbox ended can be re-pointed, on the same real connection"
            )
        self._session = session
        self._check_thread = check_thread
        self.began_at, self.wrote, self._in_effect, self._warned = None, False, None, set()
        # The new session's lane follows the mode, as `switch_autocommit` set the old one's.
        if self._autocommit:
            self._follow_mode()
        self.forget_since_set_up()

    def mark_set_up(self) -> None:
        """What was registered on this connection until now is its set-up (a pool's on-connect work, such as
        SQLAlchemy's SQLite functions): `rebind` keeps it. A face that registers things on the real connection
        (sqlite3's functions) overrides this."""

    def forget_since_set_up(self) -> None:
        """Undo what the code registered on the real connection after `mark_set_up` (called by `rebind`, so
        that a later test does not inherit an earlier one's functions). Nothing here; faces override it."""

    def control_text(self, sql: str, match: re.Match[str]) -> bool:
        """Transaction control the code sent as SQL text, as the server would treat it for this connection:
        COMMIT is `commit()`, ROLLBACK is `rollback()`, BEGIN opens a transaction (after committing an open one
        on MySQL), isolation levels and other characteristics cannot apply (one warning); two-phase and XA
        statements are refused. False: the text goes to the server as it is."""
        kind = match.lastgroup
        shown = repr(short_sql(sql))
        if kind == "refuse":
            raise SandboxRefusedError(
                f"{shown} sent as SQL", "a prepared (two-phase) transaction outlives it"
            )
        if kind == "commit":
            self.commit()
        elif kind == "rollback":
            self.rollback()
        elif kind == "characteristics":
            self._check()
            level = LEVEL.search(sql)
            self.ask_isolation(
                level.group(1) if level else sql[match.end("characteristics") :].strip(), shown
            )
        else:
            self._check()
            level = LEVEL.search(sql)
            if level is not None:
                self.ask_isolation(level.group(1), shown)
            tx = self._app_transaction()
            if tx is not None and self.begin_commits_first:
                tx.commit()
                tx = None
            if tx is None:
                self._open_explicit()
        return True

    # ------------------------------------------------------------------------------- autocommit mode
    @property
    def autocommit_mode(self) -> bool:
        """Whether each statement is committed at once (the driver's autocommit mode)."""
        return self._autocommit

    def switch_autocommit(self, on: bool) -> None:
        """Enter or leave autocommit mode. With an application transaction open, `in_transaction_switch` says
        what happens (MySQL commits it; psycopg refuses)."""
        self._check()
        on = bool(on)
        if on == self._autocommit:
            return
        tx = self._app_transaction()
        if tx is not None:
            self.in_transaction_switch("autocommit")
            tx = self._app_transaction()
            if tx is not None:
                tx.commit()
        joined = self._session.transaction
        if joined is not None:  # autocommit mode's joined transaction: it sends nothing
            joined.commit()
        self._autocommit = on
        self._follow_mode()

    def _follow_mode(self) -> None:
        # In autocommit mode the session's statements join the sandbox's transaction instead of opening one.
        lane = self._session.lane
        lane.policy = dataclasses.replace(lane.policy, implicit_joins=self._autocommit)
        self._protects = self._autocommit and lane.policy.protect_statements

    def in_transaction_switch(self, setting: str) -> None:
        """Called when the code changes ``setting`` while its transaction is open: raise the driver's error
        (psycopg), or return and let the switch commit the transaction first (MySQL, the default)."""

    # ---------------------------------------------------------------------------------- isolation
    def ask_isolation(self, level: object, how: str) -> None:
        """The code asked for isolation ``level`` (or other transaction characteristics): it cannot apply in
        the sandbox's transaction unless it is that transaction's own level; warn once per level."""
        if level is None:
            return
        asked = level_name(level)
        if asked in ("DEFAULT", "NONE") or asked in self._warned:
            return
        in_effect = self.level_in_effect()
        if asked == in_effect:
            return
        self._warned.add(asked)
        known = LEVEL.fullmatch(f"ISOLATION LEVEL {asked}") is not None
        what = f"isolation level {asked}" if known else f"transaction characteristics {asked!r}"
        warnings.warn(SandboxIsolationWarning(what, how, in_effect), stacklevel=4)

    def level_in_effect(self) -> str:
        """The isolation level of the sandbox's transaction (asked once per connection)."""
        if self._in_effect is None:
            channel = self._session.channel
            run = self._session.dialect.execute
            query = self.isolation_query
            cursor = channel.checked(
                query, lambda: run(channel.connection, query, None), self._session.lane, quiet=True
            )
            self._in_effect = level_name(cursor.fetchall()[0][-1])
            cursor.close()
        return self._in_effect

    # ---------------------------------------------------------------------- the driver's own API
    autocommit_is_bool = False
    """True where the driver's ``autocommit`` is a plain bool attribute (psycopg, psycopg2)."""

    @property
    def autocommit(self) -> Any:
        """Whether autocommit mode is on: a bool where the driver's is one (`autocommit_is_bool`); elsewhere it
        reads as a bool and ``conn.autocommit(True)`` switches it (PyMySQL, mysqlclient)."""
        return self._autocommit if self.autocommit_is_bool else AutocommitFlag(self)

    @autocommit.setter
    def autocommit(self, value: object) -> None:
        self.switch_autocommit(bool(value))

    def get_autocommit(self) -> bool:
        """PyMySQL's and mysqlclient's getter."""
        return self._autocommit

    def set_autocommit(self, value: object) -> None:
        """psycopg's setter method."""
        self.autocommit = value

    @property
    def isolation_level(self) -> str:
        """sqlite3's setting: a transaction is always open."""
        return "DEFERRED"

    @isolation_level.setter
    def isolation_level(self, value: object) -> None:
        if value is None:
            self.switch_autocommit(True)

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

    def __getattr__(self, name: str) -> Any:
        if name.startswith("tpc_"):
            raise SandboxRefusedError(
                f"two-phase commit ({name})", "it commits outside the sandbox's transaction"
            )
        # Read-only driver attributes (info, server_version, in_transaction, ...) come from the real one.
        return getattr(self._session.connection, name)
