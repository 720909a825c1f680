"""MySQL and MariaDB: what every driver shares (`MySQLBackend`), and PyMySQL (`MySQLDialect`).

These servers commit implicitly before and after most DDL. The server reports whether a transaction is open in
the status flags of every reply, which PyMySQL keeps in ``Connection.server_status``; the core reads that flag
after each statement (no extra round trip) and stops with `ImplicitCommitError` when a statement ended
the transaction, instead of going on in autocommit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..bridge import LoopRunner
from ..errors import MissingDriverError, TransactionStateError
from ..sql import PyformatConverter, split_statements
from ..url import DatabaseURL
from .adapters import AiomysqlAdapter
from .base import DBAPIConnection, Dialect
from .mysql_state import undo_mysql_state, watch_mysql

__all__ = ["MySQLBackend", "MySQLDialect"]

_IN_TRANS = 1  # pymysql.constants.SERVER_STATUS.SERVER_STATUS_IN_TRANS
MULTI_STATEMENTS = 1 << 16  # pymysql.constants.CLIENT.MULTI_STATEMENTS, MySQLdb.constants.CLIENT
_ER_LOCK_DEADLOCK = 1213
# Server gone away, lost during a query, lost at handshake; MariaDB's "connection was killed"; MySQL 8's
# "disconnected for inactivity".
DISCONNECTS = frozenset((2006, 2013, 2055, 1927, 4031))


class MySQLBackend(Dialect):
    """What MySQL and MariaDB are, whichever driver reaches them: the SQL and its quirks (DDL commits,
    backslash escapes, ``#`` comments), the error codes, and the client API that PyMySQL and mysqlclient share
    (``autocommit()``, ``get_autocommit()``, ``client_flag``, ``Cursor.nextset()``). A driver's dialect adds
    how to connect and how to tell whether the server holds a transaction."""

    name = "mysql"
    display = "MySQL/MariaDB"
    ddl_commits = True

    def __init__(self) -> None:
        self._converter = PyformatConverter(backslash_escapes=True, hash_comments=True)
        self.prepare = self._converter.convert  # type: ignore[method-assign]  # the bound converter is the hot path

    def take_control(self, connection: DBAPIConnection) -> Callable[[], None]:
        if self.in_transaction(connection):
            raise TransactionStateError(
                f"this {self.driver_display} connection has an open transaction; commit or roll it back before "
                "wrapping it in a Session, so that its work is neither committed nor lost without you knowing"
            )
        previous = connection.get_autocommit()
        connection.autocommit(True)

        def restore() -> None:
            if self.is_alive(connection) and not self.in_transaction(connection):
                connection.autocommit(previous)

        return restore

    def reset(self, connection: DBAPIConnection) -> None:
        super().reset(connection)
        if not connection.get_autocommit():  # a local flag: switched off behind the library's back
            connection.autocommit(True)

    def error_ends_transaction(self, error: BaseException) -> bool:
        # A deadlock rolls back the whole transaction, but an error reply carries no status flags, so
        # server_status still says "in transaction" until the next successful statement.
        args: tuple[object, ...] = error.args
        return len(args) > 0 and args[0] == _ER_LOCK_DEADLOCK

    def is_disconnect(self, error: BaseException, connection: DBAPIConnection) -> bool:
        args: tuple[object, ...] = error.args
        return not self.is_alive(connection) or (len(args) > 0 and args[0] in DISCONNECTS)

    def run_control(self, connection: DBAPIConnection, statements: Sequence[str]) -> None:
        if len(statements) > 1 and connection.client_flag & MULTI_STATEMENTS:
            cursor = connection.cursor()
            cursor.execute("; ".join(statements))
            while cursor.nextset():
                pass
            cursor.close()
            return
        for statement in statements:
            self.execute(connection, statement, None).close()

    def split_script(self, script: str) -> list[str]:
        return split_statements(script, backslash_escapes=True, hash_comments=True, mysql_client=True)

    def statement_watch(self) -> Callable[[str], int] | None:
        return watch_mysql

    def undo_state(self, connection: DBAPIConnection, sql: str) -> list[str] | None:
        def read(query: str) -> tuple[Any, ...]:
            cursor = self.execute(connection, query, None)
            row: tuple[Any, ...] = cursor.fetchone()
            cursor.close()
            return row

        return undo_mysql_state(sql, read, lambda text: self.string_literal(connection, text))


class MySQLDialect(MySQLBackend):
    """MySQL and MariaDB through PyMySQL."""

    driver = "pymysql"
    url_driver = "pymysql"
    driver_display = "PyMySQL"
    extra = "mysql"

    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        pymysql = self.load_driver()
        params: dict[str, Any] = {"charset": "utf8mb4", **self.server_params(url, "database"), **kwargs}
        params["autocommit"] = True
        params["client_flag"] = int(params.get("client_flag", 0)) | MULTI_STATEMENTS

        def connect() -> DBAPIConnection:
            return pymysql.connect(**params)

        return connect

    def connect_async(
        self, url: DatabaseURL, kwargs: dict[str, Any]
    ) -> Callable[[], Awaitable[DBAPIConnection]]:
        try:
            import aiomysql
        except ImportError:
            raise MissingDriverError(self.display, "aiomysql", "aiomysql") from None
        params: dict[str, Any] = {"charset": "utf8mb4", **self.server_params(url, "db"), **kwargs}
        params["autocommit"] = True
        params["client_flag"] = int(params.get("client_flag", 0)) | MULTI_STATEMENTS
        what = f"aiomysql connection to {url}"

        async def connect() -> DBAPIConnection:
            raw = await aiomysql.connect(**params)
            return AiomysqlAdapter(raw, LoopRunner(asyncio.get_running_loop(), what))

        return connect

    def owns(self, connection: object) -> bool:
        return type(connection).__module__.startswith("pymysql.") or isinstance(connection, AiomysqlAdapter)

    def in_transaction(self, connection: DBAPIConnection) -> bool:
        return bool(connection.server_status & _IN_TRANS)

    def is_alive(self, connection: DBAPIConnection) -> bool:
        return bool(connection.open)

    def string_literal(self, connection: DBAPIConnection, text: str) -> str:
        return str(connection.escape(text))

    def session_id(self, connection: DBAPIConnection) -> int | None:
        return int(connection.thread_id())  # PyMySQL keeps it from the handshake

    def describe(self, connection: DBAPIConnection) -> str:
        db = connection.db.decode() if isinstance(connection.db, bytes) else connection.db
        return f"MySQL/MariaDB connection to {connection.host}:{connection.port}/{db} as {connection.user!r}"
