"""SQLAlchemy inside the sandbox, through SQLAlchemy's public API only.

An application's SQLAlchemy ``Engine`` is pinned with the documented ``do_connect`` event: while a sandbox is
active, every DB-API connection the engine's pool asks for is the sandbox's `SandboxConnection`. A ``checkout``
event (see `pytest_txscope.sqlalchemy_pool`) re-points a pooled connection of an ended sandbox at the current
one when it was made on the same real connection, so that the pool does not reconnect at every test, and
refuses other pooled connections (real ones, an outer sandbox's) with ``DisconnectionError``, so that the
pool replaces them. Whatever the application builds on the engine (``engine.connect()``,
``engine.begin()``, ``Session(engine)``, ``sessionmaker(bind=engine)``, a ``scoped_session`` made at import
time) reaches the sandbox: SQLAlchemy's commits are savepoint releases, its rollbacks roll back to the savepoint,
its ``begin_nested()`` savepoints nest inside, and nothing survives the sandbox. SQLite needs no pysqlite
transaction fix on top: the sandbox connection opens its transactions itself, so SQLite savepoints work.

`current_session()` is the ORM session of the running sandboxed test (the ``sa_session`` fixture), made for
factory_boy's ``sqlalchemy_session_factory``.
"""

from __future__ import annotations

import functools
import inspect
import os
import weakref
from typing import TYPE_CHECKING, Any

from .dbapi import SandboxConnection
from .engine_kinds import register_engine_kind
from .errors import TxScopeError, UnpinnedEngineError
from .places import add_library, caller_place, describe_place
from .sandbox import Sandbox
from .sqlalchemy_async import async_drivername, is_async_engine_object, sandbox_connection_of, sync_engine_of
from .sqlalchemy_checks import (
    ASYNC_ONLY_DRIVERS,
    check_pinnable,
    describe_engine,
    engine_url,
    same_database,
    unpinned_error,
)
from .sqlalchemy_pool import (
    attach,
    connecting,
    connecting_for_real,
    detach,
    pin_of,
    pinned_connections,
    served_connections,
    set_pin,
)
from .url import DatabaseURL

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine import Engine as SAEngine
    from sqlalchemy.orm import Session as ORMSession


__all__ = [
    "NoSandboxError",
    "attach",
    "connecting",
    "current_session",
    "describe_engine",
    "detach",
    "dispose_engine",
    "is_sqlalchemy_engine",
    "pinned_connections",
    "refused",
    "served_connections",
    "sqlalchemy_async_url",
    "sqlalchemy_url",
    "watch_unpinned",
]

add_library("sqlalchemy")  # messages name the user's line that called SQLAlchemy, not SQLAlchemy's own
# The ORM session of each sandbox, and the SQLAlchemy engine per database those sessions are bound to.
_orm_sessions: weakref.WeakKeyDictionary[Sandbox, ORMSession] = weakref.WeakKeyDictionary()
_test_engines: dict[str, SAEngine] = {}
# The test database each engine was found pinnable to.
_checked: weakref.WeakKeyDictionary[Any, DatabaseURL] = weakref.WeakKeyDictionary()


class NoSandboxError(TxScopeError, RuntimeError):
    """`current_session()` was called where no sandbox is active."""

    def __init__(self) -> None:
        super().__init__(
            "pytest_txscope.sqlalchemy.current_session() found no active sandbox: it is meant for factories used "
            "inside a sandboxed test; request the sa_session, db_session or db_sandbox fixture, or mark the test "
            "@pytest.mark.txscope"
        )


def is_sqlalchemy_engine(obj: object) -> bool:
    """Whether ``obj`` is a SQLAlchemy ``Engine`` or ``AsyncEngine`` (checked without importing SQLAlchemy)."""
    if is_async_engine_object(obj):
        return True
    return any(
        c.__module__.startswith("sqlalchemy.") and c.__name__ == "Engine" for c in type(obj).__mro__
    ) and hasattr(obj, "dispose")


def sqlalchemy_url(url: DatabaseURL) -> URL:
    """The SQLAlchemy URL for a pytest-txscope URL, on the same driver (psycopg 3, psycopg2, PyMySQL,
    mysqlclient, sqlite3): SQLAlchemy spells the drivers as pytest-txscope's URLs do."""
    from sqlalchemy.engine import URL

    from .dialects import dialect_for_url

    query = dict(url.query)
    if url.backend == "sqlite":
        # pytest-txscope's own SQLite options: applied by its connections, unknown to pysqlite.
        for option in ("journal_mode", "foreign_keys", "timeout"):
            query.pop(option, None)
    return URL.create(
        # SQLite's only driver is SQLAlchemy's default there: the plain name, as the URLs users write.
        "sqlite" if url.backend == "sqlite" else f"{url.backend}+{dialect_for_url(url).url_driver}",
        username=url.user,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database or None,
        query=query,
    )


