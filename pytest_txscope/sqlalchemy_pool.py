"""What a pinned SQLAlchemy engine's pool gets and keeps: sandbox connections, through SQLAlchemy's public events.

While an engine is pinned, the ``do_connect`` event hands its pool a `SandboxConnection` of the sandbox (an
``AsyncEngine``'s: SQLAlchemy's asyncio adapter around an async face of one) instead of a driver connection.
At each checkout, a ``checkout`` event decides about the pooled connection:

- one handed out under the current pin, whose sandbox is active: used, as the pool would use a real one;
- one of a sandbox that has ended, made on the same real connection as the current sandbox's: re-pointed at
  the current sandbox (`Sandbox.adopt`), so that the pool does not reconnect, which reruns the dialect's whole
  on-connect set-up (on SQLite, most of what an ORM test costs above its own work). Only sync engines: an
  ``AsyncEngine``'s pooled adapters belong to the event loop of the test that made them;
- anything else (a real connection while the engine is pinned, a sandbox connection once the engine is
  unpinned, one of a sandbox still active outside the current one, one made on another real connection):
  refused with the ``DisconnectionError`` SQLAlchemy documents for this, so that the pool discards it and
  connects again, which reaches ``do_connect``.

SQLAlchemy is imported lazily.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from .dbapi import SandboxConnection
from .sqlalchemy_async import adapter_maker, initialize_apart, sandbox_connection_of, sync_engine_of

__all__ = [
    "Pin",
    "attach",
    "connecting",
    "connecting_for_real",
    "detach",
    "pin_of",
    "pinned_connections",
    "served_connections",
    "set_pin",
]

_listening: weakref.WeakSet[Any] = weakref.WeakSet()


class Pin:
    """What a pinned engine's pool gets instead of a new connection, and what this pinning handed out (the
    connections pooled from an earlier pinning are stale unless `adopt` takes them)."""

    def __init__(
        self,
        provider: Callable[[], Any],
        wrap: Callable[[Any], Any] | None = None,
        adopt: Callable[[SandboxConnection], bool] | None = None,
    ) -> None:
        self.provider = provider
        self.wrap = wrap
        """What the pool gets instead of the provider's connection: an async engine's adapter around it."""
        self.adopt = adopt
        """Re-points a pooled connection of an ended sandbox at the pinning one (`Sandbox.adopt`); None: never."""
        self.served: weakref.WeakSet[Any] = weakref.WeakSet()


# The sessions of sandbox connections a pinned engine's pool made and has not checked out yet: what they send
# meanwhile is the SQLAlchemy dialect's set-up of a new connection (MySQL's SET NAMES), not the application's.
_connecting: weakref.WeakSet[Any] = weakref.WeakSet()
# Each pinned engine's pin; absent: the engine connects normally.
_pins: weakref.WeakKeyDictionary[Any, Pin] = weakref.WeakKeyDictionary()
# The engines `attach` lets connect for real once (SQLAlchemy's first connection reads the server's facts).
_connecting_for_real: weakref.WeakSet[Any] = weakref.WeakSet()


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
    # Checking here instead of disposing of the pool at every pin and unpin keeps a pinned test's cost to one
    # connect at most (none once a connection can be re-pointed); see the module's docstring.
    from sqlalchemy.exc import DisconnectionError

    engine = engine_ref()
    pin = _pins.get(engine) if engine is not None else None
    connection = sandbox_connection_of(dbapi_connection)  # an async engine's: under SQLAlchemy's adapter
    if connection is not None:
        if connection.session in _connecting:  # its first checkout: SQLAlchemy's on-connect set-up is done
            _connecting.discard(connection.session)
            connection.mark_set_up()  # kept when the connection is re-pointed at a later sandbox
        if pin is not None:
            if connection in pin.served and not connection.session.closed:
                return
            # A sync engine's only (`connection is dbapi_connection`): see the module's docstring.
            if pin.adopt is not None and connection is dbapi_connection and pin.adopt(connection):
                pin.served.add(connection)
                return
    elif pin is None:
        return
    raise DisconnectionError("pytest-txscope: the pooled connection belongs to another sandbox state")


def attach(
    sa_engine: Any,
    provider: Callable[[], Any],
    *,
    initialize: bool = True,
    adopt: Callable[[SandboxConnection], bool] | None = None,
) -> None:
    """Make ``sa_engine``'s pool take its DB-API connections from ``provider`` until `detach()`.

    Connections pooled before are not used meanwhile: the pool replaces them when they are checked out, unless
    ``adopt`` (given one of an ended sandbox; a sync engine's) re-points it and returns True.
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
    _pins[sa_engine] = Pin(provider, adapter_maker(sa_engine) if is_async else None, adopt)


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


def pin_of(sa_engine: Any) -> Pin | None:
    """The pin of ``sa_engine`` (``Engine`` or ``AsyncEngine``), or None when it is not pinned."""
    return _pins.get(sync_engine_of(sa_engine))


def set_pin(sa_engine: Any, pin: Pin | None) -> None:
    """Give ``sa_engine`` back a pin `pin_of` returned (a nested sandbox ends), or unpin it (None)."""
    if pin is None:
        detach(sa_engine)
    else:
        _pins[sync_engine_of(sa_engine)] = pin


def pinned_connections(sa_engine: Any) -> list[SandboxConnection] | None:
    """The sandbox connections ``sa_engine`` (``Engine`` or ``AsyncEngine``) was handed while pinned now
    (live ones), or None when it is not pinned."""
    pin = pin_of(sa_engine)
    return None if pin is None else list(pin.served)


def connecting(session: Any) -> bool:
    """Whether ``session`` is a new sandbox connection's that SQLAlchemy is setting up (before its first
    checkout from a pinned engine's pool): its statements are SQLAlchemy's set-up, not the application's."""
    return session in _connecting


def connecting_for_real(sa_engine: Any) -> bool:
    """Whether `attach` is letting ``sa_engine`` (a sync ``Engine``) make its first, real connection."""
    return sa_engine in _connecting_for_real


def served_connections() -> list[SandboxConnection]:
    """Every live sandbox connection handed to a pinned SQLAlchemy engine."""
    return [connection for pin in list(_pins.values()) for connection in list(pin.served)]


def detach(sa_engine: Any) -> None:
    """Undo `attach()`: new connections are real again (pooled sandbox ones are replaced at checkout)."""
    _pins.pop(sync_engine_of(sa_engine), None)
