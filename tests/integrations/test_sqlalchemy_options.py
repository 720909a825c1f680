"""SQLAlchemy engine options on an engine pinned to a sandbox, on every backend and driver.

Each test pins an application engine made with one option to a sandbox, writes through it and commits, and
checks from an independent connection that nothing survived the sandbox. Options that cannot take effect in a
sandbox (an isolation level: the sandbox's transaction has begun) must say so, never end the sandbox's
transaction or commit for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_txscope import Engine, Sandbox
from pytest_txscope.sqlalchemy import pin_to_sandbox, sqlalchemy_url

from ..backends import Backend, Peer

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")


def connect_args(backend: Backend) -> dict[str, Any]:
    """A harmless driver keyword for ``connect_args``."""
    if backend.family == "sqlite":
        return {"timeout": 5}
    if backend.family == "postgresql":
        return {"application_name": "txscope_app"}
    return {"connect_timeout": 5}


@pytest.fixture
def app_factory(engine: Engine) -> Iterator[Any]:
    """Makes SQLAlchemy engines on the test database (disposed at the end)."""
    import sqlalchemy as sa

    made: list[Any] = []

    def make(**options: Any) -> Any:
        app = sa.create_engine(sqlalchemy_url(engine.url), **options)  # type: ignore[arg-type]
        made.append(app)
        return app

    yield make
    for app in made:
        app.dispose()


def write_twice(engine: Engine, app: Any, peer: Peer, **execution_options: Any) -> None:
    """Two units of work through ``app`` in a sandbox (two checkouts of its pool), each committed; then none of
    it may be seen from ``peer``."""
    from sqlalchemy import text

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        for n in (1, 2):
            with app.connect() as conn:
                if execution_options:
                    conn.execution_options(**execution_options)  # changes conn itself
                conn.execute(
                    text("INSERT INTO items (id, name) VALUES (:id, :name)"), {"id": n, "name": f"app-{n}"}
                )
                conn.commit()
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 2
    assert peer.fetchall("SELECT name FROM items") == []


@pytest.mark.parametrize("option", ["echo", "future", "connect_args", "NullPool", "StaticPool"])
def test_engine_options_work_in_a_sandbox(
    engine: Engine, app_factory: Any, peer: Peer, backend: Backend, option: str
) -> None:
    from sqlalchemy.pool import NullPool, StaticPool

    options: dict[str, Any] = {
        "echo": {"echo": True},
        "future": {"future": True},
        "connect_args": {"connect_args": connect_args(backend)},
        "NullPool": {"poolclass": NullPool},
        "StaticPool": {"poolclass": StaticPool},
    }[option]
    write_twice(engine, app_factory(**options), peer)


# SQLAlchemy 2.0.0 (our floor) pings mysqlclient's real connections with ping(False), which mysqlclient 2.3 deprecates:
# their warning, at the floors, not ours (the sandbox connection's own ping takes any argument).
@pytest.mark.filterwarnings("ignore:The reconnect parameter of ping:DeprecationWarning")
def test_pool_pre_ping(engine: Engine, app_factory: Any, peer: Peer) -> None:
    # Before: SandboxRefusedError on the second checkout on PostgreSQL (SQLAlchemy's psycopg dialects ping with
    # autocommit switched on and back; the sandbox connection supports autocommit mode since h1).
    write_twice(engine, app_factory(pool_pre_ping=True), peer)


@pytest.mark.backends("postgresql-psycopg2")
@pytest.mark.filterwarnings("ignore::pytest_txscope.SandboxIsolationWarning")  # tested below
def test_psycopg2_isolation_level_keeps_the_sandbox_transaction(
    engine: Engine, app_factory: Any, peer: Peer
) -> None:
    # Before: SQLAlchemy's psycopg2 dialect calls set_isolation_level(), which reached the real connection:
    # psycopg2 rolled back the sandbox's transaction (TransactionStateError at the next statement).
    write_twice(engine, app_factory(), peer, isolation_level="SERIALIZABLE")


@pytest.mark.backends("sqlite-file")
@pytest.mark.parametrize("level", ["SERIALIZABLE", "READ UNCOMMITTED"])
def test_sqlite_isolation_levels_take_effect(
    engine: Engine, app_factory: Any, peer: Peer, level: str
) -> None:
    # SQLAlchemy sets them with PRAGMA read_uncommitted, which applies at once, inside a transaction too.
    write_twice(engine, app_factory(isolation_level=level), peer)
    write_twice(engine, app_factory(), peer, isolation_level=level)


@pytest.mark.backends("postgresql-psycopg2")
def test_psycopg2_autocommit_never_commits_for_real(engine: Engine, app_factory: Any, peer: Peer) -> None:
    # set_isolation_level(AUTOCOMMIT) used to reach the real connection, behind the sandbox's back; it is
    # autocommit mode on the sandbox connection now (each statement released at once, inside the sandbox).
    from sqlalchemy import text

    app = app_factory(isolation_level="AUTOCOMMIT")
    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        try:
            with app.connect() as conn:
                conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'autocommit')"))
        except Exception as exc:  # refused: the message says why
            assert "autocommit" in str(exc)  # noqa: PT017
    assert peer.fetchall("SELECT name FROM items") == []


@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.parametrize("how", ["engine", "execution_options"])
def test_an_isolation_level_warns_that_it_cannot_take_effect(
    engine: Engine, app_factory: Any, peer: Peer, how: str
) -> None:
    # Before: ignored without a word (PostgreSQL, SQLite), or ImplicitCommitError/SandboxEscapeError blaming a
    # COMMIT the application never wrote (MySQL/MariaDB: SQLAlchemy commits after SET SESSION ... ISOLATION).
    from pytest_txscope import SandboxIsolationWarning

    options = {"isolation_level": "SERIALIZABLE"}
    if how == "engine":
        app, execution_options = app_factory(**options), {}
    else:
        app, execution_options = app_factory(), options
    with pytest.warns(SandboxIsolationWarning) as warned:
        write_twice(engine, app, peer, **execution_options)
    messages = {str(w.message) for w in warned}
    assert len(messages) == 1, messages  # one clear warning, not one per statement or checkout
    assert messages.pop().startswith("isolation level SERIALIZABLE asked with ")
