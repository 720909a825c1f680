"""The sandbox's DB-API connection behaves like the server drivers' own (psycopg 3, psycopg2, PyMySQL,
mysqlclient), and nothing any of their paths send escapes the sandbox's transaction.

Each of these was found by porting real apps: a ``copy()``, ``stream()`` or ``callproc()`` as a test's first SQL
ran before the sandbox's BEGIN and committed for real; psycopg's keywords were a ``TypeError``; SQLAlchemy's
``pool_pre_ping`` flips autocommit and was refused; ``COMMIT`` sent as text ended the sandbox's transaction; an
isolation level asked went unnoticed. What is committed is always checked from an independent connection.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_txscope import (
    Engine,
    Sandbox,
    SandboxIsolationWarning,
    SandboxRefusedError,
    TransactionStateError,
)

from ..backends import Backend, Peer

SERVERS = ("postgresql", "mysql")
INSERT = {
    "postgresql": "INSERT INTO items (id, name) VALUES (%s, %s)",
    "mysql": "INSERT INTO items (id, name) VALUES (%s, %s)",
}


def committed(peer: Peer) -> list[str]:
    return [name for (name,) in peer.fetchall("SELECT name FROM items ORDER BY id")]


def autocommit_on(conn: Any, backend: Backend) -> None:
    if backend.family == "mysql":
        conn.autocommit(True)
    else:
        conn.autocommit = True


# What asyncpg does not have, so that its sandbox's DB-API face (Sandbox.connection()) has none either: asyncpg
# is no DB-API driver, and code written for it uses its own API (SQLAlchemy's asyncpg dialect, or asyncpg).
NO_DBAPI_COPY = (
    "asyncpg has no DB-API cursor copy (psycopg's cursor.copy, psycopg2's copy_expert): its COPY is "
    "copy_to_table / copy_records_to_table on the connection, which the DB-API face does not mimic"
)
NO_DBAPI_CURSORS = (
    "asyncpg has no DB-API named (server-side) or scrollable cursors: its cursors are async iterators of "
    "Connection.cursor(), which the DB-API face does not mimic"
)
ASYNC_ONLY_DIALECT = (
    "SQLAlchemy's asyncpg dialect serves create_async_engine() only: a sync create_engine() on "
    "postgresql+asyncpg:// cannot run (the async face is tested in tests/integrations/test_sqlalchemy_async.py)"
)


def driver_module(backend: Backend) -> Any:
    import importlib

    name = {
        "postgresql": "psycopg",
        "postgresql-psycopg2": "psycopg2",
        "postgresql-asyncpg": "asyncpg",
        "mysql": "pymysql",
    }
    return importlib.import_module(name.get(backend.name, "MySQLdb"))


# ------------------------------------------------------------------------ paths that send SQL
@pytest.mark.backends("postgresql")
def test_copy_as_the_first_sql_runs_inside_the_sandbox(backend: Backend, engine: Engine, peer: Peer) -> None:
    if backend.name == "postgresql-asyncpg":
        pytest.skip(NO_DBAPI_COPY)
    with Sandbox(engine) as sandbox:
        cur = sandbox.connection().cursor()
        if backend.name == "postgresql":
            with cur.copy("COPY items (id, name) FROM STDIN") as copy:
                copy.write_row((1, "copied"))
        else:
            cur.copy_expert("COPY items (id, name) FROM STDIN", io.StringIO("1\tcopied\n"))
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 1
    assert committed(peer) == []


@pytest.mark.backends("postgresql", exact=True)
def test_stream_as_the_first_sql_runs_inside_the_sandbox(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox:
        cur = sandbox.connection().cursor()
        rows = list(cur.stream("INSERT INTO items (id, name) VALUES (1, 'streamed') RETURNING id"))
        assert rows == [(1,)]
    assert committed(peer) == []


@pytest.fixture
def procedure(backend: Backend, peer: Peer) -> Iterator[str]:
    """A stored procedure (a function on PostgreSQL) that inserts one row."""
    if backend.family == "mysql":
        peer.execute("DROP PROCEDURE IF EXISTS add_item")
        peer.execute("CREATE PROCEDURE add_item(i INT) INSERT INTO items (id, name) VALUES (i, 'proc')")
        yield "add_item"
        peer.execute("DROP PROCEDURE IF EXISTS add_item")
    else:
        peer.execute(
            "CREATE OR REPLACE FUNCTION add_item(i int) RETURNS int LANGUAGE sql AS "
            "'INSERT INTO items (id, name) VALUES (i, ''proc'') RETURNING id'"
        )
        yield "add_item"
        peer.execute("DROP FUNCTION IF EXISTS add_item(int)")


@pytest.mark.backends("postgresql-psycopg2", "mysql")
def test_callproc_as_the_first_sql_runs_inside_the_sandbox(
    backend: Backend, engine: Engine, peer: Peer, procedure: str
) -> None:
    with Sandbox(engine) as sandbox:
        cur = sandbox.connection().cursor()
        cur.callproc(procedure, (1,))
        while backend.family == "mysql" and cur.nextset():
            pass
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 1
    assert committed(peer) == []


@pytest.mark.backends("postgresql")
def test_named_cursor_and_scroll_run_inside_the_sandbox(backend: Backend, engine: Engine, peer: Peer) -> None:
    if backend.name == "postgresql-asyncpg":
        pytest.skip(NO_DBAPI_CURSORS)
    peer.execute("INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b')")
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        cur = conn.cursor(name="server_side", scrollable=True)
        cur.execute("SELECT id FROM items ORDER BY id")
        cur.scroll(1)
        assert cur.fetchone() == (2,)
        cur.close()
        conn.cursor().execute(INSERT["postgresql"], (3, "c"))
    assert committed(peer) == ["a", "b"]


@pytest.mark.backends("postgresql", exact=True)
def test_psycopg_keywords_are_the_drivers(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        assert conn.execute("SELECT 1", prepare=True).fetchone() == (1,)
        assert conn.execute("SELECT 2", binary=True).fetchone() == (2,)
        cur = conn.cursor(binary=True)
        cur.execute("SELECT %s", (3,), prepare=False, binary=False)
        assert cur.fetchone() == (3,)
        cur.executemany(
            "INSERT INTO items (id, name) VALUES (%s, %s) RETURNING id", [(1, "a"), (2, "b")], returning=True
        )
        ids = [cur.fetchone()]
        while cur.nextset():
            ids.append(cur.fetchone())
        assert ids == [(1,), (2,)]
        conn.commit()
    assert committed(peer) == []


@pytest.mark.backends("postgresql", exact=True)
def test_psycopg_row_factory_and_cursor_factory_from_connect_are_honoured(engine: Engine) -> None:
    import psycopg
    from psycopg.rows import dict_row

    with Sandbox(engine) as sandbox:
        conn = sandbox.connection({"row_factory": dict_row, "cursor_factory": psycopg.ClientCursor})
        cur = conn.execute("SELECT 1 AS one")
        assert cur.fetchone() == {"one": 1}
        assert isinstance(cur._current(conn.session.connection), psycopg.ClientCursor)


@pytest.mark.backends("postgresql-psycopg2", "mysql")
def test_dict_cursors_from_connect_are_honoured(backend: Backend, engine: Engine) -> None:
    if backend.name == "postgresql-psycopg2":
        from psycopg2.extras import RealDictCursor

        kwargs: dict[str, Any] = {"cursor_factory": RealDictCursor}
    else:
        kwargs = {"cursorclass": driver_module(backend).cursors.DictCursor}
    with Sandbox(engine) as sandbox:
        cur = sandbox.connection(kwargs).cursor()
        cur.execute("SELECT 1 AS one")
        assert dict(cur.fetchone()) == {"one": 1}


# -------------------------------------------------------------------------------- closed
@pytest.mark.backends(*SERVERS)
def test_a_closed_connection_raises_the_drivers_error(backend: Backend, engine: Engine) -> None:
    module = driver_module(backend)
    expected = {
        "postgresql": "OperationalError",
        "postgresql-psycopg2": "InterfaceError",
        "postgresql-asyncpg": "InterfaceError",
        "mysql": "err.InterfaceError",
    }
    error = module
    for part in expected.get(backend.name, "OperationalError").split("."):
        error = getattr(error, part)
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        conn.close()
        with pytest.raises(error, match="this sandbox connection is closed") as raised:
            conn.cursor().execute("SELECT 1")
        assert isinstance(raised.value, TransactionStateError)
        with pytest.raises(error):
            conn.commit()


# ------------------------------------------------------------------------------ autocommit
@pytest.mark.backends(*SERVERS)
def test_autocommit_mode_commits_into_the_sandbox_only(backend: Backend, engine: Engine, peer: Peer) -> None:
    insert = INSERT[backend.family]
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        autocommit_on(conn, backend)
        assert conn.autocommit
        cur = conn.cursor()
        cur.execute(insert, (1, "a"))
        with pytest.raises(Exception, match=r"(?i)duplicate"):
            cur.execute(insert, (1, "a"))
        cur.execute(insert, (2, "b"))  # the failed statement did not poison the transaction
        conn.rollback()  # nothing to roll back: each statement was committed (into the sandbox)
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 2
        autocommit_off = sandbox.connection({"autocommit": True})
        assert autocommit_off.autocommit
    assert committed(peer) == []


@pytest.mark.backends(*SERVERS)
def test_switching_autocommit_inside_a_transaction_does_what_the_driver_does(
    backend: Backend, engine: Engine, peer: Peer
) -> None:
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        conn.cursor().execute(INSERT[backend.family], (1, "a"))
        if backend.family == "postgresql":
            refused = "InterfaceError" if backend.name == "postgresql-asyncpg" else "ProgrammingError"
            with pytest.raises(getattr(driver_module(backend), refused)):
                conn.autocommit = True
            conn.rollback()
            assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 0
        else:  # MySQL commits the open transaction
            conn.autocommit(True)
            conn.rollback()
            assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 1
    assert committed(peer) == []


@pytest.mark.backends("postgresql", exact=True)
def test_psycopg_transaction_block_in_autocommit_mode_is_a_savepoint(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection({"autocommit": True})
        assert conn.autocommit is True
        with pytest.raises(ZeroDivisionError), conn.transaction():
            conn.execute(INSERT["postgresql"], (1, "undone"))
            raise ZeroDivisionError
        with conn.transaction():
            conn.execute(INSERT["postgresql"], (2, "kept"))
        assert sandbox.session().fetchall("SELECT name FROM items") == [("kept",)]
    assert committed(peer) == []


@pytest.mark.backends("postgresql")
def test_sqlalchemy_pool_pre_ping_works_on_every_request(
    backend: Backend, engine: Engine, peer: Peer
) -> None:
    if backend.name == "postgresql-asyncpg":
        pytest.skip(ASYNC_ONLY_DIALECT)
    from sqlalchemy import create_engine, text

    from pytest_txscope.sqlalchemy import pin_to_sandbox, sqlalchemy_url

    assert engine.url is not None
    sa_engine = create_engine(sqlalchemy_url(engine.url), pool_pre_ping=True)
    try:
        with Sandbox(engine) as sandbox:
            pin_to_sandbox(sandbox, (sa_engine,))
            for i in (1, 2, 3):
                with sa_engine.connect() as conn:
                    conn.execute(text("INSERT INTO items (id, name) VALUES (:i, :n)"), {"i": i, "n": f"r{i}"})
                    conn.commit()
            assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 3
    finally:
        sa_engine.dispose()
    assert committed(peer) == []


# --------------------------------------------------------------------- control sent as text
@pytest.mark.backends(*SERVERS)
def test_transaction_control_text_maps_onto_the_apps_transaction(
    backend: Backend, engine: Engine, peer: Peer
) -> None:
    insert = INSERT[backend.family]
    with Sandbox(engine) as sandbox:
        cur = sandbox.connection().cursor()
        cur.execute(insert, (1, "committed"))
        cur.execute("COMMIT")
        cur.execute("BEGIN")
        cur.execute(insert, (2, "rolled back"))
        cur.execute("ROLLBACK")
        cur.execute("START TRANSACTION")
        cur.execute(insert, (3, "committed too"))
        cur.execute("commit")
        names = [n for (n,) in sandbox.session().fetchall("SELECT name FROM items ORDER BY id")]
        assert names == ["committed", "committed too"]
    assert committed(peer) == []


@pytest.mark.backends("mysql")
def test_sqlalchemy_mysql_isolation_level_warns_once_and_works(engine: Engine, peer: Peer) -> None:
    from sqlalchemy import create_engine, text

    from pytest_txscope.sqlalchemy import pin_to_sandbox, sqlalchemy_url

    assert engine.url is not None
    sa_engine = create_engine(sqlalchemy_url(engine.url), isolation_level="SERIALIZABLE")
    try:
        with Sandbox(engine) as sandbox:
            pin_to_sandbox(sandbox, (sa_engine,))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with sa_engine.connect() as conn:
                    conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'r')"))
                    conn.commit()
            ours = [w for w in caught if w.category is SandboxIsolationWarning]
            assert len(ours) == 1
            assert "isolation level SERIALIZABLE" in str(ours[0].message)
            assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 1
    finally:
        sa_engine.dispose()
    assert committed(peer) == []


def _ask_serializable(conn: Any, backend: Backend) -> None:
    if backend.name == "postgresql":
        import psycopg

        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    elif backend.name == "postgresql-psycopg2":
        conn.set_isolation_level(3)  # psycopg2.extensions.ISOLATION_LEVEL_SERIALIZABLE
    else:
        conn.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")


@pytest.mark.backends(*SERVERS)
def test_an_isolation_level_asked_warns_once_per_connection(backend: Backend, engine: Engine) -> None:
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _ask_serializable(conn, backend)
            _ask_serializable(conn, backend)
        assert [w.category for w in caught] == [SandboxIsolationWarning]
        assert "@pytest.mark.txscope(commit=True)" in str(caught[0].message)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if backend.family == "postgresql":
                conn.isolation_level = None  # the default: nothing to say
            conn.cursor().execute("SELECT 1")
        level = sandbox.session().fetchscalar(
            "SHOW transaction_isolation"
            if backend.family == "postgresql"
            else "SELECT @@SESSION.tx_isolation"
        )
        assert "serializable" not in str(level).lower()  # nothing leaked to the real connection


# ----------------------------------------------------------------------- what would escape
@pytest.mark.backends("mysql")
def test_mysql_ping_never_reconnects_and_select_db_elsewhere_is_refused(
    backend: Backend, engine: Engine
) -> None:
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        conn.cursor().execute(INSERT["mysql"], (1, "a"))
        conn.ping(True)
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 1
        with pytest.raises(SandboxRefusedError, match=r"select_db\('mysql'\)"):
            conn.select_db("mysql")
        with pytest.raises(SandboxRefusedError, match="change_user"):
            conn.change_user("root", "", "mysql")


@pytest.mark.backends("postgresql-psycopg2")
def test_psycopg2_reset_rolls_back_the_apps_work_only(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox:
        session = sandbox.session()
        session.execute("INSERT INTO items (id, name) VALUES (1, 'the test''s')")
        conn = sandbox.connection()
        conn.cursor().execute(INSERT["postgresql"], (2, "the app's"))
        conn.reset()
        assert session.fetchall("SELECT name FROM items") == [("the test's",)]
    assert committed(peer) == []


@pytest.mark.backends("mysql")
def test_mysql_server_side_cursors_run_inside_the_sandbox(
    backend: Backend, engine: Engine, peer: Peer
) -> None:
    # Issue 12, "server-side cursors": PyMySQL's and mysqlclient's SSCursor (unbuffered: rows stream from the
    # server as they are fetched), as a cursor class from connect() and as cursor()'s argument.
    cursors = driver_module(backend).cursors
    peer.execute("INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b')")
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection({"cursorclass": cursors.SSCursor})
        cur = conn.cursor()
        cur.execute("SELECT id FROM items ORDER BY id")
        assert [cur.fetchone(), cur.fetchone(), cur.fetchone()] == [(1,), (2,), None]
        cur.close()
        cur = conn.cursor(cursors.SSDictCursor)
        cur.execute(INSERT["mysql"], (3, "c"))
        cur.execute("SELECT id FROM items ORDER BY id")
        assert [row["id"] for row in cur.fetchall()] == [1, 2, 3]
        cur.close()
        conn.commit()
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 3
    assert committed(peer) == ["a", "b"]
