"""SQLAlchemy inside the sandbox, through SQLAlchemy's public API only.

An application's SQLAlchemy ``Engine`` is pinned with the documented ``do_connect`` event: while a sandbox is
active, every DB-API connection the engine's pool asks for is the sandbox's `SandboxConnection`; a ``checkout``
event refuses pooled connections of another sandbox (or real ones) with ``DisconnectionError``, so that the pool
replaces them. Whatever the application builds on the engine (``engine.connect()``,
``engine.begin()``, ``Session(engine)``, ``sessionmaker(bind=engine)``, a ``scoped_session`` made at import
time) reaches the sandbox: SQLAlchemy's commits are savepoint releases, its rollbacks roll back to the savepoint,
its ``begin_nested()`` savepoints nest inside, and nothing survives the sandbox. SQLite needs no pysqlite
transaction fix on top: the sandbox connection opens its transactions itself, so SQLite savepoints work.

`current_session()` is the ORM session of the running sandboxed test (the ``sa_session`` fixture), made for
factory_boy's ``sqlalchemy_session_factory``.
"""

from __future__ import annotations

import inspect
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .dbapi import SandboxConnection
from .engine_kinds import register_engine_kind
from .errors import TxScopeError, UnpinnedEngineError
from .places import add_library, caller_place, describe_place
from .sandbox import Sandbox
from .sqlalchemy_async import (
    adapter_maker,
    async_drivername,
    initialize_apart,
    is_async_engine_object,
    sandbox_connection_of,
    sync_engine_of,
)
from .sqlalchemy_checks import (
    ASYNC_ONLY_DRIVERS,
    check_pinnable,
    describe_engine,
    engine_url,
    same_database,
    unpinned_error,
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
_listening: weakref.WeakSet[Any] = weakref.WeakSet()


class _Pin:
    """What a pinned engine's pool gets instead of a new connection, and what this pinning handed out (the
    connections pooled from an earlier pinning are stale)."""

    def __init__(self, provider: Callable[[], Any], wrap: Callable[[Any], Any] | None = None) -> None:
        self.provider = provider
        self.wrap = wrap
        """What the pool gets instead of the provider's connection: an async engine's adapter around it."""
        self.served: weakref.WeakSet[Any] = weakref.WeakSet()


# The sessions of sandbox connections a pinned engine's pool made and has not checked out yet: what they send
# meanwhile is the SQLAlchemy dialect's set-up of a new connection (MySQL's SET NAMES), not the application's.
_connecting: weakref.WeakSet[Any] = weakref.WeakSet()
# Each pinned engine's pin; absent: the engine connects normally.
_pins: weakref.WeakKeyDictionary[Any, _Pin] = weakref.WeakKeyDictionary()
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


def _do_connect(dialect: Any, connection_record: Any, cargs: Any, cparams: Any, *, engine_ref: Any) -> Any:
    engine = engine_ref()
    pin = _pins.get(engine) if engine is not None else None
    if pin is None:
        return None
    connection = pin.provider()
    pin.served.add(connection)
    _connecting.add(connection.session)  # until its first checkout: the dialect's set-up statements run
    return connection if pin.wrap is None else pin.wrap(connection)


def _check_out(dbapi_connection: Any, record: Any, proxy: Any, *, engine_ref: Any) -> None:
    # A pooled connection that belongs to another time (a real one while the engine is pinned, a sandbox's
    # once that sandbox ended or the engine is unpinned) is refused with the error SQLAlchemy documents for
    # this: its pool discards the connection and connects again, which reaches `_do_connect`. Checking here
    # instead of disposing of the pool at every pin and unpin keeps a pinned test's cost to one connect.
    from sqlalchemy.exc import DisconnectionError

    engine = engine_ref()
    pin = _pins.get(engine) if engine is not None else None
    connection = sandbox_connection_of(dbapi_connection)  # an async engine's: under SQLAlchemy's adapter
    if connection is not None:
        _connecting.discard(connection.session)
        if pin is not None and connection in pin.served and not connection.session.closed:
            return
    elif pin is None:
        return
    raise DisconnectionError("pytest-txscope: the pooled connection belongs to another sandbox state")


def attach(sa_engine: Any, provider: Callable[[], Any], *, initialize: bool = True) -> None:
    """Make ``sa_engine``'s pool take its DB-API connections from ``provider`` until `detach()`.

    Connections pooled before are not used meanwhile: the pool replaces them when they are checked out.
    ``initialize=False`` skips the real first connection (for a provider that only refuses). An
    ``AsyncEngine`` (or its ``sync_engine``) gets SQLAlchemy's asyncio adapter around an async face of each
    connection (see `pytest_txscope.sqlalchemy_async`).
    """
    from sqlalchemy import event

    sa_engine = sync_engine_of(sa_engine)
    is_async = bool(sa_engine.dialect.is_async)
    if initialize and sa_engine.dialect.server_version_info is None:
        # SQLAlchemy reads server facts once, on the engine's first connection; psycopg's type lookups then
        # insist on a real psycopg connection. Let that first, read-only connection be a real one.
        _connecting_for_real.add(sa_engine)
        try:
            if is_async:
                initialize_apart(sa_engine)
            else:
                with sa_engine.connect():
                    pass
        finally:
            _connecting_for_real.discard(sa_engine)
    if sa_engine.dialect.driver == "psycopg2":
        _let_psycopg2_register_on_sandbox_connections()
    if sa_engine not in _listening:
        ref = weakref.ref(sa_engine)
        event.listen(sa_engine, "do_connect", lambda *a: _do_connect(*a, engine_ref=ref))
        event.listen(sa_engine, "checkout", lambda *a: _check_out(*a, engine_ref=ref))
        _listening.add(sa_engine)
    _pins[sa_engine] = _Pin(provider, adapter_maker(sa_engine) if is_async else None)


def _let_psycopg2_register_on_sandbox_connections() -> None:
    """Let psycopg2's ``register_type`` take a sandbox connection, for the connection under it.

    SQLAlchemy's psycopg2 dialect registers type casters (UUID; hstore and JSON when asked) on every connection
    it gets, through ``psycopg2.extras``; they end in ``register_type``, C code that accepts only psycopg2's
    own connections and cursors. Each module that calls it gets a wrapper that hands it the real connection
    under a sandbox connection, and everything else unchanged (done once; harmless to other callers). The
    casters then stay on the real connection, which the sandbox's later tests reuse: UUID columns read as
    ``uuid.UUID`` there, as they do through SQLAlchemy.
    """
    import importlib

    for name in ("psycopg2.extensions", "psycopg2._json", "psycopg2._range"):
        module = importlib.import_module(name)
        original = module.register_type
        if getattr(original, "_txscope_unwraps", False):
            continue

        def register_type(obj: Any, scope: Any = None, *, _original: Any = original) -> Any:
            return _original(obj, _real(scope)) if scope is not None else _original(obj)

        register_type._txscope_unwraps = True  # type: ignore[attr-defined]
        setattr(module, "register_type", register_type)  # noqa: B010  # a module attribute mypy cannot see


def _real(value: Any) -> Any:
    return value.session.connection if isinstance(value, SandboxConnection) else value


def pinned_connections(sa_engine: Any) -> list[SandboxConnection] | None:
    """The sandbox connections ``sa_engine`` (``Engine`` or ``AsyncEngine``) was handed while pinned now
    (live ones), or None when it is not pinned."""
    pin = _pins.get(sync_engine_of(sa_engine))
    return None if pin is None else list(pin.served)


def connecting(session: Any) -> bool:
    """Whether ``session`` is a new sandbox connection's that SQLAlchemy is setting up (before its first
    checkout from a pinned engine's pool): its statements are SQLAlchemy's set-up, not the application's."""
    return session in _connecting


def served_connections() -> list[SandboxConnection]:
    """Every live sandbox connection handed to a pinned SQLAlchemy engine."""
    return [connection for pin in list(_pins.values()) for connection in list(pin.served)]


def detach(sa_engine: Any) -> None:
    """Undo `attach()`: new connections are real again (pooled sandbox ones are replaced at checkout)."""
    _pins.pop(sync_engine_of(sa_engine), None)


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
        outer = _pins.get(sa_engine)
        attach(sa_engine, sandbox.connection)
        sandbox.add_cleanup(_detacher(sa_engine, outer))


# ------------------------------------------------------------------------------- engines nobody pinned
# The sandboxes whose database is watched (the plugin's tests'), the innermost last; the engine `attach` lets
# connect for real once; each watched sandbox's refusals; whether each unpinned engine is aimed at a database.
_watched: list[Sandbox] = []
_connecting_for_real: weakref.WeakSet[Any] = weakref.WeakSet()
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
    if engine in _connecting_for_real:
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


def _detacher(sa_engine: SAEngine, outer: _Pin | None) -> Callable[[], None]:
    """Unpin ``sa_engine``, or give it back to the sandbox that pinned it before (a nested sandbox ends)."""

    def restore() -> None:
        if outer is None:
            detach(sa_engine)
        else:
            _pins[sa_engine] = outer

    return restore


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
        # pooled connection serves only the sandbox that made it (checked at checkout, so never another test's
        # or a nested sandbox's); unlimited overflow, as with NullPool, so that a test's threads never wait.
        engine = create_engine(sqlalchemy_url(url), poolclass=QueuePool, pool_size=5, max_overflow=-1)
        event.listen(engine, "checkout", lambda dbapi_connection, *_: _check_owner(owners, dbapi_connection))
        attach(engine, provide)
        _test_engines[key] = engine
    return engine


def _check_owner(owners: weakref.WeakKeyDictionary[Any, Sandbox], dbapi_connection: Any) -> None:
    """Refuse a pooled connection of a sandbox other than the current one: the pool then connects anew."""
    from sqlalchemy.exc import DisconnectionError

    # The engine's first, real connection (see `attach`) is refused by the pin's own check.
    if (
        isinstance(dbapi_connection, SandboxConnection)
        and owners.get(dbapi_connection) is not Sandbox.current()
    ):
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