def sqlalchemy_async_url(url: DatabaseURL) -> URL:
    """The SQLAlchemy URL for ``create_async_engine()`` on the database of ``url``, through the asyncio twin of
    its driver, which pytest-txscope can pin to a sandbox on ``url``: ``sqlite+aiosqlite://`` for SQLite,
    ``postgresql+psycopg://`` (psycopg's async side) for psycopg 3, ``mysql+aiomysql://`` for PyMySQL.

    Raises `ConfigurationError` for a driver with no such twin (psycopg2, mysqlclient)."""
    return sqlalchemy_url(url).set(drivername=async_drivername(url))


def pin_to_sandbox(sandbox: Sandbox, sa_engines: tuple[Any, ...]) -> None:
    """Pin the application's SQLAlchemy engines (``Engine`` or ``AsyncEngine``) to ``sandbox`` until it stops.

    Raises `EngineMismatchError` for an engine that cannot be pinned there (see `check_pinnable`), before
    anything connects."""
    url = sandbox.engine.url
    for given in sa_engines:
        sa_engine = sync_engine_of(given)
        if url is not None and _checked.get(sa_engine) != url:  # checked once per engine and database
            check_pinnable(
                given, url, sandbox.engine.dialect.url_driver, os.environ.get("PYTEST_XDIST_WORKER")
            )
            _checked[sa_engine] = url
        outer = pin_of(sa_engine)
        attach(sa_engine, sandbox.connection, adopt=sandbox.adopt)
        sandbox.add_cleanup(functools.partial(set_pin, sa_engine, outer))


# ------------------------------------------------------------------------------- engines nobody pinned
# The sandboxes whose database is watched (the plugin's tests'), the innermost last; each watched sandbox's
# refusals; whether each unpinned engine is aimed at a database.
_watched: list[Sandbox] = []
_refused: weakref.WeakKeyDictionary[Sandbox, list[UnpinnedEngineError]] = weakref.WeakKeyDictionary()
_aimed: weakref.WeakKeyDictionary[Any, tuple[DatabaseURL, bool]] = weakref.WeakKeyDictionary()


def watch_unpinned(sandbox: Sandbox) -> None:
    """Until ``sandbox`` stops, refuse every SQLAlchemy engine, sync or async, that connects to its database
    without being pinned to it: `UnpinnedEngineError` at ``engine.connect()`` (or the ORM's first statement),
    before anything is sent. `refused()` lists those errors for the end of the test, in case the code caught
    them. One class-level SQLAlchemy event covers every engine, made before or after; for pinned engines it
    costs one type check per connect."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine as SAEngine

    if sandbox.engine.url is None:
        return
    if not event.contains(SAEngine, "engine_connect", _on_engine_connect):
        event.listen(SAEngine, "engine_connect", _on_engine_connect)
    _watched.append(sandbox)
    sandbox.add_cleanup(lambda: _watched.remove(sandbox))


def refused(sandbox: Sandbox) -> list[UnpinnedEngineError]:
    """The `UnpinnedEngineError` raised while ``sandbox`` was watched (see `watch_unpinned`)."""
    return _refused.pop(sandbox, [])


def _on_engine_connect(connection: Any) -> None:
    if not _watched or sandbox_connection_of(connection.connection.dbapi_connection) is not None:
        return
    engine = connection.engine
    if connecting_for_real(engine):
        return
    sandbox = _watched[-1]
    url = sandbox.engine.url
    assert url is not None
    aimed = _aimed.get(engine)
    if aimed is None or aimed[0] != url:
        aimed = _aimed[engine] = (url, same_database(engine_url(engine), url))
    if not aimed[1]:
        return
    error = unpinned_error(engine, url, describe_place(caller_place(inspect.currentframe())))
    _refused.setdefault(sandbox, []).append(error)
    # Closed at once, not pooled: a pooled real connection of an engine nobody disposes of would only be
    # closed when collected, with a ResourceWarning from the driver in some later test.
    connection.invalidate()
    raise error


def _test_engine(url: DatabaseURL) -> SAEngine:
    """The SQLAlchemy engine behind every test's ORM session on ``url``: its connections are the sandbox's."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import QueuePool

    key = str(url)
    engine = _test_engines.get(key)
    if engine is None:
        owners: weakref.WeakKeyDictionary[Any, Sandbox] = weakref.WeakKeyDictionary()

        def provide() -> SandboxConnection:
            sandbox = Sandbox.current()
            if sandbox is None:
                raise NoSandboxError
            owners[connection := sandbox.connection()] = sandbox
            return connection

        # Pooled, not a NullPool: a new connection reruns the dialect's on-connect set-up, at every checkout
        # (twice per test for a commit and a query), which on SQLite cost more than the ORM's own work. A
        # pooled connection serves only the current sandbox (checked at checkout: never an outer sandbox's in
        # a nested one; an ended sandbox's is re-pointed, so that later tests do not reconnect either);
        # unlimited overflow, as with NullPool, so that a test's threads never wait.
        engine = create_engine(sqlalchemy_url(url), poolclass=QueuePool, pool_size=5, max_overflow=-1)
        event.listen(engine, "checkout", lambda dbapi_connection, *_: _check_owner(owners, dbapi_connection))
        attach(engine, provide)
        _test_engines[key] = engine
    return engine


