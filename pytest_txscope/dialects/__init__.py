"""Per-driver quirks, one module per backend, behind one `Dialect` contract."""

from __future__ import annotations

from ..errors import UnsupportedConnectionError
from .base import DBAPIConnection, DBAPICursor, Dialect
from .mysql import MySQLDialect
from .postgresql import PostgreSQLDialect
from .sqlite import SQLiteDialect

__all__ = [
    "DBAPIConnection",
    "DBAPICursor",
    "Dialect",
    "MySQLDialect",
    "PostgreSQLDialect",
    "SQLiteDialect",
    "dialect_for_backend",
    "dialect_for_connection",
]

_DIALECTS: dict[str, Dialect] = {d.name: d for d in (SQLiteDialect(), PostgreSQLDialect(), MySQLDialect())}


def dialect_for_backend(name: str) -> Dialect:
    """The dialect registered for a backend name (``sqlite``, ``postgresql``, ``mysql``)."""
    return _DIALECTS[name]


def dialect_for_connection(connection: object) -> Dialect:
    """The dialect whose driver made ``connection``; raise `UnsupportedConnectionError` otherwise."""
    for dialect in _DIALECTS.values():
        if dialect.owns(connection):
            return dialect
    raise UnsupportedConnectionError(connection, ("sqlite3", "psycopg (3)", "PyMySQL"))
