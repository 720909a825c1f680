"""asyncpg behind a DB-API face, for `pytest_txscope.dialects.AsyncpgDialect`.

asyncpg is not a DB-API driver: it has no cursors, takes ``$1`` placeholders only, returns rows from ``fetch``
and a status text from ``execute``, and cannot tell a failed transaction from an open one. `AsyncpgAdapter`
gives it the surface the PostgreSQL dialect drives (``execute`` returning a cursor with ``description``,
``rowcount`` and ``fetch*``, a libpq-like transaction status, the backend's pid), running each call as one
coroutine on the connection's `pytest_txscope.bridge.Runner`: the caller's loop (`LoopRunner`, the asyncio API)
or the driver loop (`DriverLoopRunner`, a sandbox).

Statements with parameters, and those that may return rows, run as prepared statements kept in a small LRU keyed
by their text (asyncpg's ``execute(sql, *args)`` would prepare them anyway; keeping our own avoids a second
lookup and lets the description be read). Statements without parameters that cannot return rows (transaction
control, DDL, ``SET``) go through the simple query protocol, which also takes several statements in one text.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

from ..bridge import Runner, driver_loop
from ..errors import ParameterError
from ..sql import pyformat_to_numeric, split_statements
from .adapters import AdaptedConnection, RowBuffer

__all__ = ["AsyncpgAdapter", "AsyncpgCursor", "AsyncpgInfo", "NumericArgs"]

# libpq's transaction status values, as the PostgreSQL dialect reads them.
_IDLE, _INTRANS, _INERROR, _UNKNOWN = 0, 2, 3, 4
_CACHE_SIZE = 256
# First words of statements that return no rows: sent without parameters, they take the simple query protocol.
_NO_ROWS = (
    "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START", "END", "ABORT", "SET", "RESET", "CREATE",
    "DROP", "ALTER", "TRUNCATE", "COMMENT", "GRANT", "REVOKE", "LOCK", "DO", "LISTEN", "UNLISTEN", "NOTIFY",
    "DISCARD", "DEALLOCATE", "VACUUM", "ANALYZE", "REINDEX", "CLUSTER", "DECLARE", "CLOSE", "REFRESH",
)  # fmt: skip
# Statements after which prepared plans may refer to what no longer exists (asyncpg then raises
# InvalidCachedStatementError): the cache is emptied after them, and at the next rollback after them.
_SCHEMA = ("CREATE", "DROP", "ALTER", "TRUNCATE", "COMMENT", "GRANT", "REVOKE", "DO", "DISCARD", "REFRESH")
_ROWCOUNT_COMMANDS = ("INSERT", "UPDATE", "DELETE", "SELECT", "MERGE", "COPY", "FETCH", "MOVE")


class NumericArgs(tuple[Any, ...]):
    """Parameters of a statement already written with asyncpg's ``$1`` placeholders (what SQLAlchemy's asyncpg
    dialect and asyncpg's own API send): passed as they are, the text is not read for ``%s`` placeholders."""

    __slots__ = ()


def _first_word(sql: str) -> str:
    return sql.lstrip(" \t\r\n(")[:12].split(None, 1)[0].upper() if sql.strip() else ""


def _rowcount(status: str | None) -> int:
    if not status:
        return -1
    words = status.split()
    if words[0] in _ROWCOUNT_COMMANDS and words[-1].isdigit():
        return int(words[-1])
    return -1


class AsyncpgInfo:
    """The facts psycopg's ``ConnectionInfo`` gives, as `PostgreSQLBackend` reads them (no round trip)."""

    def __init__(self, adapter: AsyncpgAdapter) -> None:
        self._adapter = adapter
        address = adapter.raw._addr
        self.host = address if isinstance(address, str) else address[0]
        self.port = None if isinstance(address, str) else address[1]
        self.dbname = adapter.raw._params.database
        self.user = adapter.raw._params.user
        self.backend_pid = adapter.raw.get_server_pid()

    @property
    def transaction_status(self) -> int:
        """libpq's transaction status (`AsyncpgAdapter.transaction_status`)."""
        return self._adapter.transaction_status


class AsyncpgCursor(RowBuffer):
    """A DB-API cursor over asyncpg: each ``execute`` runs one coroutine and keeps the rows it read."""

    arraysize = 1

    def __init__(self, adapter: AsyncpgAdapter) -> None:
        self._adapter = adapter
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: Any = None
        self.statusmessage: str | None = None

    def execute(self, sql: str, params: Any = None) -> AsyncpgCursor:
        """Run one statement (``%s`` / ``%(name)s`` placeholders, as psycopg takes) and read its rows."""
        self._set(*self._adapter.run(self._adapter.send(sql, params)))
        return self

    def executemany(self, sql: str, seq: Sequence[Any]) -> AsyncpgCursor:
        """Run one statement once per parameter set."""
        self._set(*self._adapter.run(self._adapter.send_many(sql, seq)))
        return self

    def _set(self, description: Any, rows: list[Any], status: str | None) -> None:
        self.description = description
        self._rows = deque(rows)
        self.statusmessage = status
        self.rowcount = _rowcount(status)

    def nextset(self) -> bool | None:
        """asyncpg reads one result per statement: there is never a next one."""
        return None

    def close(self) -> None:
        """Forget the rows."""
        self._rows.clear()


