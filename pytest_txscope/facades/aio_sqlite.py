"""aiosqlite's face of the sandbox connection, over the sqlite3 face (`pytest_txscope.facades.sqlite`).

What SQLAlchemy's aiosqlite adapter and aiosqlite users call: ``cursor()``, ``execute()``, ``executemany()``,
``executescript()``, ``commit()``, ``rollback()``, ``close()``, ``create_function()`` as coroutines;
``isolation_level``, ``row_factory``, ``in_transaction``, ``total_changes`` as the sqlite3 face has them.
"""

from __future__ import annotations

from typing import Any

from .aio_base import AsyncCursorFace, AsyncFace, in_turn
from .sqlite import SQLiteConnection

__all__ = ["AioSQLiteConnection"]


class _RunNow:
    """Stands for aiosqlite's queue of calls to its thread: SQLAlchemy 2.1's adapter sets ``isolation_level``
    by putting ``(future, function)`` on it; here the function runs at once, on the sqlite3 face."""

    def put_nowait(self, item: tuple[Any, Any]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # handed to the awaiting adapter, which raises it
            future.set_exception(exc)


class AioSQLiteConnection(AsyncFace):
    """The sandbox connection as an ``aiosqlite.Connection``."""

    _tx = _RunNow()

    def __init__(self, connection: SQLiteConnection) -> None:
        super().__init__(connection)
        self._sqlite = connection

    @property
    def _conn(self) -> SQLiteConnection:
        # aiosqlite's name for the sqlite3 connection it runs on, which SQLAlchemy 2.1's adapter reaches for.
        return self._sqlite

    @property
    def _connection(self) -> SQLiteConnection | None:
        # aiosqlite's open-connection check (None once closed), read by SQLAlchemy 2.1's commit and rollback.
        return None if self._sqlite.closed else self._sqlite

    @property
    def isolation_level(self) -> str | None:
        """sqlite3's setting (None: autocommit mode, each statement straight into the sandbox's transaction)."""
        return self._sqlite.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._sqlite.isolation_level = value

    @property
    def row_factory(self) -> Any:
        """New cursors' row factory, as on sqlite3."""
        return self._sqlite.row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        self._sqlite.row_factory = value

    @property
    def text_factory(self) -> Any:
        """What TEXT values become, as on sqlite3."""
        return self._sqlite.text_factory

    @text_factory.setter
    def text_factory(self, value: Any) -> None:
        self._sqlite.text_factory = value

    async def executescript(self, script: str) -> AsyncCursorFace:
        """The statements one by one, in the app's transaction (sqlite3's commits first; not here)."""
        return self.cursor_class(await in_turn(self._sqlite.executescript, script))

    async def create_function(self, name: str, num_params: int, func: Any, **kwargs: Any) -> None:
        """Registered on the sandbox's connection until this face closes (or its test ends)."""
        self._sqlite.create_function(name, num_params, func, **kwargs)

    async def create_collation(self, name: str, callable: Any) -> None:  # aiosqlite's own name
        """Registered until this face closes (or its test ends)."""
        self._sqlite.create_collation(name, callable)

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # aiosqlite's `async with connect(...)` closes the connection (what is uncommitted is discarded).
        await in_turn(self._sqlite.close)

    def stop(self) -> None:
        """aiosqlite's forced close (SQLAlchemy's terminate): the same as ``close()`` here."""
        self._sqlite.close()
