"""The contract every backend fulfils: how to connect, control transactions, and run statements."""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError, MissingDriverError
from ..url import DatabaseURL

__all__ = ["CONSTRAINTS", "SCHEMA", "STATE", "DBAPIConnection", "DBAPICursor", "Dialect"]

# DB-API 2 objects are duck-typed across drivers; these aliases say which role a value plays.
DBAPIConnection = Any
DBAPICursor = Any

# What a statement may change, as flags a dialect's statement watch returns (see `Dialect.statement_watch`).
SCHEMA = 1
"""The schema: what a driver's prepared statements refer to."""
STATE = 2
"""Session state that a rollback leaves in place (a MariaDB variable, an advisory lock, an SQLite PRAGMA)."""
CONSTRAINTS = 4
"""Deferrable constraints or their modes (``DEFERRABLE``, ``SET CONSTRAINTS``)."""


class Dialect(ABC):
    """How pytest-txscope drives one kind of database through its DB-API driver.

    Connections are always put in the driver's autocommit mode, and transactions are controlled by sending
    ``BEGIN``, ``COMMIT``, ``ROLLBACK`` and savepoint statements: that way the driver never opens or ends a
    transaction on its own, and the core always knows the state of the server.
    """

    name: str
    """Short name of the backend used in URLs, options and test ids: ``sqlite``, ``postgresql``, ``mysql``."""
    display: str
    """Name of the backend shown to people."""
    driver: str
    """Import name of the DB-API driver module."""
    url_driver: str
    """The driver's name after the ``+`` of a URL scheme (``psycopg2`` in ``postgresql+psycopg2://``)."""
    driver_display: str
    """The driver's name shown to people (``psycopg 3``, ``mysqlclient``)."""
    extra: str
    """The extra of pytest-txscope that installs the driver."""
    install_hint: str = ""
    """What else installing the driver takes, for the error that says it is missing."""
    batches_control: bool = False
    """True when ``BEGIN`` and savepoints can be sent as one text in one round trip."""
    combines_control: bool = False
    """True when queued control statements can ride in the round trip of the next statement
    (`execute_after`)."""
    ddl_commits: bool = False
    """True when DDL silently commits the open transaction (MySQL, MariaDB)."""
    aborts_on_error: bool = False
    """True when one failed statement aborts the whole transaction until a rollback (PostgreSQL)."""

    def load_driver(self) -> ModuleType:
        """Import the driver, or raise `MissingDriverError` naming the extra to install."""
        try:
            return importlib.import_module(self.driver)
        except ImportError:
            raise self.missing() from None

    def missing(self) -> MissingDriverError:
        """The error saying that the driver is not installed, and how to install it."""
        return MissingDriverError(self.display, self.driver, self.extra, self.install_hint)

    @abstractmethod
    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        """Return a zero-argument function that opens a new connection, already in autocommit mode."""

    def connect_async(
        self, url: DatabaseURL, kwargs: dict[str, Any]
    ) -> Callable[[], Awaitable[DBAPIConnection]]:
        """Return an async function that opens a new connection on the running event loop, for the asyncio API.

        The connection is the backend's asyncio driver (aiosqlite, psycopg's ``AsyncConnection``, asyncpg,
        aiomysql) behind a sync adapter with the DB-API surface this dialect drives; each of its calls hands the
        driver's coroutine to a `pytest_txscope.bridge.LoopRunner` of that loop. Dialects without an asyncio
        driver raise `ConfigurationError`.
        """
        raise ConfigurationError(
            f"{self.display} through {self.driver_display} has no asyncio driver in pytest-txscope; use the "
            "synchronous Engine for it, or an asyncio driver's URL"
        )

    @staticmethod
    def server_params(url: DatabaseURL, database_key: str) -> dict[str, Any]:
        """Host, port, user, password and database from ``url``, as a driver's ``connect()`` keywords."""
        given = {
            "host": url.host,
            "port": url.port,
            "user": url.user,
            "password": url.password,
            database_key: url.database or None,
        }
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        params.update(url.options)
        return params

    def pool_limit(self, url: DatabaseURL) -> int | None:
        """The most connections an engine for ``url`` may open at once (None: no limit)."""
        return None

    @abstractmethod
    def owns(self, connection: object) -> bool:
        """Whether ``connection`` is one of this driver's connection objects."""

    @abstractmethod
    def take_control(self, connection: DBAPIConnection) -> Callable[[], None]:
        """Put a connection someone else opened in autocommit mode; return a function that restores it.

        Raises `TransactionStateError` if the connection is inside a transaction (the work in it would
        otherwise be committed or lost without the owner knowing).
        """

    @abstractmethod
    def in_transaction(self, connection: DBAPIConnection) -> bool:
        """Whether the server holds an open transaction on ``connection`` (no round trip)."""

    def error_ends_transaction(self, error: BaseException) -> bool:
        """Whether the server rolled back the whole transaction when this error happened."""
        return False

    def is_integrity_error(self, error: BaseException) -> bool:
        """Whether ``error`` is a violated constraint (DB-API's ``IntegrityError``)."""
        return any(cls.__name__ == "IntegrityError" for cls in type(error).__mro__)

    def transaction_failed(self, connection: DBAPIConnection) -> bool:
        """Whether an error aborted the open transaction, so that it can only be rolled back (PostgreSQL)."""
        return False

    def is_alive(self, connection: DBAPIConnection) -> bool:
        """Whether the driver still takes ``connection`` for usable (a local flag: no round trip).

        False once the driver saw the connection break or it was closed; a connection the server dropped while
        it sat idle still looks alive until it is used (see `is_disconnect`).
        """
        return True

    def is_disconnect(self, error: BaseException, connection: DBAPIConnection) -> bool:
        """Whether ``error``, raised by a statement on ``connection``, means that the connection is gone."""
        return not self.is_alive(connection)

    def statement_runner(self, connection: DBAPIConnection) -> tuple[Callable[[str, Any], DBAPICursor], Any]:
        """A callable that runs one statement on ``connection``, and the parameters to pass for "none".

        The core calls it for every statement, so drivers whose connection has an ``execute`` shortcut hand
        that out directly instead of a Python function around it.
        """
        return functools.partial(self.execute, connection), None

    def transaction_probe(self, connection: DBAPIConnection) -> Callable[[], bool]:
        """A callable telling whether the server holds an open transaction on ``connection`` (no round trip)."""
        return functools.partial(self.in_transaction, connection)

    def execute(self, connection: DBAPIConnection, sql: str, params: Any) -> DBAPICursor:
        """Run one statement in the driver's own parameter style and return the cursor."""
        cursor = connection.cursor()
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        return cursor

    def executemany(self, connection: DBAPIConnection, sql: str, seq: Sequence[Any]) -> DBAPICursor:
        """Run one statement once per parameter set and return the cursor."""
        cursor = connection.cursor()
        cursor.executemany(sql, seq)
        return cursor

    def prepare(self, sql: str, params: Any) -> tuple[str, Any]:
        """Turn portable SQL (``:name`` / ``?`` placeholders) into the driver's style."""
        return sql, params

    def prepare_many(self, sql: str, seq: Sequence[Any]) -> tuple[str, Sequence[Any]]:
        """Like `prepare` for ``executemany``: the first parameter set decides the style."""
        if not seq:
            return sql, seq
        converted, _ = self.prepare(sql, seq[0])
        for params in seq[1:]:
            self.prepare(sql, params)  # validates every row against the placeholders
        return converted, seq

    def run_control(self, connection: DBAPIConnection, statements: Sequence[str]) -> None:
        """Send transaction-control statements, in one round trip where the driver allows it."""
        if self.batches_control and len(statements) > 1:
            self.execute(connection, "; ".join(statements), None).close()
            return
        for statement in statements:
            self.execute(connection, statement, None).close()

    def execute_after(
        self, connection: DBAPIConnection, statements: Sequence[str], sql: str, params: Any, keep_cache: bool
    ) -> DBAPICursor | None:
        """Send control ``statements``, then ``sql`` (the driver's style), in one round trip; return the cursor
        of ``sql``. None, with nothing sent, where the driver cannot do it now: the caller sends them apart.
        ``keep_cache`` as for `run_control_keeping_cache`. A failure raises the driver's error, whichever part
        failed: `failed_in_control` tells which. Only dialects with `combines_control` are asked."""
        return None

    def failed_in_control(self, error: BaseException, connection: DBAPIConnection) -> bool:
        """Whether ``error``, raised by `execute_after`, came from the control statements rather than from the
        statement after them (a lost connection counts as the control's: it is what failed first)."""
        return True

    def run_control_keeping_cache(self, connection: DBAPIConnection, statements: Sequence[str]) -> None:
        """Like `run_control`, when no statement since the transaction began may have changed the schema.

        psycopg drops its prepared-statement cache on every rollback it sees, because a rolled-back
        transaction may have dropped or recreated what the statements refer to. When nothing of the kind
        ran, a driver may keep the cache (see `PostgreSQLDialect`); by default this is `run_control`.
        """
        self.run_control(connection, statements)

    def statement_watch(self) -> Callable[[str], int] | None:
        """A test run on every statement the code sends, before it is sent: the flags (`SCHEMA`, `STATE`,
        `CONSTRAINTS`) of what it may change, 0 for none; None when nothing is watched. It must be cheap: a
        statement on SQLite costs a few microseconds."""
        return None

    def undo_state(self, connection: DBAPIConnection, sql: str) -> list[str] | None:
        """Statements that undo what ``sql`` (flagged `STATE`) is about to change in the session and a
        rollback leaves in place, worked out before it runs (reading current values where needed): [] when
        nothing needs undoing, None when statements cannot undo it (the connection is then not reused)."""
        return None

    def deferred_checks(self) -> tuple[str, list[str]] | None:
        """Where constraints can be deferred to COMMIT: a query whose one value says whether the database has
        deferrable constraints, and the statements that check them now and leave their modes as they were
        (sent before an application's top-level savepoint is released). None where nothing is deferred."""
        return None

    def begin_statement(self) -> str:
        """The statement that opens a transaction."""
        return "BEGIN"

    def savepoint(self, name: str) -> str:
        """The statement that sets savepoint ``name``."""
        return f"SAVEPOINT {name}"

    def release(self, name: str) -> str:
        """The statement that releases savepoint ``name``."""
        return f"RELEASE SAVEPOINT {name}"

    def rollback_to(self, name: str) -> str:
        """The statement that rolls back to savepoint ``name``."""
        return f"ROLLBACK TO SAVEPOINT {name}"

    def reset(self, connection: DBAPIConnection) -> None:
        """Roll back whatever is open, so the connection can go back to the pool clean."""
        if self.in_transaction(connection):
            self.execute(connection, "ROLLBACK", None).close()

    def session_id(self, connection: DBAPIConnection) -> int | None:
        """The server's id for the session of ``connection`` (what ``pg_terminate_backend`` or ``KILL`` take),
        readable while another thread runs a statement on it; None for an embedded database."""
        return None

    def string_literal(self, connection: DBAPIConnection, text: str) -> str:
        """``text`` as an SQL string literal, quoted as ``connection`` needs (for statements that take no
        parameters, such as ``COMMENT ON DATABASE``). This default doubles quotes, which standard SQL needs."""
        return "'" + text.replace("'", "''") + "'"

    def split_script(self, script: str) -> list[str]:
        """Split a script into statements for `Engine.executescript`."""
        from ..sql import split_statements

        return split_statements(script)

    def describe(self, connection: DBAPIConnection) -> str:
        """A short, password-free description of a connection for messages and reprs."""
        return f"{self.display} connection"


def cursor_runner(connection: DBAPIConnection) -> Callable[[str, Any], DBAPICursor]:
    """Runs one statement on a new cursor of ``connection``, for drivers with no ``execute`` shortcut on the
    connection whose ``cursor.execute(sql, None)`` sends the text as it is (no %-formatting)."""
    cursor = connection.cursor

    def run(sql: str, params: Any) -> DBAPICursor:
        cur = cursor()
        cur.execute(sql, params)
        return cur

    return run
