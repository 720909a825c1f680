"""Engines: where connections come from (a URL, a DB-API module, or any connect function), and their pool."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType, TracebackType
from typing import Any, Protocol

from ..dialects import (
    DBAPIConnection,
    Dialect,
    dialect_for_connection,
    dialect_for_module,
    dialect_for_url,
    driver_modules,
)
from ..errors import (
    BackendUnavailableError,
    ConfigurationError,
    ConnectionBusyError,
    TxScopeError,
)
from ..url import DatabaseURL
from .channel import Channel
from .context import find_session, push_scope, reset_scope
from .scripts import run_script
from .session import Session, exit_block_opened_by
from .states import Policy
from .transaction import Transaction

__all__ = ["Engine", "SessionProvider", "is_seconds"]

_NESTED_MODES = ("savepoint", "virtual")


class SessionProvider(Protocol):
    """What pins an engine (`Engine.pin`): where its sessions come from meanwhile. A sandbox hands out guest
    sessions on its connection; the plugin's blocker refuses."""

    def guest_session(self, engine: Engine) -> Session:
        """A new session for ``engine``: what ``engine.session()`` and ``with engine:`` get."""
        ...


class Engine:
    """A source of sessions over one database, with a pool of reusable connections.

    ``with engine as tx:`` opens a session and a transaction, commits on a clean exit and rolls back when the
    block raises; inside an open transaction of the same engine (in this thread or task) it opens a nested one
    instead: a SAVEPOINT, or with ``nested="virtual"`` a virtual transaction that sends nothing.

    Args:
        connect: a zero-argument function returning a new DB-API connection (sqlite3, psycopg 3 or PyMySQL).
        nested: ``"savepoint"`` (default) or ``"virtual"``: what a block inside an open transaction does.
        pool_size: how many idle connections to keep for reuse.
        max_connections: how many connections may be open at once; None for no limit.
        acquire_timeout: seconds to wait for a connection when ``max_connections`` are all in use.
    """

    def __init__(
        self,
        connect: Callable[[], DBAPIConnection],
        *,
        nested: str = "savepoint",
        pool_size: int = 5,
        max_connections: int | None = None,
        acquire_timeout: float = 30.0,
        url: DatabaseURL | None = None,
        dialect: Dialect | None = None,
    ) -> None:
        _check_options(connect, nested, pool_size, max_connections, acquire_timeout)
        self._connect = connect
        self.nested = nested
        self._policy = Policy(nested_virtual=nested == "virtual")
        self.pool_size = pool_size
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self.url = url
        """The parsed URL (password masked when shown), when the engine was made from one."""
        self._dialect = dialect
        self._pin: SessionProvider | None = None
        self._idle: list[DBAPIConnection] = []
        self._open = 0
        self._lock = threading.Condition()
        self._target = self.target
        self.facts: dict[str, object] = {}
        """What the library learned about the database once for all the engine's connections (whether it
        has deferrable constraints)."""
        self.twin: Any = None
        """The `AsyncEngine` built over this engine, if any (what the asyncio API's sessions name as engine)."""
        self._reconnect: Callable[[DBAPIConnection], DBAPIConnection] | None = self._replace
        """How a session's channel swaps a dead connection for a new one; None where a new connection would
        be a different database (SQLite ``:memory:``)."""

    # --------------------------------------------------------------------------------- construction
    @classmethod
    def from_url(cls, url: str | DatabaseURL, **connect_kwargs: Any) -> Engine:
        """An engine for ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:``,
        ``postgresql://user:pw@host:port/db`` (psycopg 3) or ``mysql://`` / ``mariadb://`` (PyMySQL).

        Engine options (``nested``, ``pool_size``, ``max_connections``, ``acquire_timeout``) are taken from
        ``connect_kwargs``; the rest go to the driver's ``connect()``. The query string holds driver options
        (``?sslmode=require``); SQLite takes ``foreign_keys=on|off`` (on by default), ``journal_mode=wal`` and
        ``timeout=SECONDS``.
        """
        try:
            parsed = url if isinstance(url, DatabaseURL) else DatabaseURL.parse(url)
        except TxScopeError:
            url = "<not shown: it may hold a password>"  # pytest prints this frame's arguments
            raise
        return cls.on_url(parsed, dialect_for_url(parsed).connect_from_url, connect_kwargs)

    @classmethod
    def on_url(
        cls,
        url: DatabaseURL,
        connector: Callable[[DatabaseURL, dict[str, Any]], Callable[[], DBAPIConnection]],
        connect_kwargs: dict[str, Any],
    ) -> Engine:
        """An engine for ``url`` whose connect function is ``connector(url, driver_kwargs)``: `from_url`, with
        the way of connecting given (the asyncio API passes one that opens an asyncio driver's connection).
        ``connect_kwargs`` are as `from_url` takes them; the engine options are taken out of it."""
        dialect = dialect_for_url(url)
        options = {
            k: connect_kwargs.pop(k)
            for k in ("nested", "pool_size", "acquire_timeout")
            if k in connect_kwargs
        }
        limit = connect_kwargs.pop("max_connections", dialect.pool_limit(url))
        connect = connector(url, connect_kwargs)
        engine = cls(connect, url=url, dialect=dialect, max_connections=limit, **options)
        if url.backend == "sqlite" and url.database == ":memory:":
            engine._reconnect = None
        return engine

    @classmethod
    def from_dbapi(cls, module: ModuleType, *args: Any, **kwargs: Any) -> Engine:
        """An engine that opens connections with ``module.connect(*args, **kwargs)``.

        ``module`` is ``sqlite3``, ``psycopg``, ``psycopg2``, ``pymysql`` or ``MySQLdb``. Engine options
        (``nested``, ``pool_size``, ``max_connections``, ``acquire_timeout``) are taken from ``kwargs``.
        """
        name = getattr(module, "__name__", repr(module))
        dialect = dialect_for_module(name)
        if dialect is None:
            raise ConfigurationError(
                f"Engine.from_dbapi() does not know the driver module {name!r}; "
                f"use one of: {', '.join(driver_modules())}, or pass a connect function to Engine()"
            )
        backend = dialect.name
        options = {
            k: kwargs.pop(k)
            for k in ("nested", "pool_size", "max_connections", "acquire_timeout")
            if k in kwargs
        }
        memory = False
        if backend == "sqlite":
            # Pooled connections move between threads (one at a time); sqlite3 refuses that unless told.
            kwargs.setdefault("check_same_thread", False)
            memory = bool(args and args[0] == ":memory:") or kwargs.get("database") == ":memory:"
            if memory:
                options.setdefault("max_connections", 1)
        engine = cls(lambda: module.connect(*args, **kwargs), dialect=dialect, **options)
        if memory:
            engine._reconnect = None
        return engine

    # --------------------------------------------------------------------------------------- facts
    @property
    def dialect(self) -> Dialect:
        """The backend's dialect (known after the first connection for engines built from a function)."""
        if self._dialect is None:
            with self.session():
                pass
        assert self._dialect is not None
        return self._dialect

    @property
    def target(self) -> str:
        """What this engine connects to, safe to print (the password is masked)."""
        if self.url is not None:
            return str(self.url)
        return getattr(self._connect, "__qualname__", repr(self._connect))

    def __repr__(self) -> str:
        return f"<Engine {self.target} nested={self.nested}>"

    # ---------------------------------------------------------------------------------------- pool
    def _acquire(self) -> tuple[DBAPIConnection, Dialect]:
        deadline = None
        with self._lock:
            while True:
                if self._idle:
                    connection = self._idle.pop()
                    assert self._dialect is not None
                    if self._dialect.is_alive(connection):  # a local flag, no round trip
                        return connection, self._dialect
                    self._open -= 1  # closed while idle: discard it and look again
                    _close_quietly(connection)
                    continue
                if self.max_connections is None or self._open < self.max_connections:
                    self._open += 1
                    break
                if find_session(Session, self) is not None:
                    # Waiting would wait for ourselves: this thread or task holds what we wait for.
                    raise ConnectionBusyError(
                        f"all {self.max_connections} connection(s) of {self.target} are held, one by a session "
                        "open in this thread or task; use that session (engine.session() returns it) instead of "
                        "opening another, or raise max_connections"
                    )
                deadline = deadline or time.monotonic() + self.acquire_timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConnectionBusyError(
                        f"waited {self.acquire_timeout:g}s for a connection of {self.target}: all "
                        f"{self.max_connections} are in use by other threads; close sessions sooner, raise "
                        "max_connections, or (for sqlite:///:memory:) share one session"
                    )
                self._lock.wait(remaining)
        try:
            connection = self._open_connection()
        except BaseException:
            with self._lock:
                self._open -= 1
                self._lock.notify()
            raise
        assert self._dialect is not None
        return connection, self._dialect

    def _open_connection(self) -> DBAPIConnection:
        try:
            connection = self._connect()
        except TxScopeError:
            raise
        except Exception as exc:
            # Chained, the driver's error would bring its frames into tracebacks, and pytest prints their
            # arguments: the password among them. Its class and message are in ours, and it is ``cause``.
            if type(exc).__name__ in ("OperationalError", "InterfaceError", "ConnectionError", "OSError"):
                raise BackendUnavailableError(self.target, exc) from None
            if self.url is not None:  # our own connect function: the driver refused what the URL asks
                raise ConfigurationError(
                    f"the driver refused the connection options of {self.target}: {type(exc).__name__}: {exc}; "
                    "check the options in the URL's query string and the keyword arguments of Engine.from_url()"
                ) from None
            raise
        dialect = self._dialect
        if dialect is None:
            dialect = self._dialect = dialect_for_connection(connection)
        if self.url is None:
            dialect.take_control(connection)  # a connection we did not configure: make it autocommit
        return connection

    def _release(self, connection: DBAPIConnection) -> None:
        """Take a connection back: rolled back first, so nothing uncommitted reaches the next user."""
        assert self._dialect is not None
        keep = self._dialect.is_alive(connection)  # a dead connection never goes back to the pool
        if keep:
            try:
                self._dialect.reset(connection)
            except Exception:
                keep = False
        with self._lock:
            if keep and len(self._idle) < self.pool_size:
                self._idle.append(connection)
                self._lock.notify()
                return
            self._open -= 1
            self._lock.notify()
        _close_quietly(connection)

    def _replace(self, dead: DBAPIConnection) -> DBAPIConnection:
        """A new connection in place of ``dead``, which is closed; it keeps its place in the count of open
        connections. If the new one cannot be opened, ``dead`` stays with its session, which gives it back."""
        _close_quietly(dead)
        return self._open_connection()

    def dispose(self) -> None:
        """Close every idle connection. Connections in use stay open and return to the pool when their
        sessions close; the engine remains usable and opens new connections as needed."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._lock.notify_all()
        for connection in idle:
            _close_quietly(connection)

    # ------------------------------------------------------------------------------------ sessions
    @property
    def pinned(self) -> bool:
        """True while a sandbox (or a blocker) holds this engine: its sessions go where the sandbox says."""
        return self._pin is not None

    @property
    def pinned_to(self) -> SessionProvider | None:
        """What pins the engine now (a sandbox, the plugin's blocker), or None."""
        return self._pin

    def pin(self, provider: SessionProvider | None) -> SessionProvider | None:
        """Send this engine's new sessions to ``provider`` (None: back to the pool) and return what pinned it
        before, to give back with another ``pin()`` call when ``provider`` is done (pins nest)."""
        previous, self._pin = self._pin, provider
        return previous

    def _new_session(self) -> Session:
        pin = self._pin
        if pin is not None:
            return pin.guest_session(self)
        return self.pooled_session()

    def pooled_session(self) -> Session:
        """A session on a connection of the pool, whatever pins the engine (a sandbox takes its own this way).

        It is not made current; close it to give the connection back.
        """
        connection, dialect = self._acquire()
        channel = Channel(connection, dialect)
        channel.reconnect = self._reconnect
        channel.target = self._target
        channel.facts = self.facts
        return Session.on_channel(channel, self, self._policy, release=self._release)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A context manager yielding this engine's current session in this thread or task, or a new one.

        A new session is current for the block and closed at its end (what is still open is rolled back and
        the connection goes back to the pool); a current one is yielded as it is and left open.
        """
        session = find_session(Session, self)
        if session is not None:
            yield session
            return
        session = self._new_session()
        try:
            token = push_scope(session, None)
            try:
                yield session
            finally:
                reset_scope(token)
        finally:
            session.close()

    def begin(self) -> Transaction:
        """A transaction in the current session of this engine, or the root one of a new session.

        A new session is closed (its connection returned to the pool) when that transaction ends, by
        ``commit()``, ``rollback()`` or the end of its ``with`` block.
        """
        session = find_session(Session, self)
        if session is not None:
            return session.begin()
        session = self._new_session()
        try:
            tx = session.begin()
        except BaseException:
            session.close()
            raise
        tx.owns_session = True
        return tx

    def __enter__(self) -> Transaction:
        return self.begin().enter(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        exit_block_opened_by(self, exc)

    def executescript(self, script: str, *, source: str = "<script>") -> None:
        """Run an SQL script (statements separated by ``;``) on a connection of its own, outside any
        transaction of the current context.

        On SQLite and PostgreSQL the whole script runs in one transaction: if a statement fails, nothing of the
        script is kept. MySQL/MariaDB commit DDL implicitly, so there each statement is committed as it runs.
        A failure raises `ScriptError` naming ``source``, the line, the statement and what was kept.
        """
        session = self._new_session()
        try:
            run_script(session, script, source)
        finally:
            session.close()


def is_seconds(value: object) -> bool:
    """A wait a lock can make: a finite number of seconds, >= 0 (a bool is not one; inf would overflow)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value <= threading.TIMEOUT_MAX
    )


def _close_quietly(connection: DBAPIConnection) -> None:
    # Closing a broken connection may fail; it is being discarded anyway.
    with contextlib.suppress(Exception):
        connection.close()


def _check_options(
    connect: object, nested: str, pool_size: object, max_connections: object, acquire_timeout: object
) -> None:
    """Refuse engine options that cannot work, naming the valid ones."""
    if not callable(connect):
        raise ConfigurationError(
            f"Engine() needs a function that returns a new DB-API connection, not {type(connect).__name__}; "
            "for a URL use Engine.from_url(url), for a driver module Engine.from_dbapi(module, ...)"
        )
    if nested not in _NESTED_MODES:
        raise ConfigurationError(f"nested={nested!r} is not valid; use one of: {', '.join(_NESTED_MODES)}")
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 0:
        raise ConfigurationError(f"pool_size={pool_size!r} is not valid; use a whole number >= 0")
    if max_connections is not None and (
        isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1
    ):
        raise ConfigurationError(f"max_connections={max_connections!r} is not valid; use None or >= 1")
    if not is_seconds(acquire_timeout):
        raise ConfigurationError(
            f"acquire_timeout={acquire_timeout!r} is not valid; use a number of seconds >= 0 (and finite)"
        )
