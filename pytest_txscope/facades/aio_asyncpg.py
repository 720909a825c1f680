"""asyncpg's ``Connection`` API over an asyncpg sandbox connection (`pytest_txscope.facades.asyncpg`).

What SQLAlchemy's asyncpg dialect calls on its driver connection, and what application code reaching the raw
connection (``driver_connection``) most often calls: ``execute``, ``executemany``, ``fetch``, ``fetchrow``,
``fetchval``, ``prepare`` (a `PreparedFace`: ``get_attributes``, ``fetch``, ``get_statusmsg``, ``cursor``),
``cursor``, ``transaction`` (a `TransactionFace`), ``is_closed``, ``is_in_transaction``, ``close``,
``terminate``, ``set_type_codec``. Statements keep asyncpg's ``$1`` placeholders and its errors.

As asyncpg's own connection, the face is in autocommit mode outside ``transaction()``: a statement outside one is
kept at once (in the sandbox's transaction, in a savepoint of its own so that its failure spares the rest); a
``transaction()`` is a savepoint the application commits (released) or rolls back, a nested one another.

json and jsonb keep the sandbox connection's codec (text in, ``json.loads`` out), which is what SQLAlchemy's own
codec gives with its default deserializer; an engine's ``json_deserializer`` is therefore not applied. Other
codecs (pgvector's ``register_vector``) are set on the sandbox's connection until the test ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

from ..dbapi_cursor import SandboxCursor
from ..dialects.asyncpg_adapter import NumericArgs
from .aio_base import SandboxFace, in_turn
from .asyncpg import AsyncpgConnection

__all__ = ["AioAsyncpgConnection", "CursorFace", "PreparedFace", "Record", "TransactionFace"]

_KEPT_CODECS = frozenset({("json", "pg_catalog"), ("jsonb", "pg_catalog")})


class Record:
    """A row as asyncpg's ``Record`` reads: by position and by column name (``row["id"]``, ``row.get``,
    ``dict(row)``), iterated as its values."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: tuple[Any, ...], names: dict[str, int]) -> None:
        self._values, self._names = values, names

    def __getitem__(self, key: Any) -> Any:
        return self._values[self._names[key] if type(key) is str else key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        values = other._values if isinstance(other, Record) else other
        return self._values == values

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        pairs = " ".join(f"{name}={value!r}" for name, value in self.items())
        return f"<Record {pairs}>"

    def get(self, key: str, default: Any = None) -> Any:
        """The value of column ``key``, or ``default``."""
        index = self._names.get(key)
        return default if index is None else self._values[index]

    def keys(self) -> Iterator[str]:
        """The column names."""
        return iter(self._names)

    def values(self) -> Iterator[Any]:
        """The values, in column order."""
        return iter(self._values)

    def items(self) -> Iterator[tuple[str, Any]]:
        """(name, value) pairs, in column order."""
        return zip(self._names, self._values, strict=True)


def _records(description: Any, rows: list[Any]) -> list[Record]:
    names = {column[0]: index for index, column in enumerate(description or ())}
    return [Record(tuple(row), names) for row in rows]


def _args(args: Sequence[Any]) -> NumericArgs | None:
    # No arguments: asyncpg's simple query protocol for execute() (several statements in one text).
    return NumericArgs(args) if args else None


class CursorFace:
    """What ``await prepared.cursor(*args)`` and ``conn.cursor(...)`` give: rows read in batches with
    ``fetch(n)``, ``fetchrow()``, ``forward(n)``, or ``async for``. The rows are read when the cursor is made
    (the sandbox serialises statements: a server cursor held open would hold the connection)."""

    def __init__(self, rows: list[Any]) -> None:
        self._rows = deque(rows)

    async def fetch(self, n: int, *, timeout: float | None = None) -> list[Any]:
        """The next ``n`` rows."""
        return [self._rows.popleft() for _ in range(min(n, len(self._rows)))]

    async def fetchrow(self, *, timeout: float | None = None) -> Any:
        """The next row, or None."""
        return self._rows.popleft() if self._rows else None

    async def forward(self, n: int, *, timeout: float | None = None) -> int:
        """Skip ``n`` rows; how many were skipped."""
        skipped = min(n, len(self._rows))
        for _ in range(skipped):
            self._rows.popleft()
        return skipped

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while self._rows:
            yield self._rows.popleft()


class _CursorFactory:
    """asyncpg's ``CursorFactory``: awaited, a `CursorFace`; iterated with ``async for``, its rows."""

    def __init__(self, make: Callable[[], Awaitable[CursorFace]]) -> None:
        self._make = make

    def __await__(self) -> Generator[Any, None, CursorFace]:
        return self._make().__await__()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        cursor = await self._make()
        async for row in cursor:
            yield row


class PreparedFace:
    """asyncpg's ``PreparedStatement`` on the face: prepared on the sandbox's connection (its result columns
    known before it runs, as SQLAlchemy reads them), run with each call's arguments."""

    def __init__(self, face: AioAsyncpgConnection, query: str, attributes: Any) -> None:
        self._face, self._query, self._attributes = face, query, attributes
        self._status = ""

    def get_attributes(self) -> Any:
        """The result's columns (asyncpg's ``Attribute``s: ``name``, ``type.oid`` ...)."""
        return self._attributes

    def get_query(self) -> str:
        """The statement's text."""
        return self._query

    def get_statusmsg(self) -> str:
        """The status of the last run (``INSERT 0 1``)."""
        return self._status

    async def fetch(self, *args: Any, timeout: float | None = None) -> list[Any]:
        """Run with ``args``; every row, as `Record`s."""
        cursor = await self._face.run(self._query, NumericArgs(args))
        # asyncpg always has a status; none here when the sandbox handled the text itself (COMMIT sent as SQL).
        self._status = cursor.statusmessage or ""
        return _records(cursor.description, cursor.fetchall())

    async def fetchrow(self, *args: Any, timeout: float | None = None) -> Any:
        """Run with ``args``; the first row, or None."""
        rows = await self.fetch(*args)
        return rows[0] if rows else None

    async def fetchval(self, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        """Run with ``args``; one value of the first row, or None."""
        row = await self.fetchrow(*args)
        return None if row is None else row[column]

    async def executemany(self, args: Iterable[Sequence[Any]], *, timeout: float | None = None) -> None:
        """Run once per argument set."""
        await self._face.executemany(self._query, args)

    def cursor(self, *args: Any, prefetch: int | None = None, timeout: float | None = None) -> _CursorFactory:
        """A cursor over the result for ``args`` (see `CursorFace`)."""

        async def make() -> CursorFace:
            return CursorFace(await self.fetch(*args))

        return _CursorFactory(make)


class TransactionFace:
    """asyncpg's ``Transaction``: ``start()`` opens the application's transaction (a savepoint in the sandbox),
    or a savepoint inside one; ``commit()`` releases it, ``rollback()`` rolls back to it; ``async with``."""

    def __init__(self, face: AioAsyncpgConnection, characteristics: list[str]) -> None:
        self._face, self._characteristics = face, characteristics
        self._block: Any = None

    async def start(self) -> None:
        """Open the block; asking for other transaction characteristics warns (`SandboxIsolationWarning`)."""
        connection = self._face.sandbox_connection
        for characteristic in self._characteristics:
            connection.ask_isolation(characteristic, f"transaction({characteristic.lower()!r})")
        self._block = await in_turn(connection.open_block)

    async def commit(self) -> None:
        """Keep the block's work (a savepoint release)."""
        block = self._end()
        if block.is_active:  # a COMMIT sent as SQL ended it already: the server only warns, as here
            await in_turn(block.commit)

    async def rollback(self) -> None:
        """Undo the block's work."""
        block = self._end()
        if block.is_active:
            await in_turn(block.rollback)

    def _end(self) -> Any:
        block, self._block = self._block, None
        if block is None:
            import asyncpg

            raise asyncpg.InterfaceError("cannot end a transaction that is not started or has ended")
        return block

    async def __aenter__(self) -> TransactionFace:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._block is None:
            return
        await (self.commit() if exc_type is None else self.rollback())


class AioAsyncpgConnection(SandboxFace):
    """The sandbox connection as an ``asyncpg.Connection`` (see the module)."""

    def __init__(self, connection: AsyncpgConnection) -> None:
        super().__init__(connection)
        connection.switch_autocommit(True)  # asyncpg keeps each statement outside transaction() at once
        self._closed = False

    # ------------------------------------------------------------------------------------- statements
    async def run(self, query: str, args: NumericArgs | None) -> SandboxCursor:
        """Run ``query`` on the sandbox connection; its cursor, rows read."""
        cursor = self._sync.cursor()
        await in_turn(cursor.execute, query, args)
        return cursor

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Run ``query`` (without arguments, several statements may be given); the status of the last."""
        cursor = await self.run(query, _args(args))
        return str(cursor.statusmessage or "")

    async def executemany(
        self, command: str, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """Run ``command`` once per argument set."""
        cursor = self._sync.cursor()
        await in_turn(cursor.executemany, command, [NumericArgs(one) for one in args])

    async def fetch(self, query: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> list[Any]:
        """Every row of ``query``, as `Record`s."""
        cursor = await self.run(query, NumericArgs(args))
        return _records(cursor.description, cursor.fetchall())

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """The first row of ``query``, or None."""
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        """One value of the first row of ``query``, or None."""
        row = await self.fetchrow(query, *args)
        return None if row is None else row[column]

    async def prepare(self, query: str, *, name: str | None = None, **kwargs: Any) -> PreparedFace:
        """``query`` prepared: its columns are known now (`PreparedFace`)."""
        connection = self._sync
        attributes = connection.session.connection.known_attributes(query)
        if attributes is None:  # not prepared on the sandbox's connection yet: a round trip, as asyncpg's
            channel = await in_turn(connection.statement_channel)
            describe = lambda: channel.connection.describe(query)  # noqa: E731
            # Not a statement to count: the statement itself is counted when it runs.
            attributes = await in_turn(connection.send, channel, query, describe, quiet=True)
        return PreparedFace(self, query, attributes)

    def cursor(self, query: str, *args: Any, prefetch: int | None = None, **kwargs: Any) -> _CursorFactory:
        """A cursor over ``query``'s rows (see `CursorFace`)."""

        async def make() -> CursorFace:
            return CursorFace(await self.fetch(query, *args))

        return _CursorFactory(make)

    # ----------------------------------------------------------------------------------- transactions
    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False, deferrable: bool = False
    ) -> TransactionFace:
        """A transaction block (`TransactionFace`), not started."""
        asked = [level for level in (isolation,) if level and level != "read_committed"]
        asked += ["READ ONLY"] * readonly + ["DEFERRABLE"] * deferrable
        return TransactionFace(self, asked)

    def is_in_transaction(self) -> bool:
        """Whether a ``transaction()`` of the application's is open."""
        return self._sync.in_app_transaction

    # -------------------------------------------------------------------------------------- state
    def is_closed(self) -> bool:
        """Closed by the application (the sandbox's connection stays open)."""
        return self._closed or self._sync.closed

    async def close(self, *, timeout: float | None = None) -> None:
        """Discard what is uncommitted; the sandbox's connection stays open."""
        self._closed = True
        await in_turn(self._sync.close)

    def terminate(self) -> None:
        """As `close`, at once."""
        self._closed = True
        self._sync.close()

    async def reload_schema_state(self) -> None:
        """Nothing to do: the sandbox's connection forgets its plans after DDL by itself."""

    async def set_type_codec(self, typename: str, *, schema: str = "public", **codec: Any) -> None:
        """Set a codec on the sandbox's connection until the test ends; json and jsonb keep the sandbox's (see
        the module)."""
        if (typename, schema) in _KEPT_CODECS:
            return
        channel = await in_turn(self._sync.statement_channel)
        set_codec = lambda: channel.connection.set_type_codec(typename, schema, **codec)  # noqa: E731
        await in_turn(self._sync.send, channel, f"set_type_codec({typename!r})", set_codec, quiet=True)

    def get_server_pid(self) -> int:
        """The server process of the sandbox's connection."""
        return int(self._sync.session.connection.info.backend_pid)

    def get_server_version(self) -> Any:
        """asyncpg's ``ServerVersion`` of the server."""
        return self._sync.session.connection.raw.get_server_version()

    def __getattr__(self, name: str) -> Any:
        # asyncpg's other calls (listeners, COPY, advisory helpers) would bypass the sandbox's turns and
        # savepoints: refused by name rather than passed to the real connection.
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"asyncpg's Connection.{name} is not available on a sandbox connection (pytest-txscope offers "
            "execute, executemany, fetch, fetchrow, fetchval, prepare, cursor, transaction and set_type_codec)"
        )
