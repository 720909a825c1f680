"""Sync faces of asyncio drivers: each shows an existing dialect the DB-API surface that dialect already drives.

An adapter wraps one asyncio connection (psycopg's ``AsyncConnection``, aiosqlite's, aiomysql's) and hands each
of the driver's coroutines to a `pytest_txscope.bridge.Runner` (the `LoopRunner` of the loop that opened it), so
that the sync core, run through `pytest_txscope.bridge.run_sync`, drives it as it drives psycopg, sqlite3 or
PyMySQL. The dialects' rules (what to send, how to read the transaction state) are not written again.

Rows are read when a statement runs (`BufferedCursor`): a cursor's ``fetch*`` then needs no loop, as the rows of
psycopg's and aiomysql's default cursors are on the client already.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any

from ..bridge import Runner

__all__ = [
    "AdaptedConnection",
    "AiomysqlAdapter",
    "AiosqliteAdapter",
    "BufferedCursor",
    "PsycopgAsyncAdapter",
    "RowBuffer",
]


class RowBuffer:
    """DB-API reading over rows an adapter's cursor already holds (``_rows``): asyncio drivers hand every row
    of a result at once."""

    arraysize = 1
    _rows: deque[Any]

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to ``size`` (default `arraysize`) more rows."""
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    def fetchall(self) -> list[Any]:
        """Every row not read yet."""
        rows, self._rows = list(self._rows), deque()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()


class BufferedCursor(RowBuffer):
    """A DB-API cursor over rows already read: what an adapter's statements return."""

    arraysize = 1

    def __init__(self, adapter: AdaptedConnection, raw: Any = None) -> None:
        self._adapter = adapter
        self._raw = raw
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: Any = None

    # ---------------------------------------------------------------------------------------- running
    def execute(self, sql: str, params: Any = None) -> BufferedCursor:
        """Run one statement (the driver's own placeholders) and read its rows."""
        raw = self._raw_cursor()
        self._adapter.run(raw.execute(sql) if params is None else raw.execute(sql, params))
        self._read(raw)
        return self

    def execute_after(self, statements: Sequence[str], sql: str, params: Any) -> BufferedCursor:
        """Run control ``statements`` then ``sql`` in one round trip, and read the rows of ``sql``."""
        raw = self._raw_cursor()
        self._adapter.run(self._adapter.send_after(raw, statements, sql, params))
        self._read(raw)
        return self

    def executemany(self, sql: str, seq: Sequence[Any]) -> BufferedCursor:
        """Run one statement once per parameter set."""
        raw = self._raw_cursor()
        self._adapter.run(raw.executemany(sql, seq))
        self._read(raw)
        return self

    def nextset(self) -> bool | None:
        """Move to the next result set of a multi-statement text (aiomysql), reading its rows."""
        if self._raw is None:
            return None
        more = self._adapter.run(self._raw.nextset())
        if more:
            self._read(self._raw)
        return more  # type: ignore[no-any-return]  # the driver's value, as its sync twin returns it

    def _raw_cursor(self) -> Any:
        if self._raw is None:
            self._raw = self._adapter.raw_cursor()
        return self._raw

    def _read(self, raw: Any) -> None:
        self.description = raw.description
        self.rowcount = raw.rowcount
        self.lastrowid = getattr(raw, "lastrowid", None)
        self._rows = deque(self._adapter.rows(raw) if raw.description is not None else ())

    # ---------------------------------------------------------------------------------------- reading
    def close(self) -> None:
        """Forget the rows and close the driver's cursor."""
        self._rows.clear()
        raw, self._raw = self._raw, None
        if raw is not None:
            self._adapter.close_cursor(raw)


