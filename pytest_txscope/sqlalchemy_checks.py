"""Which SQLAlchemy engines can be pinned to a sandbox, and what to tell the user about those that cannot.

Pinning hands an engine's pool the sandbox's connection: the engine must speak the test database's backend
through the driver the sandbox's connection is made with (for an asyncio engine: through the async twin of that
driver, see `ASYNC_TWINS`), and be aimed at the test database itself, or its work would land there silently.
An engine that is not pinned but connects to the test database during a sandboxed test commits for
real: `unpinned_error` says which engine, where, and the ``txscope_engines`` line that pins it.

SQLAlchemy is never imported here: engines are read through their public attributes.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from typing import Any

from .errors import EngineMismatchError, UnpinnedEngineError
from .url import DRIVERS, SCHEMES, DatabaseURL

__all__ = [
    "ASYNC_ONLY_DRIVERS",
    "ASYNC_TWINS",
    "check_pinnable",
    "describe_engine",
    "engine_url",
    "import_path_of",
    "is_async_engine",
    "same_database",
    "unpinned_error",
]

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")

ASYNC_TWINS: dict[str, tuple[str, str]] = {
    "aiosqlite": ("sqlite", "pysqlite"),
    "psycopg": ("postgresql", "psycopg"),
    "aiomysql": ("mysql", "pymysql"),
    "asyncpg": ("postgresql", "asyncpg"),
}
"""An asyncio dialect's driver (as SQLAlchemy names it) -> the backend and the driver (as URLs spell it) the
sandbox's connection must be made with to serve it: aiosqlite runs on sqlite3, psycopg's async side is psycopg
3's, aiomysql is a port of PyMySQL (same conversions), asyncpg is served by an asyncpg sandbox itself."""


ASYNC_ONLY_DRIVERS = frozenset({"asyncpg"})
"""Sandbox drivers SQLAlchemy has only an asyncio dialect for: no sync ``Engine`` on them can be pinned."""


def engine_url(sa_engine: Any) -> DatabaseURL:
    """The database a SQLAlchemy engine (or ``AsyncEngine``) is aimed at, as a `DatabaseURL` (any driver)."""
    url = sa_engine.url
    name = url.get_backend_name()
    backend = SCHEMES.get(name, name)
    database = url.database or (":memory:" if backend == "sqlite" else "")
    query = tuple((k, v if isinstance(v, str) else ",".join(v)) for k, v in url.query.items())
    return DatabaseURL(
        backend=backend,
        scheme=url.drivername,
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port,
        database=database,
        query=query,
        driver=url.get_driver_name(),
    )


def describe_engine(sa_engine: Any) -> str:
    """``Engine(postgresql+psycopg://app:***@db/shop_test)``: the engine's class and URL, every password
    masked (SQLAlchemy's own repr shows a password given in the query string)."""
    return f"{type(sa_engine).__name__}({engine_url(sa_engine)})"


def is_async_engine(obj: object) -> bool:
    """Whether ``obj`` is a SQLAlchemy ``AsyncEngine``, or the ``sync_engine`` of one (an asyncio dialect)."""
    if any(c.__module__.startswith("sqlalchemy.") and c.__name__ == "AsyncEngine" for c in type(obj).__mro__):
        return True
    return bool(getattr(getattr(obj, "dialect", None), "is_async", False))


def same_database(app: DatabaseURL, test: DatabaseURL) -> bool:
    """Whether ``app`` names the database ``test`` names: the same SQLite file (resolved) or in-memory
    database, or the same server (host and port, defaults filled in, local names as one) and database name.
    The user is not compared: the pinned engine runs as the test database's user on its connection."""
    if app.backend != test.backend:
        return False
    if app.backend == "sqlite":
        return _sqlite_target(app) == _sqlite_target(test)
    if app.database != test.database:
        return False
    default = _DEFAULT_PORTS.get(app.backend)
    if (app.port or default) != (test.port or default):
        return False
    return _same_host(app.host or "", test.host or "")


def _sqlite_target(url: DatabaseURL) -> str:
    database = url.database
    if (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or url.options.get("mode") == "memory"
    ):
        return ":memory:"
    path = database[len("file:") :] if database.startswith("file:") else database
    return os.path.realpath(path.partition("?")[0])


def _same_host(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    if a == b or (a in _LOCAL_HOSTS and b in _LOCAL_HOSTS):
        return True
    return bool(_addresses(a) & _addresses(b))


@functools.lru_cache(maxsize=64)
def _addresses(host: str) -> frozenset[str]:
    """The addresses ``host`` resolves to (looked up once per run); none for a name that does not resolve."""
    if host in _LOCAL_HOSTS:
        return frozenset({"127.0.0.1", "::1"})
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(host, None))
    except (OSError, UnicodeError):
        return frozenset()


def check_pinnable(sa_engine: Any, test: DatabaseURL, test_driver: str, worker: str | None) -> None:
    """Raise `EngineMismatchError` unless ``sa_engine`` can be pinned to a sandbox on ``test``, whose connection
    is made with the driver spelt ``test_driver`` in URLs (``psycopg2``); ``worker`` is the pytest-xdist worker."""
    shown, app = describe_engine(sa_engine), engine_url(sa_engine)
    if app.backend != test.backend:
        raise EngineMismatchError(
            shown,
            f"speaks {sa_engine.dialect.name} but the test database is {test.backend} ({test})",
            "point the application's engine at the test database (for example from the same environment "
            "variable)",
        )
    driver = sa_engine.dialect.driver
    if is_async_engine(sa_engine):
        _check_async_driver(shown, driver, test, test_driver)
    else:
        _check_driver(shown, driver, test, test_driver)
    if not same_database(app, test):
        raise EngineMismatchError(shown, *_other_database(app, test, worker))


