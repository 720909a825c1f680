"""The database backends the contract tests run on, and how to reach each from outside the library.

PostgreSQL and MySQL/MariaDB run when their URL is set (``TXSCOPE_TEST_POSTGRESQL_URL``,
``TXSCOPE_TEST_MYSQL_URL``) and are skipped with the reason otherwise. ``TXSCOPE_TEST_REQUIRE`` (a comma list,
as CI sets it) turns a skip into a failure, so that a backend CI must cover is never silently left out; a
family's name (``postgresql``) requires all its drivers.

Each server runs once per driver: ``postgresql`` and ``mysql`` through the default drivers (psycopg 3,
PyMySQL), ``postgresql-psycopg2`` and ``mysql-mysqldb`` through the same server with the driver named in the
URL's scheme (``postgresql+psycopg2://``).

Under pytest-xdist each worker runs its tests in a database of its own, named after the base database
(``<base>_gw0``): the tests create tables such as ``items`` under fixed names, which two workers must not share.
It is created when a test first needs it and dropped when the worker ends (`drop_worker_databases`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_txscope import DatabaseURL, Engine
from pytest_txscope.dialects import dialect_for_url
from pytest_txscope.provision import drop
from pytest_txscope.url import ASYNC_TWINS, DRIVERS

ALL = (
    "sqlite-file",
    "sqlite-memory",
    "postgresql",
    "postgresql-psycopg2",
    "mysql",
    "mysql-mysqldb",
)
NAMED_ONLY = ("postgresql-asyncpg",)
"""Backends a test gets only by naming them in ``@pytest.mark.backends(...)``: ``postgresql-asyncpg``, the sync
core over asyncpg on the driver loop, is the sandbox that serves SQLAlchemy's asyncpg engines (the asyncio
contract, the SQLAlchemy async tests and the async sandbox machine run on it). It is not in `ALL`: the sync
machine's ORM steps need a sync SQLAlchemy engine, which SQLAlchemy's asyncpg dialect cannot be, and three fault
paths (a lost connection mid-statement, a raw COMMIT through the driver, a thread interrupted mid-statement)
behave differently through the driver loop (issue 14's note)."""
ASYNC_DRIVERS = {
    "sqlite-aiosqlite": "aiosqlite",
    "postgresql-psycopg_async": "psycopg_async",
    "postgresql-asyncpg-aio": "asyncpg",
    "mysql-aiomysql": "aiomysql",
}
"""The asyncio drivers, by backend name: the contract's async flavour (`AsyncEngine`) runs on them. (asyncpg's
is ``postgresql-asyncpg-aio``: ``postgresql-asyncpg`` is the sync core over asyncpg on the driver loop.)"""
ALL_ASYNC = tuple(
    name
    for name, driver in ASYNC_DRIVERS.items()
    if driver in DRIVERS[name.split("-")[0]] + tuple(ASYNC_TWINS[name.split("-")[0]])
)
"""The asyncio drivers the URL layer knows (asyncpg once its dialect is registered)."""
ENV = {"postgresql": "TXSCOPE_TEST_POSTGRESQL_URL", "mysql": "TXSCOPE_TEST_MYSQL_URL"}
DRIVER_OF = {
    "postgresql-psycopg2": "psycopg2",
    "postgresql-asyncpg": "asyncpg",
    "mysql-mysqldb": "mysqldb",
    **ASYNC_DRIVERS,
}
"""The driver a backend names in its URL's scheme (the others use their family's default driver)."""
_TAGS = {
    "postgresql-psycopg2": "pg2",
    "postgresql-asyncpg": "apg",
    "mysql-mysqldb": "mdb",
    "postgresql-psycopg_async": "pga",
    "postgresql-asyncpg-aio": "apa",
    "mysql-aiomysql": "amy",
}
"""Short, so that generated database names (and their templates) stay within the servers' name limits."""
_unreachable: dict[str, str] = {}
_worker_databases: dict[str, str] = {}  # backend -> the URL of this worker's database, once created


def family_of(backend: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql``."""
    return backend.split("-", maxsplit=1)[0]


def server_url(backend: str) -> str | None:
    """The URL of a server backend from the environment, with the backend's driver in its scheme."""
    url = os.environ.get(ENV[family_of(backend)])
    if not url or backend not in DRIVER_OF:
        return url
    scheme, sep, rest = url.partition("://")
    return f"{scheme.partition('+')[0]}+{DRIVER_OF[backend]}{sep}{rest}"


def required() -> set[str]:
    return {b.strip() for b in os.environ.get("TXSCOPE_TEST_REQUIRE", "").split(",") if b.strip()}


def unavailable(backend: str) -> None:
    """Skip (or, when the backend is required, fail) a test whose backend cannot run."""
    reason = _reason(backend)
    if reason is None:
        return
    if backend in required() or family_of(backend) in required():
        pytest.fail(f"backend {backend} is required (TXSCOPE_TEST_REQUIRE) but {reason}", pytrace=False)
    pytest.skip(f"{backend}: {reason}")


def _reason(backend: str) -> str | None:
    if backend.startswith("sqlite"):
        return None
    if backend in ASYNC_DRIVERS:
        return _reason(family_of(backend))  # the server its sync twin reaches
    url = server_url(backend)
    if not url:
        return f"{ENV[family_of(backend)]} is not set"
    if backend not in _unreachable:
        try:
            engine = Engine.from_url(url)
            with engine.session() as s:
                s.fetchscalar("SELECT 1")
            engine.dispose()
            _unreachable[backend] = ""
        except Exception as exc:
            _unreachable[backend] = (
                f"cannot be reached at {DatabaseURL.parse(url)}: {type(exc).__name__}: {exc}"
            )
        else:
            served, named = type(engine.dialect).__name__, type(dialect_for_url(url)).__name__
            if (
                served != named
            ):  # a contract run on another driver than the one named passes without testing it
                _unreachable[backend] = (
                    f"Engine.from_url() serves {url.partition(':')[0]}:// with {served}, not {named}: the core "
                    "must choose the dialect with pytest_txscope.dialects.dialect_for_url()"
                )
    return _unreachable[backend] or None


@dataclass
class Backend:
    """One backend under test: its engine URL, and an independent connection to check from outside."""

    name: str
    url: str

    @property
    def family(self) -> str:
        return family_of(self.name)

    @property
    def has_peer(self) -> bool:
        """Whether a second, independent connection can see the same database (not for :memory:)."""
        return self.name != "sqlite-memory"

    @property
    def asynchronous(self) -> bool:
        """Whether the backend is an asyncio driver: its engines are `AsyncEngine`s behind a sync proxy."""
        return self.name in ASYNC_DRIVERS

    def engine(self, **options: Any) -> Any:
        """An `Engine`; for an asyncio driver, an `AsyncEngine` behind the sync proxy of tests/aio_harness.py
        (close either with `aio_harness.close_engine`)."""
        if self.asynchronous:
            from .aio_harness import async_engine

            return async_engine(self.url, **options)
        return Engine.from_url(self.url, **options)

    def peer(self) -> Peer:
        return Peer(self)


class Peer:
    """An independent autocommit connection, opened with the backend's driver directly, bypassing
    pytest-txscope (so that ``Session(peer.conn)`` wraps a connection of that driver)."""

    def __init__(self, backend: Backend) -> None:
        url = DatabaseURL.parse(backend.url)
        self.family = backend.family
        driver = None if backend.asynchronous else DRIVER_OF.get(backend.name)
        if self.family == "sqlite":
            import sqlite3

            self.conn: Any = sqlite3.connect(url.database, isolation_level=None)
        elif driver == "psycopg2":
            import psycopg2

            self.conn = psycopg2.connect(
                host=url.host,
                port=url.port,
                user=url.user,
                password=url.password or None,
                dbname=url.database,
            )
            self.conn.autocommit = True
        elif self.family == "postgresql":
            import psycopg

            self.conn = psycopg.connect(
                host=url.host,
                port=url.port,
                user=url.user,
                password=url.password or None,
                dbname=url.database,
                autocommit=True,
            )
        elif driver == "mysqldb":
            import MySQLdb

            self.conn = MySQLdb.connect(
                host=url.host or "localhost",
                port=url.port or 3306,
                user=url.user,
                password=url.password or "",
                database=url.database,
                autocommit=True,
            )
        else:
            import pymysql

            self.conn = pymysql.connect(
                host=url.host or "localhost",
                port=url.port or 3306,
                user=url.user,
                password=url.password or "",
                database=url.database,
                autocommit=True,
            )

    def fetchall(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(sql)
        rows = [tuple(r) for r in cur.fetchall()]
        cur.close()
        return rows

    def execute(self, sql: str) -> None:
        cur = self.conn.cursor()
        cur.execute(sql)
        cur.close()

    def close(self) -> None:
        self.conn.close()


def sibling_url(backend: Backend, suffix: str) -> str:
    """A database of its own on ``backend``'s server, named after the base test database plus ``suffix``.

    Deriving the name from the base database keeps concurrent runs pointed at different base databases
    (``txscope_test``, ``txscope_a_test``, ...) out of each other's way; under pytest-xdist ``backend`` is the
    worker's database (``<base>_gw0``), so workers stay out of each other's way too.
    """
    if backend.name in _TAGS:  # the same server as the default driver's: a name of its own there too
        suffix = f"{_TAGS[backend.name]}_{suffix}"
    return _with_suffix(backend.url, suffix)


def _with_suffix(url: str, suffix: str) -> str:
    base, _, query = url.partition("?")
    server, _, database = base.rpartition("/")
    return f"{server}/{database}_{suffix}" + (f"?{query}" if query else "")


def database_url(name: str) -> str | None:
    """The URL of the database this process's tests use on the server backend ``name`` (None if its variable
    is not set): the base test database, or under pytest-xdist the worker's own, ``<base>_<worker>``."""
    url = server_url(name)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    return _with_suffix(url, worker)


def _worker_database(name: str) -> str:
    """`database_url`, created empty the first time a test of this worker needs it (again if a run that
    crashed left one behind)."""
    url = database_url(name)
    assert url is not None
    family = family_of(name)
    if url == server_url(name) or family in _worker_databases:
        return url
    drop(DatabaseURL.parse(url), allow=())
    peer = Peer(Backend(family, os.environ[ENV[family]]))
    quote = '"' if family == "postgresql" else "`"
    try:
        peer.execute(f"CREATE DATABASE {quote}{DatabaseURL.parse(url).database}{quote}")
    finally:
        peer.close()
    _worker_databases[family] = url  # one per server: the drivers of a family share it
    return url


def drop_worker_databases() -> None:
    """Drop the databases `_worker_database` created (tests/conftest.py, when the session ends)."""
    while _worker_databases:
        _, url = _worker_databases.popitem()
        drop(DatabaseURL.parse(url), allow=())


def make_backend(name: str, tmp_path: Path) -> Iterator[Backend]:
    unavailable(name)
    if name == "sqlite-file":
        yield Backend(name, f"sqlite:///{tmp_path / 'contract.db'}")
    elif name == "sqlite-aiosqlite":
        yield Backend(name, f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}")
    elif name == "sqlite-memory":
        yield Backend(name, "sqlite:///:memory:")
    else:
        yield Backend(name, _worker_database(name))


TXSCOPE_TEST_PASSWORD = "Sekr1t-pw-txscope"
"""The password some tests connect with (`password_url`). tests/password_scan.py fails every test whose output,
report or pytester run shows it: no password may ever be printed. .ci/create_databases.py sets the same one."""
PASSWORD_USERS = {"mysql": "txscope_pw"}
"""The server user that has the password (created by .ci/create_databases.py). PostgreSQL here trusts local
connections, so its usual user takes the password and ignores it."""
_password_logins: dict[str, str] = {}


def password_url(backend: Backend) -> str:
    """``backend``'s URL with `TXSCOPE_TEST_PASSWORD` in it; skips (fails when the backend is required) if the
    server does not accept it, e.g. when the MariaDB user from .ci/create_databases.py does not exist."""
    url = DatabaseURL.parse(backend.url)
    user = PASSWORD_USERS.get(backend.family, url.user)
    host = f"{url.host or 'localhost'}" + (f":{url.port}" if url.port else "")
    query = backend.url.partition("?")[2]
    text = f"{url.scheme}://{user}:{TXSCOPE_TEST_PASSWORD}@{host}/{url.database}" + (
        f"?{query}" if query else ""
    )
    if backend.name not in _password_logins:
        try:
            engine = Engine.from_url(text)
            with engine.session() as s:
                s.fetchscalar("SELECT 1")
            engine.dispose()
            _password_logins[backend.name] = ""
        except Exception as exc:
            _password_logins[backend.name] = (
                f"user {user!r} cannot log in with the test password at {DatabaseURL.parse(text)} "
                f"({type(exc).__name__}: {exc}); run .ci/create_databases.py"
            )
    reason = _password_logins[backend.name]
    if reason:
        if backend.family in required():
            pytest.fail(
                f"backend {backend.name} is required (TXSCOPE_TEST_REQUIRE) but {reason}", pytrace=False
            )
        pytest.skip(f"{backend.name}: {reason}")
    return text


def integrity_error(dialect: Any) -> type[Exception]:
    """The driver's class for a violated constraint: DB-API's ``IntegrityError``, asyncpg's
    ``IntegrityConstraintViolationError`` (asyncpg is no DB-API driver)."""
    module = dialect.load_driver()
    error: type[Exception] = (
        getattr(module, "IntegrityError", None) or module.IntegrityConstraintViolationError
    )
    return error