class AdaptedConnection:
    """What every adapter shares: the driver's connection, its runner, and the calls every dialect makes."""

    raw: Any
    """The asyncio driver's own connection."""
    runner: Runner
    """Runs its coroutines (the `LoopRunner` of the loop that opened it)."""

    def __init__(self, raw: Any, runner: Runner) -> None:
        self.raw = raw
        self.runner = runner

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run one of the driver's coroutines to its result."""
        return self.runner(coroutine)

    @property
    def loop_closed(self) -> bool:
        """The loop that opened the connection is closed: nothing can run on it any more."""
        return self.runner.loop.is_closed()

    async def send_after(self, raw_cursor: Any, statements: Sequence[str], sql: str, params: Any) -> None:
        """Send control ``statements`` then ``sql`` on ``raw_cursor`` in one round trip (a driver that can)."""
        raise NotImplementedError(f"{type(self).__name__} sends control statements apart")

    def raw_cursor(self) -> Any:
        """A new cursor of the driver (async in aiosqlite, plain in the others)."""
        return self.raw.cursor()

    def rows(self, raw_cursor: Any) -> list[Any]:
        """Every row of a driver cursor's current result."""
        return self.run(raw_cursor.fetchall())  # type: ignore[no-any-return]

    def close_cursor(self, raw_cursor: Any) -> None:
        """Close a driver cursor (a coroutine in psycopg and aiosqlite, a plain call elsewhere)."""
        if not self.loop_closed:
            self.run(raw_cursor.close())

    def cursor(self) -> BufferedCursor:
        """A DB-API cursor (`BufferedCursor`)."""
        return BufferedCursor(self)

    def execute(self, sql: str, params: Any = None) -> BufferedCursor:
        """The ``execute`` shortcut sqlite3's and psycopg's connections have."""
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq: Sequence[Any]) -> BufferedCursor:
        """The ``executemany`` shortcut."""
        return self.cursor().executemany(sql, seq)

    def close(self) -> None:
        """Close the connection; on a closed loop, let go of it without I/O (`abandon`)."""
        if self.loop_closed:
            self.abandon()
        else:
            self.run(self.raw.close())

    def abandon(self) -> None:
        """Drop the connection without running anything on its loop, which is closed."""


class PsycopgAsyncAdapter(AdaptedConnection):
    """psycopg's ``AsyncConnection`` as `pytest_txscope.dialects.PostgreSQLDialect` drives psycopg's
    ``Connection``: ``execute``, ``cursor``, ``autocommit``, ``info`` and ``pgconn`` (its probe reads libpq's
    transaction status, no round trip)."""

    @property
    def pgconn(self) -> Any:
        """libpq's connection (the dialect's probe and its control statements that keep psycopg's cache)."""
        return self.raw.pgconn

    @property
    def info(self) -> Any:
        """psycopg's ``ConnectionInfo`` (read from libpq: no round trip)."""
        return self.raw.info

    @property
    def adapters(self) -> Any:
        """psycopg's adapters map (what ``sql.Literal.as_string`` reads)."""
        return self.raw.adapters

    @property
    def closed(self) -> bool:
        """Closed, lost, or its loop closed (the pool then discards it)."""
        return bool(self.raw.closed) or self.loop_closed

    @property
    def autocommit(self) -> bool:
        """The driver's autocommit flag."""
        return bool(self.raw.autocommit)

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self.run(self.raw.set_autocommit(value))

    def rollback(self) -> None:
        """The driver's own rollback (`PostgreSQLBackend.reset`, when autocommit was switched off)."""
        self.run(self.raw.rollback())

    def execute_after(self, statements: Sequence[str], sql: str, params: Any) -> BufferedCursor:
        """`PostgreSQLDialect.execute_after` on the asyncio driver: one coroutine, one round trip."""
        return self.cursor().execute_after(statements, sql, params)

    async def send_after(self, raw_cursor: Any, statements: Sequence[str], sql: str, params: Any) -> None:
        # As the sync dialect sends them: one simple-query text without parameters, else one pipeline.
        if params is None:
            await raw_cursor.execute("; ".join([*statements, sql]))
            for _ in statements:
                raw_cursor.nextset()
            return
        async with self.raw.pipeline():
            for statement in statements:
                await self.raw.execute(statement, prepare=False)
            await raw_cursor.execute(sql, params)

    def abandon(self) -> None:
        # libpq's PQfinish is synchronous: the socket is closed, and psycopg sees the connection closed.
        with contextlib.suppress(Exception):
            self.raw.pgconn.finish()


