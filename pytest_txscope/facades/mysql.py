"""The MySQL drivers' faces of the sandbox connection (PyMySQL and mysqlclient): ``cursor()`` with the cursor
class (``connect(cursorclass=)`` honoured), ``autocommit()`` mode, ``begin()``, ``ping()`` that never
reconnects, ``select_db`` and ``change_user`` refused, ``query()`` run inside the sandbox, and the driver's
errors."""

from __future__ import annotations

from typing import Any

from ..dbapi import SandboxConnection, SandboxCursor
from ..errors import SandboxRefusedError

__all__ = ["MySQLdbConnection", "PyMySQLConnection"]


class _MySQLConnection(SandboxConnection):
    """What PyMySQL's and mysqlclient's connections share."""

    isolation_query = (
        "SHOW SESSION VARIABLES WHERE Variable_name IN ('transaction_isolation', 'tx_isolation')"
    )

    def _cursor_of(self, cursorclass: Any) -> SandboxCursor:
        self._check()
        chosen = cursorclass or self.connect_kwargs.get("cursorclass")

        def make(raw: Any) -> Any:
            return raw.cursor(chosen) if chosen is not None else raw.cursor()

        return SandboxCursor(self, make=make)

    @property
    def open(self) -> bool:
        """Whether the connection is open (the drivers' flag)."""
        return not self.closed and bool(self.session.connection.open)

    def ping(self, reconnect: bool = False) -> None:
        """Check that the server answers; never reconnects (a new connection would silently drop the sandbox's
        transaction): a dead connection raises the driver's error."""
        self._check()
        raw = self.session.connection
        if self.session.dialect.driver == "pymysql":
            raw.ping(reconnect=False)
        else:
            raw.ping()

    def query(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        """The drivers' low-level ``query()``, run inside the sandbox's transaction as a cursor's would."""
        channel = self.statement_channel()
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        self.wrote = True
        return self.send(channel, text, lambda: channel.connection.query(sql, *args, **kwargs))

    def select_db(self, db: Any) -> None:
        """Refused for another database (the pooled connection would keep it for later tests); accepted for
        the connection's own."""
        self._check()
        wanted = db.decode() if isinstance(db, bytes) else str(db)
        cursor = self.cursor()
        cursor.execute("SELECT DATABASE()")
        current = cursor.fetchall()[0]
        cursor.close()
        current_name = current["DATABASE()"] if isinstance(current, dict) else current[0]
        if wanted != current_name:
            raise SandboxRefusedError(
                f"select_db({wanted!r})",
                f"the connection would leave {current_name!r} for later tests too; use qualified names "
                f"({wanted}.table) instead",
            )

    def change_user(self, *args: Any, **kwargs: Any) -> None:
        """Refused: changing the user resets the session, which ends the sandbox's transaction."""
        raise SandboxRefusedError("change_user()", "it resets the session and ends its transaction")


class PyMySQLConnection(_MySQLConnection):
    """The sandbox connection as PyMySQL's ``Connection``."""

    closed_error_spec = ("pymysql.err", "InterfaceError", "the connection is closed")

    def cursor(self, cursor: Any = None) -> SandboxCursor:
        """A cursor of class ``cursor`` (default: ``connect(cursorclass=)``, else PyMySQL's)."""
        return self._cursor_of(cursor)


class MySQLdbConnection(_MySQLConnection):
    """The sandbox connection as mysqlclient's ``Connection`` (what mysqlclient raises on a closed one:
    ``OperationalError``)."""

    closed_error_spec = ("MySQLdb", "OperationalError", "the connection is closed")

    def cursor(self, cursorclass: Any = None) -> SandboxCursor:
        """A cursor of class ``cursorclass`` (default: ``connect(cursorclass=)``, else mysqlclient's)."""
        return self._cursor_of(cursorclass)
