"""Connection pooling, and ``Session(conn)`` over connections the user opened."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from pytest_txscope import Engine, Session, TransactionStateError, UnsupportedConnectionError

from ..backends import Backend, Peer

INSERT = "INSERT INTO items (id, name) VALUES (:id, :name)"


def committed(peer: Peer) -> list[str]:
    return [name for (name,) in peer.fetchall("SELECT name FROM items ORDER BY id")]


def test_connections_are_reused(engine: Engine) -> None:
    with engine as tx:
        first = tx.session.connection
    with engine as tx:
        assert tx.session.connection is first


def test_a_returned_connection_is_rolled_back(engine: Engine, peer: Peer) -> None:
    with engine.session() as session:
        root = session.begin()
        root.execute("INSERT INTO items (id, name) VALUES (1, 'uncommitted')")
        conn = session.connection
        assert session.dialect.in_transaction(conn)
    # The session closed with the transaction open: the pool rolled it back before keeping the connection.
    assert not engine.dialect.in_transaction(conn)
    assert peer.fetchall("SELECT name FROM items") == []
    with engine.session() as again:
        assert again.connection is conn
        assert again.fetchall("SELECT name FROM items") == []


def test_a_connection_left_dirty_outside_the_library_is_rolled_back_on_return(
    engine: Engine, peer: Peer
) -> None:
    with engine.session() as session:
        # Someone used the raw connection behind the session's back and left a transaction open.
        cur = session.connection.cursor()
        cur.execute("BEGIN")
        cur.execute("INSERT INTO items (id, name) VALUES (1, 'raw')")
        cur.close()
    assert peer.fetchall("SELECT name FROM items") == []


def test_dispose_closes_idle_connections(engine: Engine) -> None:
    with engine as tx:
        conn = tx.session.connection
    engine.dispose()
    with engine as tx:
        assert tx.session.connection is not conn


def test_pool_size_zero_closes_every_connection(backend: Backend) -> None:
    engine = backend.engine(pool_size=0)
    with engine as tx:
        first = tx.session.connection
        tx.execute("SELECT 1").close()
    with engine as tx:
        assert tx.session.connection is not first
    engine.dispose()


def test_closing_the_session_of_engine_begin_gives_its_connection_back_once(
    engine: Engine, peer: Peer
) -> None:
    tx = engine.begin()
    tx.execute(INSERT, {"id": 1, "name": "dropped"})
    tx.session.close()  # rolls back the root, whose end closes the session too: the pool got it back twice
    first, second = engine.begin(), engine.begin()
    assert first.session.connection is not second.session.connection
    first.execute(INSERT, {"id": 2, "name": "first"})
    second.fetchscalar("SELECT count(*) FROM items")
    second.rollback()  # on a shared connection this would undo the first one's work
    first.commit()
    assert committed(peer) == ["first"]


# ------------------------------------------------------------------------------------------ Session(conn)
def _raw_connection(backend: Backend) -> Any:
    peer = backend.peer()
    return peer.conn


def _set_manual_commit(backend: Backend, conn: Any) -> Any:
    """Put a raw connection in its driver's default, non-autocommit mode; return how to read the setting."""
    if backend.family == "sqlite":
        conn.isolation_level = "DEFERRED"
        return lambda: conn.isolation_level
    if backend.family == "postgresql":
        conn.autocommit = False
        return lambda: conn.autocommit
    conn.autocommit(False)
    return conn.get_autocommit


def test_session_over_a_raw_connection(backend: Backend, engine: Engine, peer: Peer) -> None:
    conn = _raw_connection(backend)
    setting = _set_manual_commit(backend, conn)
    before = setting()
    session = Session(conn)
    assert session.dialect.name == backend.family
    # A session block: the session is current, its work is one transaction, committed on a clean exit, and
    # the session is closed at the end (the connection stays open, its setting restored).
    with session as sess:
        assert sess is session
        sess.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        with pytest.raises(ValueError), sess as inner:  # nested: a savepoint
            inner.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
            raise ValueError
    assert session.closed
    assert peer.fetchall("SELECT name FROM items") == [("a",)]
    assert setting() == before
    session = Session(conn)
    session.execute("INSERT INTO items (id, name) VALUES (3, 'c')")  # implicit: rolled back at close
    session.close()
    assert peer.fetchall("SELECT name FROM items") == [("a",)]
    assert setting() == before  # the connection's own setting is restored ...
    cur = conn.cursor()  # ... and it is still open: the session did not close what it did not open
    cur.execute("SELECT 1")
    cur.close()
    conn.close()


def test_session_refuses_a_connection_inside_a_transaction(backend: Backend, peer: Peer) -> None:
    conn = _raw_connection(backend)
    _set_manual_commit(backend, conn)
    cur = conn.cursor()
    cur.execute("INSERT INTO items (id, name) VALUES (1, 'pending')")  # the driver opened a transaction
    cur.close()
    with pytest.raises(
        TransactionStateError, match=r"has an open transaction; commit or roll it back before"
    ):
        Session(conn)
    conn.rollback()
    conn.close()


def test_session_refuses_what_is_not_a_supported_connection() -> None:
    with pytest.raises(UnsupportedConnectionError) as info:
        Session(object())
    assert str(info.value) == (
        "cannot tell which database builtins.object connects to; Session() accepts connections from: "
        "sqlite3, psycopg, psycopg2, asyncpg, PyMySQL, mysqlclient"
    )


def test_session_over_sqlite_keeps_savepoints_inside_the_transaction(tmp_path: Any) -> None:
    # The legacy sqlite3 trap: a SAVEPOINT outside an explicit BEGIN becomes the transaction and its RELEASE
    # commits. The session opens the transaction itself, so the savepoint stays inside it.
    path = tmp_path / "legacy.db"
    conn = sqlite3.connect(path)  # legacy isolation_level="" (deferred) mode
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    session = Session(conn)
    root = session.begin()
    with root.begin_nested() as sp:
        sp.execute("INSERT INTO t VALUES (1)")
    root.rollback()
    session.close()
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)
    other.close()
    conn.close()
