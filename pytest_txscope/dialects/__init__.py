"""Per-driver quirks behind one `Dialect` contract: one dialect per (backend, driver) pair.

A backend's SQL and error codes live in a base class (`PostgreSQLBackend`, `MySQLBackend`); each driver's
dialect adds how to connect and how to read the connection's state through that driver's API.
"""

from __future__ import annotations

from ..errors import UnsupportedConnectionError
from ..url import DRIVERS, DatabaseURL
from .base import CONSTRAINTS, SCHEMA, STATE, DBAPIConnection, DBAPICursor, Dialect
from .mysql import MySQLBackend, MySQLDialect
from .mysql_mysqldb import MySQLdbDialect
from .postgresql import PostgreSQLBackend, PostgreSQLDialect
from .postgresql_asyncpg import AsyncpgDialect
from .postgresql_psycopg2 import Psycopg2Dialect
from .sqlite import SQLiteDialect

__all__ = [
    "CONSTRAINTS",
    "DIALECTS",
    "SCHEMA",
    "STATE",
    "AsyncpgDialect",
    "DBAPIConnection",
    "DBAPICursor",
    "Dialect",
    "MySQLBackend",
    "MySQLDialect",
    "MySQLdbDialect",
    "PostgreSQLBackend",
    "PostgreSQLDialect",
    "Psycopg2Dialect",
    "SQLiteDialect",
    "dialect_for_backend",
    "dialect_for_connection",
    "dialect_for_module",
    "dialect_for_url",
    "driver_modules",
]

DIALECTS: dict[tuple[str, str], Dialect] = {
    (d.name, d.url_driver): d
    for d in (
        SQLiteDialect(),
        PostgreSQLDialect(),
        Psycopg2Dialect(),
        AsyncpgDialect(),
        MySQLDialect(),
        MySQLdbDialect(),
    )
}
"""Every dialect, by (backend, driver as spelt in URLs): ``("postgresql", "psycopg2")``."""

# Every driver the URL layer accepts has a dialect, and the first one it names for a backend is the default.
assert set(DIALECTS) == {(backend, driver) for backend, drivers in DRIVERS.items() for driver in drivers}


def dialect_for_backend(name: str) -> Dialect:
    """The dialect of a backend's default driver (``sqlite``: sqlite3, ``postgresql``: psycopg 3, ``mysql``:
    PyMySQL)."""
    return DIALECTS[name, DRIVERS[name][0]]


def dialect_for_url(url: DatabaseURL | str) -> Dialect:
    """The dialect for a URL: the driver its scheme names (``postgresql+psycopg2://``; an async driver's name,
    ``sqlite+aiosqlite://``, names its sync twin, whose dialect drives both), or the backend's default.
    Raises what `DatabaseURL.parse` raises for a text that does not parse."""
    parsed = url if isinstance(url, DatabaseURL) else DatabaseURL.parse(url)
    return DIALECTS[parsed.backend, parsed.sync_driver or DRIVERS[parsed.backend][0]]


def dialect_for_module(name: str) -> Dialect | None:
    """The dialect whose driver is the module named ``name`` (``psycopg2``, ``MySQLdb``...), or None."""
    for dialect in DIALECTS.values():
        if dialect.driver == name:
            return dialect
    return None


def driver_modules() -> tuple[str, ...]:
    """The import names of every supported driver, for messages and for telling driver code from the user's."""
    return tuple(d.driver for d in DIALECTS.values())


def dialect_for_connection(connection: object) -> Dialect:
    """The dialect whose driver made ``connection``; raise `UnsupportedConnectionError` otherwise."""
    for dialect in DIALECTS.values():
        if dialect.owns(connection):
            return dialect
    raise UnsupportedConnectionError(connection, tuple(d.driver_display for d in DIALECTS.values()))
