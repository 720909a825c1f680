"""What a driver's ``connect()`` call targets, read from its arguments as the driver reads them.

A `Target` holds the server and database a call connects to, and the call's arguments as keywords (the
positional ones named), which the sandbox connection's face honours. ``matches(url)`` says whether that is the
database of ``url``: the same SQLite file (paths resolved, ``file:`` URIs read), or the same server and
database name. The user is not compared (see `pytest_txscope.intercept`). Loopback spellings (``localhost``,
``127.0.0.1``, ``::1``, no host, a Unix socket directory) count as one host; a port left out is the
backend's default. PostgreSQL calls fall back on ``PGHOST``, ``PGPORT`` and ``PGDATABASE`` as libpq does.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from .url import DatabaseURL

__all__ = ["Target", "target_of"]

_LOCAL = {"", "localhost", "127.0.0.1", "::1"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_POSITIONAL: dict[str, tuple[str, ...]] = {
    "sqlite3": (
        "database",
        "timeout",
        "detect_types",
        "isolation_level",
        "check_same_thread",
        "factory",
        "cached_statements",
        "uri",
    ),
    "psycopg": ("conninfo",),
    "psycopg2": ("dsn", "connection_factory", "cursor_factory"),
    "pymysql": ("host", "user", "password", "database"),
    "MySQLdb": ("host", "user", "passwd", "db", "port"),
}
# psycopg's connect() keywords that are not connection parameters.
_PSYCOPG_OPTIONS = {"autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"}


@dataclass(frozen=True)
class Target:
    """The database a ``connect()`` call targets."""

    backend: str
    connect_kwargs: dict[str, Any] = field(compare=False)
    """The call's arguments as keywords."""
    path: str | None = None
    """SQLite: the file, resolved."""
    host: str = ""
    port: int | None = None
    database: str = ""

    def matches(self, url: DatabaseURL) -> bool:
        """Whether the call targets the database of ``url``."""
        if url.backend != self.backend:
            return False
        if self.backend == "sqlite":
            return self.path is not None and self.path == _sqlite_path(
                url.database, url.database.startswith("file:")
            )
        default = _DEFAULT_PORTS[self.backend]
        return (
            self.database == url.database
            and _host(self.host) == _host(url.host or "")
            and (self.port or default) == (url.port or default)
        )


def target_of(driver: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Target | None:
    """The target of ``driver.connect(*args, **kwargs)``; None when it cannot be the test database (an
    in-memory SQLite database) or its arguments do not parse (the driver then says what is wrong)."""
    names = _POSITIONAL[driver]
    given = dict(zip(names, args, strict=False))
    given.update(kwargs)
    try:
        if driver == "sqlite3":
            return _sqlite(given)
        if driver in ("psycopg", "psycopg2"):
            return _postgresql(driver, given)
        return _mysql(given)
    except Exception:  # a call that does not parse is the driver's to refuse, not ours
        return None


def _sqlite(given: dict[str, Any]) -> Target | None:
    database = given.get("database")
    if database is None:
        return None
    text = os.fsdecode(database) if isinstance(database, (bytes, os.PathLike)) else str(database)
    path = _sqlite_path(text, bool(given.get("uri")) and text.startswith("file:"))
    return None if path is None else Target("sqlite", given, path=path)


def _sqlite_path(text: str, uri: bool) -> str | None:
    if uri:
        location, _, query = text[len("file:") :].partition("?")
        if dict(parse_qsl(query)).get("mode") == "memory":
            return None
        if location.startswith("//"):  # file://host/path: only an empty host or localhost is allowed
            location = "/" + location[2:].partition("/")[2]
        text = unquote(location.partition("#")[0])
    if text in ("", ":memory:"):
        return None
    return os.path.realpath(text)


def _postgresql(driver: str, given: dict[str, Any]) -> Target:
    if driver == "psycopg":
        from_conninfo = importlib.import_module("psycopg.conninfo").conninfo_to_dict
        extra = {k: v for k, v in given.items() if k not in _PSYCOPG_OPTIONS and k != "conninfo"}
        params = from_conninfo(given.get("conninfo") or "", **extra)
    else:
        parse_dsn = importlib.import_module("psycopg2.extensions").parse_dsn
        params = parse_dsn(given["dsn"]) if given.get("dsn") else {}
        extra = {k: v for k, v in given.items() if k not in ("dsn", "connection_factory", "cursor_factory")}
        if "database" in extra:
            extra["dbname"] = extra.pop("database")
        params.update({k: v for k, v in extra.items() if v is not None})
    host = str(params.get("host") or os.environ.get("PGHOST") or "")
    port = params.get("port") or os.environ.get("PGPORT")
    user = params.get("user") or os.environ.get("PGUSER") or ""
    database = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return Target("postgresql", given, host=host, port=int(port) if port else None, database=str(database))


def _mysql(given: dict[str, Any]) -> Target:
    database = given.get("database") or given.get("db") or ""
    port = given.get("port") or None
    host = given.get("host") or ("" if given.get("unix_socket") else "localhost")
    return Target("mysql", given, host=str(host), port=int(port) if port else None, database=str(database))


def _host(host: str) -> str:
    """One spelling for the loopback host and Unix sockets (a directory or a socket file)."""
    return "" if host.lower() in _LOCAL or host.startswith("/") else host.lower()
