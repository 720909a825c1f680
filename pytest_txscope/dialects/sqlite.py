"""SQLite through the standard library's ``sqlite3``.

Python's ``sqlite3`` has a legacy mode that opens transactions by itself, only before DML, and lets
``Connection.commit()`` end them: a SAVEPOINT sent outside such a transaction starts one, and its RELEASE commits.
We therefore always run with ``isolation_level=None`` and send ``BEGIN`` ourselves, so that SAVEPOINT, DDL and
SELECT all happen inside a transaction we opened and roll back with it.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..bridge import LoopRunner
from ..errors import ConfigurationError, MissingDriverError, TransactionStateError
from ..sql import PyformatConverter
from ..url import DatabaseURL
from .adapters import AiosqliteAdapter
from .base import STATE, DBAPIConnection, DBAPICursor, Dialect

__all__ = ["SQLiteDialect"]

_PRAGMA = re.compile(r"\s*PRAGMA\s", re.IGNORECASE).match
_SETS_PRAGMA = re.compile(r"\s*PRAGMA\s+((?:\w+\.)?(\w+))\s*(=|\()", re.IGNORECASE)
# PRAGMAs that cannot be read back, and the value of a new connection.
_WRITE_ONLY = {"case_sensitive_like": "0", "ignore_check_constraints": "0"}
# PRAGMAs whose argument in parentheses asks a question rather than setting a value.
_QUESTIONS = {
    "table_info", "table_xinfo", "table_list", "index_info", "index_xinfo", "index_list", "foreign_key_list",
    "foreign_key_check", "integrity_check", "quick_check", "wal_checkpoint", "incremental_vacuum", "optimize",
}  # fmt: skip
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


def _flag(options: dict[str, str], key: str, default: bool) -> bool:
    value = options.pop(key, None)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigurationError(f"SQLite URL option {key}={value!r} is not a boolean; use {key}=on or {key}=off")


def _connect_args(url: DatabaseURL, kwargs: dict[str, Any]) -> tuple[str, bool, list[str]]:
    """The database path, whether it is a ``file:`` URI, and the statements a new connection runs first, from
    a URL's options (``timeout`` goes into ``kwargs``, with ``isolation_level=None``)."""
    options = url.options
    foreign_keys = _flag(options, "foreign_keys", True)
    journal_mode = options.pop("journal_mode", None)
    if "timeout" in options:
        try:
            kwargs.setdefault("timeout", float(options.pop("timeout")))
        except ValueError:
            raise ConfigurationError("SQLite URL option timeout must be a number of seconds") from None
    if options:
        raise ConfigurationError(
            f"unknown SQLite URL option(s) {', '.join(sorted(options))}; "
            "known: foreign_keys=on|off, journal_mode=wal|delete|..., timeout=SECONDS"
        )
    database = url.database
    uri = database.startswith("file:")
    if database != ":memory:" and not uri:
        database = os.path.abspath(database)
    kwargs["isolation_level"] = None
    # PRAGMA foreign_keys is ignored inside a transaction, so it is set first, before any BEGIN.
    setup = [f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}"]
    if journal_mode:
        setup.append(f"PRAGMA journal_mode = {journal_mode}")
    return database, uri, setup


