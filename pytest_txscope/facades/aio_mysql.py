"""aiomysql's face of the sandbox connection, over the PyMySQL face (`pytest_txscope.facades.mysql`): aiomysql is
a port of PyMySQL, with the same conversions, so the sandbox's PyMySQL connection answers as aiomysql's would.

What SQLAlchemy's aiomysql adapter and aiomysql users call: ``cursor(cursor_class)``, ``commit()``,
``rollback()``, ``begin()``, ``autocommit(value)``, ``ping()``, ``select_db()`` and ``ensure_closed()`` as
coroutines; ``close()``, ``get_autocommit()``, ``character_set_name()`` as plain calls, as aiomysql's are.
aiomysql's cursor classes become PyMySQL's buffered ones (a ``Dict`` class gives dict rows): an unbuffered
(server-side) cursor would hold the shared connection until read to the end.
"""

from __future__ import annotations

from typing import Any

from .aio_base import AsyncCursorFace, AsyncFace, in_turn
from .mysql import PyMySQLConnection

__all__ = ["AioMySQLConnection", "AioMySQLCursor"]


class AioMySQLCursor(AsyncCursorFace):
    """aiomysql's ``Cursor`` over the sandbox connection's cursor: ``execute()`` returns the row count."""

    def execute_result(self) -> Any:
        """aiomysql's ``execute()`` returns the number of affected rows."""
        return self.rowcount

    # A statement with no rows (or transaction control the sandbox connection handled without sending it)
    # reads as no rows, as on aiomysql: SQLAlchemy 2.0 fetches after every statement.
    async def fetchone(self) -> Any:
        """The next row, or None."""
        return None if self.description is None else self.sync_cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Any:
        """The next ``size`` rows (``arraysize`` by default)."""
        if self.description is None:
            return ()
        return self.sync_cursor.fetchmany(self.arraysize if size is None else size)

    async def fetchall(self) -> Any:
        """Every remaining row."""
        return () if self.description is None else self.sync_cursor.fetchall()


def _pymysql_cursor_class(cursor_class: Any) -> Any:
    """PyMySQL's buffered cursor class for one of aiomysql's (or SQLAlchemy's subclasses of them)."""
    if cursor_class is None:
        return None
    import pymysql.cursors

    names = {klass.__name__ for klass in getattr(cursor_class, "__mro__", ())}
    return pymysql.cursors.DictCursor if names & {"DictCursor", "SSDictCursor"} else pymysql.cursors.Cursor


class AioMySQLConnection(AsyncFace):
    """The sandbox connection as an ``aiomysql.Connection``."""

    cursor_class = AioMySQLCursor

    def __init__(self, connection: PyMySQLConnection) -> None:
        super().__init__(connection)
        self._mysql = connection

    def cursor(self, *cursors: Any) -> AsyncCursorFace:
        """A cursor; aiomysql's cursor class (the first given) chooses PyMySQL's plain or dict rows."""
        return self.cursor_class(self._mysql.cursor(_pymysql_cursor_class(cursors[0] if cursors else None)))

    async def autocommit(self, value: bool) -> None:
        """Enter or leave autocommit mode (each statement straight into the sandbox's transaction)."""
        await in_turn(self._mysql.switch_autocommit, bool(value))

    def get_autocommit(self) -> bool:
        """Whether autocommit mode is on."""
        return self._mysql.get_autocommit()

    async def begin(self) -> None:
        """Open the transaction ``commit()`` ends (a savepoint in the sandbox)."""
        await in_turn(self._mysql.begin)

    async def ping(self, reconnect: bool = False) -> None:
        """Check that the server answers; never reconnects (see the sync face)."""
        await in_turn(self._mysql.ping, False)

    async def select_db(self, db: Any) -> None:
        """Refused for another database (see the sync face)."""
        await in_turn(self._mysql.select_db, db)

    async def ensure_closed(self) -> None:
        """aiomysql's graceful close: what is uncommitted is discarded, the sandbox's connection stays open."""
        await in_turn(self._mysql.close)

    def close(self) -> None:  # type: ignore[override]  # aiomysql's close() is not a coroutine
        """aiomysql's immediate close: the same as `ensure_closed` here."""
        self._mysql.close()