class AsyncpgAdapter(AdaptedConnection):
    """asyncpg's ``Connection`` as `pytest_txscope.dialects.AsyncpgDialect` drives it (see the module)."""

    def __init__(self, raw: Any, runner: Runner, params: Mapping[str, Any] | None) -> None:
        super().__init__(raw, runner)
        # How to reach the server again (to end the session once its loop is closed): the connect() keywords
        # when the library connected, else what the connection reached.
        self._params = dict(params) if params is not None else _params_of(raw)
        self._statements: OrderedDict[str, Any] = OrderedDict()
        self._failed = False  # an error aborted the open transaction (asyncpg reports it as open)
        self._schema_changed = False  # DDL ran in the open transaction: its rollback stales the plans
        self.autocommit = True  # asyncpg sends what it is given: the library's BEGIN is the only transaction
        self._codecs: set[tuple[str, str]] = set()  # (type, schema) whose codec the application replaced
        self.info = AsyncpgInfo(self)

    # ---------------------------------------------------------------------------------------- state
    @property
    def closed(self) -> bool:
        """Closed, lost, or its loop closed."""
        return bool(self.raw.is_closed()) or self.loop_closed

    @property
    def transaction_status(self) -> int:
        """libpq's status: IDLE 0, INTRANS 2, INERROR 3 (tracked here), UNKNOWN 4 once closed."""
        if self.closed:
            return _UNKNOWN
        if not self.raw.is_in_transaction():
            return _IDLE
        return _INERROR if self._failed else _INTRANS

    def rollback(self) -> None:
        """Roll back whatever is open (`PostgreSQLBackend.reset`)."""
        self.execute("ROLLBACK")

    # ---------------------------------------------------------------------------------------- running
    def cursor(self) -> AsyncpgCursor:  # type: ignore[override]  # its own cursor, not BufferedCursor
        """A DB-API cursor (`AsyncpgCursor`)."""
        return AsyncpgCursor(self)

    def execute(self, sql: str, params: Any = None) -> AsyncpgCursor:  # type: ignore[override]
        """The ``execute`` shortcut psycopg's connection has."""
        return AsyncpgCursor(self).execute(sql, params)

    def executemany(self, sql: str, seq: Sequence[Any]) -> AsyncpgCursor:  # type: ignore[override]
        """The ``executemany`` shortcut."""
        return AsyncpgCursor(self).executemany(sql, seq)

    async def send(self, sql: str, params: Any) -> tuple[Any, list[Any], str | None]:
        """Run ``sql`` on the driver: the description, rows and status text of its result."""
        try:
            if params is None and self._simple(sql):
                status = await self.raw.execute(sql)
                self._after(sql)
                return None, [], status
            text, args = _bind(sql, params)
            statement = await self._prepared(text)
            rows = await self._fetch(text, statement, args)
        except BaseException:
            self._note_failure()
            raise
        self._after(sql)
        return _description(statement), [tuple(row) for row in rows], statement.get_statusmsg()

    async def send_many(self, sql: str, seq: Sequence[Any]) -> tuple[Any, list[Any], str | None]:
        """Run ``sql`` once per parameter set, as one prepared statement."""
        if not seq:
            return None, [], None
        try:
            text, _ = _bind(sql, seq[0])
            statement = await self._prepared(text)
            await statement.executemany([_bind(sql, params)[1] for params in seq])
        except BaseException:
            self._note_failure()
            raise
        self._failed = False
        return None, [], None

    def describe(self, sql: str) -> Any:
        """Prepare ``sql`` (``$1`` placeholders) without running it: asyncpg's attributes of its result columns
        (empty for a statement that returns no rows). The plan is kept for the statement's execution."""
        try:
            statement = self.run(self._prepared(sql))
        except BaseException:
            self._note_failure()
            raise
        return statement.get_attributes()

    def _note_failure(self) -> None:
        # asyncpg reports a transaction an error aborted as open: remember it (libpq's INERROR).
        self._failed = self.raw.is_in_transaction() and not self.raw.is_closed()

    def known_attributes(self, sql: str) -> Any:
        """The attributes of ``sql`` when it is prepared already (no I/O), else None."""
        statement = self._statements.get(sql)
        return None if statement is None else statement.get_attributes()

    def set_type_codec(self, typename: str, schema: str, **codec: Any) -> None:
        """asyncpg's ``set_type_codec``, remembered so that `restore_codecs` puts the type back as asyncpg
        decodes it, before the connection serves another test."""
        self.run(self.raw.set_type_codec(typename, schema=schema, **codec))
        self._codecs.add((typename, schema))
        self._statements.clear()  # plans made before hold the old codec

    def restore_codecs(self) -> None:
        """Undo every `set_type_codec` (asyncpg's ``reset_type_codec``)."""
        while self._codecs:
            typename, schema = self._codecs.pop()
            self.run(self.raw.reset_type_codec(typename, schema=schema))
        self._statements.clear()

    def _simple(self, sql: str) -> bool:
        word = _first_word(sql)
        if word in _NO_ROWS:
            return True
        # Several statements in one text (a script the code sends whole) take the simple protocol too.
        return ";" in sql.rstrip().rstrip(";") and len(split_statements(sql)) > 1

    async def _prepared(self, text: str) -> Any:
        statement = self._statements.get(text)
        if statement is not None:
            self._statements.move_to_end(text)
            return statement
        statement = await self.raw.prepare(text)
        self._statements[text] = statement
        if len(self._statements) > _CACHE_SIZE:
            self._statements.popitem(last=False)
        return statement

    async def _fetch(self, text: str, statement: Any, args: Sequence[Any]) -> list[Any]:
        import asyncpg

        try:
            return await statement.fetch(*args)  # type: ignore[no-any-return]
        except asyncpg.InvalidCachedStatementError:
            # A plan made before the schema changed (another session's DDL): outside a transaction it is made
            # again; inside, the transaction is aborted already and only a rollback helps.
            self._statements.pop(text, None)
            if self.raw.is_in_transaction():
                raise
            return await (await self._prepared(text)).fetch(*args)  # type: ignore[no-any-return]

    def _after(self, sql: str) -> None:
        self._failed = False
        word = _first_word(sql)
        if word in _SCHEMA:
            self._statements.clear()
            self._schema_changed = self.raw.is_in_transaction()
        elif self._schema_changed and "ROLLBACK" in sql.upper():
            self._statements.clear()  # the rollback undid DDL the cached plans may refer to
            self._schema_changed = self.raw.is_in_transaction()
        elif self._schema_changed and not self.raw.is_in_transaction():
            self._schema_changed = False

    # ---------------------------------------------------------------------------------------- closing
    def close(self) -> None:
        """Close the connection; on a closed loop, let go of it without I/O (`abandon`)."""
        self._statements.clear()
        if self.loop_closed:
            self.abandon()
        elif not self.raw.is_closed():
            try:
                self.run(self.raw.close(timeout=5))
            except Exception:
                self.abandon()

    def abandon(self) -> None:
        """Drop the connection. With its loop closed, no I/O can run on it: the server would keep the session
        (idle in transaction, holding locks a DROP DATABASE waits for), so a connection of the driver loop
        ends it with ``pg_terminate_backend``."""
        self._statements.clear()
        if not self.loop_closed:
            with contextlib.suppress(Exception):
                self.run(_terminate(self.raw))
            return
        pid = self.info.backend_pid
        with contextlib.suppress(Exception):
            driver_loop()(_terminate_backend(self._params, pid))
        _close_without_loop(self.raw)


