"""PostgreSQL: what every driver shares (`PostgreSQLBackend`), and psycopg 3 (`PostgreSQLDialect`).

Connections run in the driver's autocommit mode and we send ``BEGIN`` ourselves: in its default mode a driver
opens a transaction before the first statement by itself, and ``with connect() as conn:`` commits on exit, both
of which would take the transaction out of the core's hands.
"""

from __future__ import annotations

import asyncio
import re
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..bridge import LoopRunner
from ..errors import TransactionStateError
from ..sql import PyformatConverter
from ..url import DatabaseURL
from .adapters import PsycopgAsyncAdapter
from .base import CONSTRAINTS, SCHEMA, STATE, DBAPIConnection, DBAPICursor, Dialect

__all__ = ["PostgreSQLBackend", "PostgreSQLDialect"]

# libpq's PQtransactionStatus values, which psycopg 3 and psycopg2 both report.
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE, psycopg2.extensions.TRANSACTION_STATUS_IDLE
_INERROR = 3  # psycopg.pq.TransactionStatus.INERROR, psycopg2.extensions.TRANSACTION_STATUS_INERROR
_SHUTDOWN = ("57P01", "57P02", "57P03")  # admin_shutdown, crash_shutdown, cannot_connect_now
_COMMAND_OK = 1  # psycopg.pq.ExecStatus.COMMAND_OK
_FATAL_ERROR = 7  # psycopg.pq.ExecStatus.FATAL_ERROR
_SQLSTATE = ord("C")  # psycopg.pq.DiagnosticField.SQLSTATE
# What only the control statements sent ahead of a statement fail with (see `failed_in_control`): the
# transaction ended behind the library's back (25P01), or was aborted before the send (25P02: the first control
# statement meets it before the statement can).
_CONTROL_SQLSTATES = ("25P01", "25P02")

# Statements that cannot change what a prepared statement refers to. Anything else (DDL, DO, CALL, a leading
# comment...) counts as a possible schema change, which makes the next rollback drop psycopg's cache as usual.
_DATA_ONLY = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE", "MERGE", "COPY", "SHOW", "SET",
    "RESET", "EXPLAIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "LOCK", "FETCH", "MOVE",
    "DECLARE", "CLOSE", "NOTIFY", "LISTEN", "UNLISTEN",
)  # fmt: skip


# What a rollback leaves in place (session advisory locks), or what decides whether commits must check deferred
# constraints. SET, temporary tables, LISTEN and cursors are undone by the rollback that ends each test. Looked
# for as substrings first: an unanchored regular expression costs microseconds on every statement.
_DEFERRABLE = re.compile(r"\bDEFERRABLE\b", re.IGNORECASE)
_SET_CONSTRAINTS = re.compile(r"\bSET\s+CONSTRAINTS\b", re.IGNORECASE)
_UNLOCK_ALL = "SELECT pg_advisory_unlock_all()"
_HAS_DEFERRABLE = "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE condeferrable)"
# SET CONSTRAINTS is undone with the savepoint around it: the constraints' modes are back as they were, each
# INITIALLY IMMEDIATE one immediate again (SET CONSTRAINTS ALL DEFERRED would defer those too).
_CHECK_DEFERRED = [
    "SAVEPOINT txscope_check",
    "SET CONSTRAINTS ALL IMMEDIATE",
    "ROLLBACK TO SAVEPOINT txscope_check",
    "RELEASE SAVEPOINT txscope_check",
]


def _watch(sql: str) -> int:
    flags = 0 if sql.lstrip()[:9].upper().startswith(_DATA_ONLY) else SCHEMA
    upper = sql.upper()
    if "ADVISORY_LOCK" in upper:
        flags |= STATE
    if ("DEFERRABLE" in upper and _DEFERRABLE.search(sql)) or (
        "CONSTRAINTS" in upper and _SET_CONSTRAINTS.search(sql)
    ):
        flags |= CONSTRAINTS
    return flags