def _check_owner(owners: weakref.WeakKeyDictionary[Any, Sandbox], dbapi_connection: Any) -> None:
    """Let a pooled connection serve only the current sandbox: one made by a sandbox that has ended is
    re-pointed at it when that is safe (`Sandbox.adopt`: same real connection); any other is refused, and the
    pool then connects anew."""
    from sqlalchemy.exc import DisconnectionError

    # The engine's first, real connection (see `attach`) is refused by the pin's own check.
    if not isinstance(dbapi_connection, SandboxConnection):
        return
    current = Sandbox.current()
    if owners.get(dbapi_connection) is current:
        return
    # An outer sandbox's connection (still active) is never adopted by a nested one: `adopt` refuses it.
    if current is not None and current.adopt(dbapi_connection):
        owners[dbapi_connection] = current
        return
    raise DisconnectionError("pytest-txscope: the pooled connection belongs to another sandbox")


def session_for(sandbox: Sandbox) -> ORMSession:
    """The ORM session of ``sandbox`` (the same one on every call), closed when the sandbox stops."""
    session = _orm_sessions.get(sandbox)
    if session is None:
        from sqlalchemy.orm import Session as ORMSession

        if sandbox.engine.url is None:
            raise TxScopeError(
                "an ORM session needs the sandbox's engine to have a URL (Engine.from_url) to choose the "
                "SQLAlchemy dialect; build the engine from a URL"
            )
        session = ORMSession(bind=_test_engine(sandbox.engine.url))
        _orm_sessions[sandbox] = session
        sandbox.add_cleanup(session.close)
    return session


def existing_session(sandbox: Sandbox) -> ORMSession | None:
    """The ORM session of ``sandbox`` if one was made, without making one."""
    return _orm_sessions.get(sandbox)


def share_session(sandbox: Sandbox, session: ORMSession) -> None:
    """Let ``sandbox`` (nested in the one that made ``session``) use that ORM session as its own."""
    _orm_sessions[sandbox] = session


def current_session() -> ORMSession:
    """The ORM session of the running sandboxed test (the ``sa_session`` fixture's session).

    Made for factory_boy: ``sqlalchemy_session_factory = pytest_txscope.sqlalchemy.current_session``. Outside a
    sandboxed test it raises `NoSandboxError` (instead of factory_boy's ``'NoneType' object has no attribute
    'add'``).
    """
    sandbox = Sandbox.current()
    if sandbox is None:
        raise NoSandboxError
    return session_for(sandbox)


def dispose_engine(sa_engine: Any) -> None:
    """Close an application engine's pooled connections at the end of the run. An ``AsyncEngine``'s pool is
    only let go of: its connections belong to event loops that have ended, where they cannot be closed."""
    if is_async_engine_object(sa_engine) or sa_engine.dialect.is_async:
        sync_engine_of(sa_engine).dispose(close=False)
    else:
        sa_engine.dispose()


def dispose_test_engines() -> None:
    """Close the SQLAlchemy engines made for tests' ORM sessions (end of the run)."""
    for engine in _test_engines.values():
        detach(engine)
        engine.dispose()
    _test_engines.clear()


def create_all(target: Any, url: DatabaseURL) -> None:
    """``create_all`` for a ``MetaData`` or a declarative base (anything with ``.metadata``) on ``url``."""
    from sqlalchemy import MetaData, create_engine

    metadata = target if isinstance(target, MetaData) else getattr(target, "metadata", None)
    if not isinstance(metadata, MetaData):
        raise TypeError(f"{target!r} is neither a SQLAlchemy MetaData nor a declarative base")
    if url.driver in ASYNC_ONLY_DRIVERS:  # no sync SQLAlchemy engine on asyncpg: an AsyncEngine, apart
        from .sqlalchemy_async import create_all_apart

        create_all_apart(metadata, sqlalchemy_async_url(url))
        return
    engine = create_engine(sqlalchemy_url(url))
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def is_metadata(target: object) -> bool:
    """Whether ``target`` is a SQLAlchemy ``MetaData`` or a declarative base (without importing SQLAlchemy)."""
    for obj in (target, getattr(target, "metadata", None)):
        if any(
            c.__module__.startswith("sqlalchemy.") and c.__name__ == "MetaData" for c in type(obj).__mro__
        ):
            return True
    return False


register_engine_kind(is_sqlalchemy_engine, lambda sandbox, sa_engine: pin_to_sandbox(sandbox, (sa_engine,)))