class SQLiteDialect(Dialect):
    """SQLite (file or in-memory) through ``sqlite3``."""

    name = "sqlite"
    display = "SQLite"
    driver = "sqlite3"
    url_driver = "pysqlite"
    driver_display = "sqlite3"
    extra = "sqlite"

    def __init__(self) -> None:
        self._checker = PyformatConverter(backslash_escapes=False, hash_comments=False)

    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        sqlite3 = self.load_driver()
        database, uri, setup = _connect_args(url, kwargs)
        # Pooled connections move between threads, one thread at a time; the session layer serialises use.
        kwargs.setdefault("check_same_thread", False)

        def connect() -> DBAPIConnection:
            connection = sqlite3.connect(database, uri=uri, **kwargs)
            for statement in setup:
                connection.execute(statement)
            return connection

        return connect

    def connect_async(
        self, url: DatabaseURL, kwargs: dict[str, Any]
    ) -> Callable[[], Awaitable[DBAPIConnection]]:
        try:
            import aiosqlite
        except ImportError:
            raise MissingDriverError(self.display, "aiosqlite", "aiosqlite") from None
        database, uri, setup = _connect_args(url, kwargs)
        # aiosqlite runs the sqlite3 connection in a thread of its own; the adapter reads its transaction flag
        # from the loop's thread (a flag read, which sqlite3 allows from any thread when told).
        kwargs.setdefault("check_same_thread", False)
        what = f"aiosqlite connection to {url}"

        async def connect() -> DBAPIConnection:
            raw = await aiosqlite.connect(database, uri=uri, **kwargs)
            for statement in setup:
                await (await raw.execute(statement)).close()
            return AiosqliteAdapter(raw, LoopRunner(asyncio.get_running_loop(), what))

        return connect

    def pool_limit(self, url: DatabaseURL) -> int | None:
        # Every connection to ":memory:" is a database of its own: the engine keeps exactly one, and
        # sessions in other threads wait for it.
        return 1 if url.database == ":memory:" else None

    def owns(self, connection: object) -> bool:
        import sqlite3

        return isinstance(connection, (sqlite3.Connection, AiosqliteAdapter))

    def take_control(self, connection: DBAPIConnection) -> Callable[[], None]:
        if connection.in_transaction:
            raise TransactionStateError(
                "this sqlite3 connection has an open transaction; commit or roll it back before wrapping it "
                "in a Session, so that its work is neither committed nor lost without you knowing"
            )
        previous = connection.isolation_level
        autocommit = getattr(connection, "autocommit", -1)  # Python 3.12+: the PEP 249 autocommit attribute
        if autocommit is False:
            connection.autocommit = True
        else:
            connection.isolation_level = None

        def restore() -> None:
            if autocommit is False:
                connection.autocommit = False
            else:
                connection.isolation_level = previous

        return restore

    def in_transaction(self, connection: DBAPIConnection) -> bool:
        return bool(connection.in_transaction)

    def is_alive(self, connection: DBAPIConnection) -> bool:
        # No server to lose: only code closing the connection ends it, and any attribute read then raises.
        try:
            connection.in_transaction  # noqa: B018  # the read is the check
        except Exception:
            return False
        return True

    def statement_runner(self, connection: DBAPIConnection) -> tuple[Callable[[str, Any], DBAPICursor], Any]:
        # sqlite3's execute() shortcut takes () for "no parameters" and runs the text unchanged.
        return connection.execute, ()

    def transaction_probe(self, connection: DBAPIConnection) -> Callable[[], bool]:
        # A partial of a C getter: no Python frame per statement.
        probe: Callable[[], bool] = functools.partial(operator.attrgetter("in_transaction"), connection)
        return probe

    def execute(self, connection: DBAPIConnection, sql: str, params: Any) -> DBAPICursor:
        if params is None:
            return connection.execute(sql)
        return connection.execute(sql, params)

    def executemany(self, connection: DBAPIConnection, sql: str, seq: Sequence[Any]) -> DBAPICursor:
        return connection.executemany(sql, seq)

    def prepare_many(self, sql: str, seq: Sequence[Any]) -> tuple[str, Sequence[Any]]:
        # sqlite3 writes the rows before a bad one and only then fails; checking every row first makes a
        # parameter mistake leave nothing behind, as on the other backends.
        for params in seq:
            self._checker.convert(sql, params)
        return sql, seq

    def statement_watch(self) -> Callable[[str], int] | None:
        # PRAGMAs outlive a rollback, and a ":memory:" database cannot be reconnected to drop them.
        return lambda sql: STATE if _PRAGMA(sql) else 0

    def undo_state(self, connection: DBAPIConnection, sql: str) -> list[str] | None:
        found = _SETS_PRAGMA.match(sql)
        if found is None:
            return []  # a PRAGMA that only reads
        target, name, form = found.groups()
        if form == "(" and name.lower() in _QUESTIONS:
            return []
        row = connection.execute(f"PRAGMA {target}").fetchone()
        if row is None:
            default = _WRITE_ONLY.get(name.lower())
            return None if default is None else [f"PRAGMA {target} = {default}"]
        value = row[0]
        text = str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"
        return [f"PRAGMA {target} = {text}"]

    def run_control(self, connection: DBAPIConnection, statements: Sequence[str]) -> None:
        # No network: sending statements one by one costs nothing, and executescript() would COMMIT first.
        for statement in statements:
            connection.execute(statement)

    def describe(self, connection: DBAPIConnection) -> str:
        return "SQLite connection"