class PostgreSQLBackend(Dialect):
    """What PostgreSQL is, whichever driver reaches it: the SQL, the error codes, and the transaction states
    libpq reports. A driver's dialect adds how to connect and how to read those states from its connection."""

    name = "postgresql"
    display = "PostgreSQL"
    batches_control = True
    combines_control = True
    aborts_on_error = True

    def __init__(self) -> None:
        self._converter = PyformatConverter(backslash_escapes=False, hash_comments=False)
        self.prepare = self._converter.convert  # type: ignore[method-assign]  # the bound converter is the hot path

    @abstractmethod
    def transaction_status(self, connection: DBAPIConnection) -> int:
        """libpq's transaction status of ``connection`` (IDLE 0, ACTIVE 1, INTRANS 2, INERROR 3, UNKNOWN 4)."""

    @abstractmethod
    def sqlstate(self, error: BaseException) -> str:
        """The SQLSTATE of a driver error, or "" when it has none (a client-side error, a lost connection)."""

    def server_connect_params(self, url: DatabaseURL, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``connect()`` keywords for ``url``: libpq's, which both drivers pass on."""
        params: dict[str, Any] = {**self.server_params(url, "dbname"), **kwargs}
        # libpq waits for an unreachable host as long as the OS does (minutes); PyMySQL's default is 10 s too.
        params.setdefault("connect_timeout", 10)
        return params

    def take_control(self, connection: DBAPIConnection) -> Callable[[], None]:
        if self.transaction_status(connection) != _IDLE:
            raise TransactionStateError(
                f"this {self.driver_display} connection has an open transaction; commit or roll it back before "
                "wrapping it in a Session, so that its work is neither committed nor lost without you knowing"
            )
        previous = connection.autocommit
        connection.autocommit = True

        def restore() -> None:
            if self.transaction_status(connection) == _IDLE:
                connection.autocommit = previous

        return restore

    def in_transaction(self, connection: DBAPIConnection) -> bool:
        return self.transaction_status(connection) != _IDLE

    def reset(self, connection: DBAPIConnection) -> None:
        super().reset(connection)
        if not connection.autocommit:
            # Switched off behind the library's back (psycopg2 accepts set_session(autocommit=False) and
            # set_isolation_level() while the library's BEGIN is open, as it did not send it): put back before
            # the connection is pooled, or the driver would open and end transactions by itself.
            connection.rollback()
            connection.autocommit = True

    def transaction_failed(self, connection: DBAPIConnection) -> bool:
        return self.transaction_status(connection) == _INERROR

    def is_alive(self, connection: DBAPIConnection) -> bool:
        return not connection.closed

    def is_disconnect(self, error: BaseException, connection: DBAPIConnection) -> bool:
        # Class 08 is "connection exception"; 57P01-03 are the server shutting the session down
        # (pg_terminate_backend, a fast shutdown, a crash): the connection is closed right after.
        sqlstate = self.sqlstate(error)
        return bool(connection.closed) or sqlstate.startswith("08") or sqlstate in _SHUTDOWN

    def failed_in_control(self, error: BaseException, connection: DBAPIConnection) -> bool:
        # A savepoint error (class 3B) is the control's when it names one of the library's savepoints: a
        # statement names them only if the code sends savepoint SQL with the library's names.
        if self.is_disconnect(error, connection):
            return True
        sqlstate = self.sqlstate(error)
        return sqlstate in _CONTROL_SQLSTATES or (sqlstate.startswith("3B") and "txscope_" in str(error))

    def session_id(self, connection: DBAPIConnection) -> int | None:
        return int(connection.info.backend_pid)  # read from libpq: no lock, no round trip

    def split_script(self, script: str) -> list[str]:
        from ..sql import split_statements

        return split_statements(script)

    def statement_watch(self) -> Callable[[str], int] | None:
        return _watch

    def undo_state(self, connection: DBAPIConnection, sql: str) -> list[str] | None:
        return [_UNLOCK_ALL]  # the only state watched: session advisory locks

    def deferred_checks(self) -> tuple[str, list[str]] | None:
        return _HAS_DEFERRABLE, _CHECK_DEFERRED

    def describe(self, connection: DBAPIConnection) -> str:
        info = connection.info
        return f"PostgreSQL connection to {info.host}:{info.port}/{info.dbname} as {info.user}"


class PostgreSQLDialect(PostgreSQLBackend):
    """PostgreSQL through psycopg 3."""

    driver = "psycopg"
    url_driver = "psycopg"
    driver_display = "psycopg"
    extra = "postgresql"

    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        psycopg = self.load_driver()
        params = self.server_connect_params(url, kwargs)
        params["autocommit"] = True

        def connect() -> DBAPIConnection:
            return psycopg.connect(**params)

        return connect

    def connect_async(
        self, url: DatabaseURL, kwargs: dict[str, Any]
    ) -> Callable[[], Awaitable[DBAPIConnection]]:
        psycopg = self.load_driver()
        params = self.server_connect_params(url, kwargs)
        params["autocommit"] = True
        what = f"psycopg AsyncConnection to {url}"

        async def connect() -> DBAPIConnection:
            raw = await psycopg.AsyncConnection.connect(**params)
            return PsycopgAsyncAdapter(raw, LoopRunner(asyncio.get_running_loop(), what))

        return connect

    def owns(self, connection: object) -> bool:
        if isinstance(connection, PsycopgAsyncAdapter):
            return True
        return any(cls.__module__.startswith("psycopg.") for cls in type(connection).__mro__) and hasattr(
            connection, "pgconn"
        )

    def transaction_status(self, connection: DBAPIConnection) -> int:
        return int(connection.info.transaction_status)

    def sqlstate(self, error: BaseException) -> str:
        return getattr(error, "sqlstate", None) or ""

    def string_literal(self, connection: DBAPIConnection, text: str) -> str:
        from psycopg import sql

        return str(sql.Literal(text).as_string(connection))

    def statement_runner(self, connection: DBAPIConnection) -> tuple[Callable[[str, Any], DBAPICursor], Any]:
        # psycopg's Connection.execute takes None for "no parameters": the text is then not scanned for %s.
        return connection.execute, None

    def transaction_probe(self, connection: DBAPIConnection) -> Callable[[], bool]:
        pgconn = connection.pgconn
        return lambda: pgconn.transaction_status != _IDLE

    def execute(self, connection: DBAPIConnection, sql: str, params: Any) -> DBAPICursor:
        if params is None:
            return connection.execute(sql)
        return connection.execute(sql, params)

    def execute_after(
        self, connection: DBAPIConnection, statements: Sequence[str], sql: str, params: Any, keep_cache: bool
    ) -> DBAPICursor | None:
        # psycopg drops its prepared statements on seeing a ROLLBACK (TO SAVEPOINT) go through its own execute:
        # after a failed statement, the control goes apart through libpq (`run_control_keeping_cache`), as the
        # app's own pipeline does (its results are psycopg's to read).
        if connection.pgconn.pipeline_status or (keep_cache and _rolls_back(statements)):
            return None
        if isinstance(connection, PsycopgAsyncAdapter):
            return connection.execute_after(statements, sql, params)
        if params is None:
            # The simple query protocol takes several statements in one text (the code's may be several too):
            # the cursor starts at the first result, so the control statements' are skipped.
            cursor = connection.execute("; ".join([*statements, sql]))
            for _ in statements:
                cursor.nextset()
            return cursor
        # With parameters psycopg sends one statement per message: a pipeline sends them all before one Sync.
        # The control is not prepared (prepare=False): it would take room in the code's prepared statements.
        with connection.pipeline():
            for statement in statements:
                connection.execute(statement, prepare=False)
            return connection.execute(sql, params)

    def run_control_keeping_cache(self, connection: DBAPIConnection, statements: Sequence[str]) -> None:
        # Sent through libpq (psycopg's public `pgconn`) rather than `execute`: psycopg deallocates all its
        # prepared statements whenever it sees a ROLLBACK, so every test would parse and plan its statements
        # afresh (MEASURED.md: the largest single cost of rollback isolation on PostgreSQL). The caller
        # guarantees no statement since BEGIN may have changed the schema, which is why psycopg clears it.
        pgconn = connection.pgconn
        result = pgconn.exec_("; ".join(statements).encode())
        if result.status != _COMMAND_OK:
            import psycopg

            if result.status == _FATAL_ERROR and result.error_field(_SQLSTATE):
                raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)
            message = pgconn.error_message.decode(errors="replace").strip()
            raise psycopg.OperationalError(message or "the connection to the server was lost")


def _rolls_back(statements: Sequence[str]) -> bool:
    return any(statement.startswith("ROLLBACK") for statement in statements)