def _close_without_loop(raw: Any) -> None:
    # asyncpg closes through its transport, which needs the loop; with the loop closed, the socket is closed
    # here by the transport's own (private) attributes, and the connection marked aborted as its terminate()
    # does: otherwise both warn "unclosed" when collected, in some later test.
    transport = getattr(raw, "_transport", None)
    sock = getattr(transport, "_sock", None)
    if transport is not None and sock is not None:
        transport._sock = None
        sock.close()
    raw._aborted = True


def _params_of(raw: Any) -> dict[str, Any]:
    # asyncpg keeps what a connection reached in private attributes only (no public accessor).
    address, params = raw._addr, raw._params
    where = {"host": address} if isinstance(address, str) else {"host": address[0], "port": address[1]}
    return {**where, "user": params.user, "password": params.password, "database": params.database}


def _bind(sql: str, params: Any) -> tuple[str, Sequence[Any]]:
    if params is None:
        return sql, ()
    if type(params) is NumericArgs:
        return sql, params
    converted = pyformat_to_numeric(sql)
    if isinstance(params, Mapping):
        missing = [name for name in converted.names if name not in params]
        if missing:
            raise ParameterError(f"no value for placeholder(s) {', '.join(missing)} in {sql!r}")
        return converted.text, [params[name] for name in converted.names]
    if converted.names:
        raise ParameterError(f"{sql!r} has %(name)s placeholders: pass the parameters as a mapping")
    if len(params) != converted.positional:
        raise ParameterError(
            f"{sql!r} has {converted.positional} placeholder(s) but {len(params)} parameter(s) were given"
        )
    return converted.text, params


def _description(statement: Any) -> Any:
    attributes = statement.get_attributes()
    if not attributes:
        return None
    return [(a.name, a.type.oid, None, None, None, None, None) for a in attributes]


async def _terminate(raw: Any) -> None:
    raw.terminate()


async def _terminate_backend(params: Mapping[str, Any], pid: int) -> None:
    import asyncpg

    killer = await asyncpg.connect(**params)
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close(timeout=5)