def _check_driver(shown: str, driver: str, test: DatabaseURL, test_driver: str) -> None:
    """Refuse a sync engine on a driver the sandbox does not drive, or on another driver than the sandbox's."""
    # SQLAlchemy's asyncpg dialect is asyncio only: a sync Engine on it fails at its first connect; not offered.
    sync = [d for d in DRIVERS[test.backend] if d not in ASYNC_ONLY_DRIVERS]
    if driver not in sync:
        known = ", ".join(f"{test.backend}+{d}://" for d in sync)
        raise EngineMismatchError(
            shown,
            f"uses the {driver} driver, which pytest-txscope cannot pin (its sandbox connections are made with "
            f"one of: {known})",
            f"create the engine on one of those, the same as the test database's ({test.scheme}://)",
        )
    if driver != test_driver:
        # SQLAlchemy's dialect for one driver calls that driver's API on the connections it is handed.
        raise EngineMismatchError(
            shown,
            f"uses the {driver} driver but the test database is reached through {test_driver} ({test})",
            f"name the same driver in both URLs, e.g. {test.backend}+{driver}:// for the test database",
        )


def _check_async_driver(shown: str, driver: str, test: DatabaseURL, test_driver: str) -> None:
    """Refuse an asyncio engine whose driver has no sync twin here, or whose twin is not the sandbox's driver."""
    twin = ASYNC_TWINS.get(driver)
    if twin is None or twin[0] != test.backend:
        known = ", ".join(f"{b}+{d}://" for d, (b, _) in ASYNC_TWINS.items() if b == test.backend)
        raise EngineMismatchError(
            shown,
            f"uses the asyncio driver {driver}, which pytest-txscope cannot pin (it pins {known})",
            f"create the engine with {known}",
        )
    if twin[1] != test_driver:
        raise EngineMismatchError(
            shown,
            f"uses the {driver} driver, which pytest-txscope serves from a sandbox on {twin[1]}, but the test "
            f"database is reached through {test_driver} ({test})",
            f"make the test database's URL {test.backend}+{twin[1]}://",
        )


def _other_database(app: DatabaseURL, test: DatabaseURL, worker: str | None) -> tuple[str, str]:
    from .provision import worker_url

    problem = (
        f"is aimed at another database than the test database {test}; pinning would run its work in the test "
        "database without a word, and no txscope_databases line names its database"
    )
    fix = (
        f"if the application uses a second database, add the ini line 'txscope_databases = {_name_for(app)} = "
        f"{app}' and opt tests in with @pytest.mark.txscope(databases=['default', '{_name_for(app)}']); else "
        "point the engine at the test database (build its URL from the same setting as txscope_url, or "
        "from pytest_txscope.sqlalchemy.sqlalchemy_url(db_engine.url) in a session-scoped fixture that runs "
        "before the first sandboxed test), or leave it out of txscope_engines"
    )
    if worker and same_database(worker_url(app, worker), test):
        problem += (
            f"; under pytest-xdist each worker runs on a database of its own (here {test.database or test}), "
            "named after the configured one"
        )
    return problem, fix


def _name_for(url: DatabaseURL) -> str:
    """A name for ``url``'s database in a ``txscope_databases`` line: its name (a SQLite file's stem)."""
    base = os.path.basename(url.database.partition("?")[0]).partition(".")[0]
    name = "".join(c if c.isalnum() else "_" for c in base).strip("_")
    return name if name and not name[0].isdigit() else "other"


def import_path_of(sa_engine: Any) -> str | None:
    """``package.module:attribute`` of a module attribute holding ``sa_engine`` (or the ``AsyncEngine`` around
    it), preferring the application's modules to tests and conftests; None when no module holds it."""
    found: list[str] = []
    for name, module in list(sys.modules.items()):
        if module is None or name.startswith(("sqlalchemy", "pytest_txscope", "_pytest", "__main__")):
            continue
        try:
            attributes = list(vars(module).items())
        except TypeError:
            continue
        for attribute, value in attributes:
            if value is sa_engine or (
                type(value).__name__ == "AsyncEngine" and getattr(value, "sync_engine", None) is sa_engine
            ):
                found.append(f"{name}:{attribute}")
    tests = [p for p in found if p.rpartition(".")[2].partition(":")[0].startswith(("test_", "conftest"))]
    return next((p for p in found if p not in tests), found[0] if found else None)


def unpinned_error(sa_engine: Any, test: DatabaseURL, place: str) -> UnpinnedEngineError:
    """The error for ``sa_engine``, not pinned, connecting to the test database at ``place`` in a sandbox."""
    path = import_path_of(sa_engine)
    line = f"add the line '{path}'" if path else "add its import path (package.module:attribute)"
    fix = (
        f"{line} to txscope_engines so that the sandbox pins it, or mark the test "
        "@pytest.mark.txscope(commit=True) if it must commit for real"
    )
    shown = (
        f"AsyncEngine({engine_url(sa_engine)})" if is_async_engine(sa_engine) else describe_engine(sa_engine)
    )
    return UnpinnedEngineError(shown, str(test), place, fix)