class AiosqliteAdapter(AdaptedConnection):
    """aiosqlite's ``Connection`` as `pytest_txscope.dialects.SQLiteDialect` drives sqlite3's: ``execute``,
    ``executemany`` and ``in_transaction``, read from the sqlite3 connection (no hop to aiosqlite's thread)."""

    def raw_cursor(self) -> Any:
        return self.run(self.raw.cursor())

    @property
    def in_transaction(self) -> bool:
        """sqlite3's flag; raises once the connection is closed or its loop is (the dialect's liveness test)."""
        if self.loop_closed:
            raise ValueError("the event loop of this aiosqlite connection is closed")
        return bool(self.raw.in_transaction)

    @property
    def isolation_level(self) -> Any:
        """sqlite3's legacy transaction mode (None: autocommit, as the dialect keeps it)."""
        return self.raw.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        # Set in aiosqlite's thread: a connection opened without check_same_thread=False (an application's own)
        # refuses it from any other. aiosqlite's setter sets it from the caller's thread, so its private
        # _execute (which runs a call in its thread) is used.
        self.run(self.raw._execute(setattr, self.raw._conn, "isolation_level", value))

    def abandon(self) -> None:
        # aiosqlite's stop() closes the sqlite3 connection in its own thread and ends it: no loop needed. It is
        # called from a thread of its own, which has no event loop: stop() then asks for no future, which its
        # thread would otherwise complete on whatever loop the caller runs, maybe closed by then (a
        # "RuntimeError: Event loop is closed" raised in aiosqlite's thread, during a later test).
        stopper = threading.Thread(target=self._stop_quietly, name="txscope-aiosqlite-stop", daemon=True)
        stopper.start()
        stopper.join()

    def _stop_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.stop()


class AiomysqlAdapter(AdaptedConnection):
    """aiomysql's ``Connection`` as `pytest_txscope.dialects.MySQLDialect` drives PyMySQL's: cursors,
    ``server_status`` (kept from every reply, as PyMySQL keeps it), ``autocommit()`` and ``escape()``."""

    def raw_cursor(self) -> Any:
        return self.run(_resolved(self.raw.cursor(_quiet_cursor())))

    def close_cursor(self, raw_cursor: Any) -> None:
        if not self.loop_closed:
            self.run(raw_cursor.close())

    def rows(self, raw_cursor: Any) -> list[Any]:
        # aiomysql's buffered cursor returns a done future: its rows are on the client already.
        return self.run(_resolved(raw_cursor.fetchall()))  # type: ignore[no-any-return]

    @property
    def server_status(self) -> int:
        """The status flags of the server's last reply."""
        return int(self.raw.server_status)

    @property
    def client_flag(self) -> int:
        """The capabilities the connection asked for (MULTI_STATEMENTS among them)."""
        return int(self.raw.client_flag)

    @property
    def open(self) -> bool:
        """Not closed, and its loop still open."""
        return not self.raw.closed and not self.loop_closed

    def get_autocommit(self) -> bool:
        """The server's autocommit flag, from the last reply."""
        return bool(self.raw.get_autocommit())

    def autocommit(self, value: bool) -> None:
        """Switch the server's autocommit mode."""
        self.run(self.raw.autocommit(value))

    def escape(self, value: Any) -> Any:
        """A value as an SQL literal, quoted as the connection's character set needs."""
        return self.raw.escape(value)

    def thread_id(self) -> int:
        """The server's id of the session (what ``KILL`` takes)."""
        return int(self.raw.thread_id())

    @property
    def host(self) -> Any:
        """The server's host."""
        return self.raw.host

    @property
    def port(self) -> Any:
        """The server's port."""
        return self.raw.port

    @property
    def user(self) -> Any:
        """The user logged in."""
        return self.raw.user

    @property
    def db(self) -> Any:
        """The database in use."""
        return self.raw.db

    def close(self) -> None:
        # aiomysql's close() is a plain call that closes the transport (ensure_closed() would say goodbye).
        self.abandon()

    def abandon(self) -> None:
        if not self.loop_closed:
            self.raw.close()
            return
        # aiomysql closes through its transport, which needs the loop; with the loop closed, the socket is
        # closed here, by the transport's own (private) attributes, as no public call does it without a loop.
        writer, self.raw._writer, self.raw._reader = self.raw._writer, None, None
        transport = getattr(writer, "transport", None)
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            transport._sock = None  # type: ignore[union-attr]
            sock.close()
        if transport is not None:
            transport._closing = True  # what the stream writer reads, to warn of a transport left open


async def _resolved(awaitable: Any) -> Any:
    return await awaitable


@functools.cache
def _quiet_cursor() -> type[Any]:
    """aiomysql's cursor without its SHOW WARNINGS after every statement the server warned about: PyMySQL (whose
    dialect drives it) stopped doing that in 1.0, and the warnings it raised would fail statements that
    succeeded wherever warnings are errors. Overrides a private method: aiomysql has no option for it."""
    import aiomysql

    class QuietCursor(aiomysql.Cursor):  # type: ignore[misc]  # aiomysql ships no types
        async def _show_warnings(self, conn: Any) -> None:
            return None

    return QuietCursor
