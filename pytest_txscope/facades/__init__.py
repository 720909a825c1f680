"""Per-driver faces of the sandbox's DB-API connection.

`pytest_txscope.dbapi.SandboxConnection` is what every driver shares: transactions become savepoints, and what
would end the sandbox's transaction is refused. Each driver's module here adds what code written for that driver
expects of its connection (sqlite3's ``row_factory`` and ``detect_types``, psycopg's ``copy()``, PyMySQL's
``callproc()`` ...), so that the sandbox connection behaves as the driver's own.
"""

from __future__ import annotations

import importlib

from ..dbapi import SandboxConnection
from .aio_base import SandboxFace

__all__ = ["async_face_for", "facade_for"]

# Driver import name -> "module:class" of its face; a driver not listed gets the shared SandboxConnection.
_FACES: dict[str, str] = {
    "sqlite3": ".sqlite:SQLiteConnection",
    "psycopg": ".psycopg:PsycopgConnection",
    "psycopg2": ".psycopg2:Psycopg2Connection",
    "asyncpg": ".asyncpg:AsyncpgConnection",
    "pymysql": ".mysql:PyMySQLConnection",
    "MySQLdb": ".mysql:MySQLdbConnection",
}

# Driver import name of the sandbox's connection -> "module:class" of the async face of its asyncio twin
# (aiosqlite over sqlite3, psycopg's AsyncConnection over psycopg, aiomysql over PyMySQL; asyncpg's own API over
# the asyncpg sandbox connection).
_ASYNC_FACES: dict[str, str] = {
    "sqlite3": ".aio_sqlite:AioSQLiteConnection",
    "psycopg": ".aio_psycopg:AioPsycopgConnection",
    "pymysql": ".aio_mysql:AioMySQLConnection",
    "asyncpg": ".aio_asyncpg:AioAsyncpgConnection",
}


def facade_for(driver: str) -> type[SandboxConnection]:
    """The `SandboxConnection` class for the driver whose import name is ``driver`` (``sqlite3``, ``psycopg``)."""
    where = _FACES.get(driver)
    if where is None:
        return SandboxConnection
    module_name, _, class_name = where.partition(":")
    face: type[SandboxConnection] = getattr(importlib.import_module(module_name, __name__), class_name)
    return face


def async_face_for(driver: str) -> type[SandboxFace] | None:
    """The `SandboxFace` class that gives a sandbox connection of the driver ``driver`` (import name:
    ``sqlite3``, ``psycopg``, ``pymysql``, ``asyncpg``) the API of that driver's asyncio twin (asyncpg's own);
    None for a driver that has none here."""
    where = _ASYNC_FACES.get(driver)
    if where is None:
        return None
    module_name, _, class_name = where.partition(":")
    face: type[SandboxFace] = getattr(importlib.import_module(module_name, __name__), class_name)
    return face
