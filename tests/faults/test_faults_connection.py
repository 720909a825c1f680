"""Connection-level faults, injected for real into a generated project run by pytest (issue 7).

Each case asserts three things: the failing test gets one clear error naming the cause and the fix (and no
second error from its teardown); the tests after it pass; and an independent connection (`Peer`) sees no row
left behind by the run. Faults:

- the server kills the test's connection mid-test (``pg_terminate_backend``, MariaDB ``KILL``; on SQLite, which
  has no server, the test's real connection is closed under the library instead);
- the connection dies while it sits in the pool between two tests: the next test must not notice;
- code under test closes the real connection, or the sandbox's DB-API wrapper;
- code ends the transaction behind the library's back: ``COMMIT`` / ``ROLLBACK`` as SQL text, ``commit()`` on the
  driver's connection, autocommit switched on, MariaDB DDL or ``SET autocommit``, a savepoint of the library
  released or rolled back to with SQL text;
- the server is unreachable when the run starts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_txscope import (
    ConnectionLostError,
    Engine,
    ImplicitCommitError,
    Sandbox,
    TransactionState,
    TransactionStateError,
)

from ..backends import Backend, Peer, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

ITEMS = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))"

# Kills a connection from outside, as the server's administrator (or a crash) would.
CONFTEST = '''
import os
import time

from pytest_txscope import DatabaseURL

URL = DatabaseURL.parse(os.environ["FAULTS_URL"])
HELD = []  # connections one test keeps for a later test to kill


def kill(conn):
    """End ``conn`` from outside: the server kills it; SQLite has no server, so the connection is closed."""
    if URL.backend == "postgresql":
        import psycopg

        pid = conn.info.backend_pid
        with psycopg.connect(
            host=URL.host, port=URL.port, user=URL.user, password=URL.password, dbname=URL.database,
            autocommit=True,
        ) as killer:
            assert killer.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
            _wait(lambda: killer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is None)
    elif URL.backend == "mysql":
        import pymysql

        thread = conn.thread_id()
        killer = pymysql.connect(
            host=URL.host, port=URL.port or 3306, user=URL.user, password=URL.password or "", autocommit=True
        )
        try:
            cursor = killer.cursor()
            cursor.execute(f"KILL {thread}")

            def gone():
                cursor.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s", [thread])
                return cursor.fetchone() is None

            _wait(gone)
        finally:
            killer.close()
    else:
        conn.close()


def _wait(done):
    for _ in range(500):
        if done():
            return
        time.sleep(0.01)
    raise AssertionError("the killed connection is still on the server after 5 s")
'''

LOST_CONNECTION = """
import pytest
from sqlalchemy import text
from conftest import HELD, kill


def test_01_killed_mid_test(db_engine, db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'before')")
    with db_engine as tx:  # the app's commit: a savepoint release, rolled back with the test
        tx.execute("INSERT INTO items (id, name) VALUES (2, 'app')")
    kill(db_session.connection)
    db_session.execute("INSERT INTO items (id, name) VALUES (3, 'after')")


def test_02_passes(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'again')")


def test_03_passes(db_engine, db_session):
    with db_engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (2, 'app')")
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1


def test_04_keeps_its_connection(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'kept')")
    HELD.append(db_session.connection)


def test_05_kills_it_while_idle_in_the_pool():
    kill(HELD[-1])


def test_06_gets_a_new_connection_transparently(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
    assert db_session.connection is not HELD[-1]
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'new')")
    HELD.append(db_session.connection)


def test_07_kills_it_again():
    kill(HELD[-1])


def test_08_raw_cursor_first_gets_a_new_connection_too(db_sandbox, db_session):
    raw = db_sandbox.connection()
    cursor = raw.cursor()  # made before the first statement finds the connection dead
    cursor.execute("INSERT INTO items (id, name) VALUES (1, 'raw')")
    raw.commit()
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1
    assert db_session.connection is not HELD[-1]


def test_09_closes_the_real_connection(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'before')")
    db_session.connection.close()
    db_session.execute("INSERT INTO items (id, name) VALUES (2, 'after')")


def test_10_passes(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'x')")


def test_11_killed_after_its_last_statement_still_passes(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'x')")
    kill(db_session.connection)  # nothing was lost that the test still needed: the teardown stays quiet


def test_12_passes(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0


def test_13_killed_under_the_orm_session(sa_session, db_session):
    sa_session.execute(text("INSERT INTO items (id, name) VALUES (1, 'orm')"))
    kill(db_session.connection)
    sa_session.execute(text("INSERT INTO items (id, name) VALUES (2, 'orm')"))


def test_14_the_orm_session_passes(sa_session):
    assert sa_session.execute(text("SELECT count(*) FROM items")).scalar() == 0
    sa_session.execute(text("INSERT INTO items (id, name) VALUES (1, 'orm')"))
    sa_session.commit()


def test_15_passes(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
"""

CODE_ENDS_IT = """
import pytest
from pytest_txscope import TransactionStateError


def test_01_raw_commit(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'escapes')")
    db_session.execute("COMMIT")


def test_02_passes(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0


def test_03_raw_rollback(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'undone')")
    db_session.execute("ROLLBACK")


def test_04_raw_commit_on_a_cursor_of_the_sandbox_connection_is_its_commit(db_sandbox, db_session):
    cursor = db_sandbox.connection().cursor()
    cursor.execute("INSERT INTO items (id, name) VALUES (1, 'kept in the sandbox')")
    cursor.execute("COMMIT")
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1


def test_05_releases_the_apps_savepoint(db_engine, db_session):
    with db_engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'x')")
        tx.execute("RELEASE SAVEPOINT txscope_sp1")
    db_session.execute("INSERT INTO items (id, name) VALUES (2, 'y')")


def test_06_rolls_back_past_a_savepoint(db_engine, db_session):
    with db_engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'x')")
        with db_engine as inner:
            inner.execute("INSERT INTO items (id, name) VALUES (2, 'y')")
            inner.execute("ROLLBACK TO SAVEPOINT txscope_sp1")
    db_session.execute("INSERT INTO items (id, name) VALUES (3, 'z')")


def test_07_closes_the_sandbox_connection(db_sandbox, db_session):
    raw = db_sandbox.connection()
    raw.cursor().execute("INSERT INTO items (id, name) VALUES (1, 'uncommitted')")
    raw.close()  # discards what it did not commit; the real connection stays open for the sandbox
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
    db_session.execute("INSERT INTO items (id, name) VALUES (2, 'after')")
    with pytest.raises(TransactionStateError, match="this sandbox connection is closed"):
        raw.cursor()


def test_08_switches_the_sandbox_connection_to_autocommit(db_sandbox):
    conn = db_sandbox.connection()
    conn.autocommit = True
    conn.cursor().execute("INSERT INTO items (id, name) VALUES (1, 'autocommitted in the sandbox')")


def test_09_commits_on_the_driver_connection(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'escapes')")
    db_session.connection.commit()


def test_10_commits_on_the_driver_connection_and_goes_on(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'escapes')")
    db_session.connection.commit()
    db_session.execute("INSERT INTO items (id, name) VALUES (2, 'autocommitted')")


def test_11_switches_the_driver_connection_to_autocommit(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'x')")
    conn = db_session.connection
    if type(conn).__module__.startswith("sqlite3"):
        conn.isolation_level = None  # sqlite3 commits the open transaction when this is set
    elif type(conn).__module__.startswith("psycopg"):
        conn.autocommit = True
    else:
        conn.autocommit(True)
    db_session.execute("INSERT INTO items (id, name) VALUES (2, 'y')")


def test_12_ddl(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'escapes on MariaDB')")
    db_session.execute("DROP TABLE IF EXISTS faults_nothing")
"""

LAST = """

def test_zz_passes(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
"""


# ---------------------------------------------------------------------------------------------- helpers
@pytest.fixture
def faults_url(pytester: pytest.Pytester, backend: Backend) -> Iterator[str]:
    """A database of this test's own with an empty ``items`` table, dropped afterwards."""
    if backend.family == "sqlite":
        url = f"sqlite:///{pytester.path / 'faults_test.db'}"
    else:
        url = sibling_url(backend, "faults")
        _server_run(backend, "DROP DATABASE IF EXISTS {db}", "CREATE DATABASE {db}", db=_name(url))
    peer = Backend(backend.name, url).peer()
    peer.execute(ITEMS)
    peer.close()
    yield url
    if backend.family != "sqlite":
        drop = "DROP DATABASE IF EXISTS {db}" + (" WITH (FORCE)" if backend.family == "postgresql" else "")
        _server_run(backend, drop, db=_name(url))


def _name(url: str) -> str:
    return url.partition("?")[0].rsplit("/", 1)[1]


def _server_run(backend: Backend, *statements: str, db: str) -> None:
    peer = backend.peer()
    try:
        if backend.family == "mysql":
            peer.execute(
                "SET SESSION lock_wait_timeout = 20"
            )  # never hang on a connection left in a transaction
        for statement in statements:
            peer.execute(statement.format(db=db))
    finally:
        peer.close()


def make_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".ini", pytest=f"[pytest]\ntxscope_url = {url}\naddopts = -p no:randomly\n")
    monkeypatch.setenv("FAULTS_URL", url)


def rows_left(backend: Backend, url: str) -> int:
    """What an independent connection sees in ``items`` after the run."""
    peer = Backend(backend.name, url).peer()
    try:
        return int(peer.fetchall("SELECT count(*) FROM items")[0][0])
    finally:
        peer.close()


def sections(result: pytest.RunResult) -> dict[str, pytest.LineMatcher]:
    """Each failure and error section of the report, by title (``test_x``, ``ERROR at teardown of test_x``)."""
    found: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in result.outlines:
        title = re.fullmatch(r"_{3,} (.+?) _{3,}", line)
        if title is not None:
            lines = found.setdefault(title.group(1), [])
        elif line.startswith("="):
            lines = None
        elif lines is not None:
            lines.append(line)
    return {title: pytest.LineMatcher(body) for title, body in found.items()}


def check_report(result: pytest.RunResult, expected: dict[str, list[str]]) -> None:
    """Exactly the ``expected`` sections, one per failing test (no teardown error after a failure, no storm),
    each showing every line pattern given (``fnmatch``)."""
    found = sections(result)
    assert sorted(found) == sorted(expected), result.stdout.str()
    for title, patterns in expected.items():
        for pattern in patterns:
            found[title].fnmatch_lines([pattern])


# -------------------------------------------------------------------------------------------------- tests
def test_a_lost_connection_fails_one_test_and_the_next_ones_reconnect(
    pytester: pytest.Pytester, backend: Backend, faults_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pytester, monkeypatch, faults_url)
    pytester.makepyfile(test_lost=LOST_CONNECTION)
    # In a process of its own: SQLAlchemy dialects this run imports must not be imported again, with their
    # registrations, by later in-process runs of the suite (SAWarning, an error under filterwarnings).
    result = pytester.runpytest_subprocess()
    lost = (
        "E   *pytest_txscope.errors.ConnectionLostError: the connection to * was lost while running *; what was "
        "not committed on it is rolled back, so the open transaction's work is gone. The connection is "
        "discarded and the next session (the next test) opens a new one. Find out what ended it: *"
    )
    # Each driver words it its own way (psycopg2 reports the closed socket, not the server's FATAL message;
    # libmariadb, under mysqlclient, leaves "MySQL" out of its messages).
    killed = {
        "postgresql": "*(*terminating connection due to administrator command*)*",
        "postgresql-psycopg2": "*(OperationalError: server closed the connection unexpectedly*",
        "mysql": "*(OperationalError: (2013, 'Lost connection to *server during query'))*",
        "mysql-mysqldb": "*(OperationalError: (2013, 'Lost connection to *server during query'))*",
        "sqlite-file": "*(ProgrammingError: Cannot operate on a closed database.)*",
    }[backend.name]
    closed = {
        "postgresql": "*(OperationalError: the connection is closed)*",
        "postgresql-psycopg2": "*(InterfaceError: connection already closed)*",
        "mysql": "*(InterfaceError: (0, ''))*",
        "mysql-mysqldb": "*(OperationalError: (2006, *))*",
        "sqlite-file": "*(ProgrammingError: Cannot operate on a closed database.)*",
    }[backend.name]
    check_report(
        result,
        {
            "test_01_killed_mid_test": [lost, killed],
            "test_09_closes_the_real_connection": [lost, closed],
            "test_13_killed_under_the_orm_session": [
                lost.replace("while running *", 'while running "INSERT*'),
                killed,
            ],
        },
    )
    result.assert_outcomes(passed=12, failed=3)
    assert rows_left(backend, faults_url) == 0


def test_b_code_that_ends_the_transaction_gets_one_error_and_nothing_is_left(
    pytester: pytest.Pytester, backend: Backend, faults_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pytester, monkeypatch, faults_url)
    mysql = backend.family == "mysql"
    pytester.makepyfile(test_code=CODE_ENDS_IT + LAST)
    result = pytester.runpytest()
    through_library = (
        "end transactions through the library instead (tx.{0}(), the end of a 'with' block, or {0}() of a "
        "DB-API connection from sandbox.connection()), never as SQL text"
    )
    committed = (
        "E   *ImplicitCommitError: * committed the transaction when 'COMMIT' was sent as a statement: the "
        f"transaction and its savepoints are gone*; {through_library.format('commit')}"
    )
    rolled_back = (
        "E   *ImplicitCommitError: * rolled back the transaction when 'ROLLBACK' was sent as a statement: *; "
        + through_library.format("rollback")
    )
    savepoint = (
        "E   *TransactionStateError: savepoint txscope_sp{0}, set by the library, no longer existed when it sent "
        "*: code released it or rolled back past it with SQL text (RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT) "
        "behind the library's back; every transaction on the connection is rolled back. End transactions with "
        "tx.commit() / tx.rollback(), *never with SQL text"
    )
    ended_before = (
        'E   *ImplicitCommitError: * held no transaction any more after "INSERT INTO items (id, name) VALUES (2, '
        "*)\", which cannot end one: code had ended it behind the library's back, on the driver's connection*"
    )
    expected = {
        "test_01_raw_commit": [committed],
        "test_03_raw_rollback": [rolled_back],
        "test_05_releases_the_apps_savepoint": [savepoint.format(1)],
        "test_06_rolls_back_past_a_savepoint": [savepoint.format(2)],
        "ERROR at teardown of test_09_commits_on_the_driver_connection": [
            "E   *SandboxEscapeError: the test's outer transaction was ended before the sandbox rolled it back "
            "(the server reports no open transaction); what was committed then is in the database now. *"
        ],
        "test_10_commits_on_the_driver_connection_and_goes_on": [
            "E   *TransactionStateError: the transaction on this connection had already ended when the library "
            "sent 'RELEASE SAVEPOINT txscope_stmt1; SAVEPOINT txscope_stmt1': code committed or rolled back on "
            "the driver's connection (session.connection) behind the library's back*"
            if backend.family == "postgresql"
            else ended_before
        ],
    }
    if backend.name == "postgresql-psycopg2":
        # psycopg2 commits only transactions it began itself: on the library's connection (autocommit, BEGIN
        # sent as SQL) commit() does nothing, and switching autocommit on changes nothing. Nothing escapes.
        del expected["ERROR at teardown of test_09_commits_on_the_driver_connection"]
        del expected["test_10_commits_on_the_driver_connection_and_goes_on"]
    elif backend.family == "sqlite":  # sqlite3 commits when isolation_level is set to None
        expected["test_11_switches_the_driver_connection_to_autocommit"] = [ended_before]
    elif backend.family == "postgresql":  # psycopg refuses it inside a transaction; nothing changed
        expected["test_11_switches_the_driver_connection_to_autocommit"] = [
            "E   *ProgrammingError: can't change 'autocommit' now: connection in transaction status INTRANS"
        ]
    # On PyMySQL the library's connection is in autocommit mode already (it sends BEGIN itself): no change.
    if mysql:  # DDL commits implicitly on MariaDB; elsewhere it is transactional and rolled back
        expected["test_12_ddl"] = [
            "E   *ImplicitCommitError: MySQL/MariaDB committed the transaction implicitly while running 'DROP "
            "TABLE IF EXISTS faults_nothing': the transaction and its savepoints are gone*; run DDL outside "
            "transactions (engine.executescript(...)) or use CREATE TEMPORARY TABLE, which does not commit"
        ]
    check_report(result, expected)
    failed = len([t for t in expected if not t.startswith("ERROR")])
    errors = len(expected) - failed  # test_09 passed, then its teardown erred (not on psycopg2)
    total = 13
    result.assert_outcomes(passed=total - failed, failed=failed, errors=errors)
    assert rows_left(backend, faults_url) == 0


@pytest.mark.backends("postgresql", "mysql")
def test_c_unreachable_server_is_one_error_naming_host_and_port(
    pytester: pytest.Pytester, backend: Backend, faults_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme, rest = faults_url.split("://", 1)
    user = rest.split("@", 1)[0].split(":")[0]
    url = f"{scheme}://{user}:N0t-shown-pw@127.0.0.1:1/{_name(faults_url)}"
    make_project(pytester, monkeypatch, url)
    pytester.makepyfile(
        test_unreachable="""
def test_0_needs_no_database():
    pass

def test_1_first_to_need_it(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'x')")

def test_2_needs_it_too(db_session):
    pass

def test_3_needs_no_database():
    pass
"""
    )
    result = pytester.runpytest()
    shown = f"{scheme}://{user}:***@127.0.0.1:1/"
    result.stdout.fnmatch_lines(
        [f"txscope: {shown}{_name(faults_url)} [[]{backend.family}, from txscope_url]; *"]
    )
    # asyncpg, not a DB-API driver, raises the socket's own error rather than an OperationalError.
    error_class = "ConnectionRefusedError" if backend.name == "postgresql-asyncpg" else "OperationalError"
    check_report(
        result,
        {
            "ERROR at setup of test_1_first_to_need_it": [
                f"*BackendUnavailableError: cannot connect to {shown}*: {error_class}: *",
                "*; check that the server is running and the URL (host, port, user, database) is right",
            ]
        },
    )
    # The driver's own words pass through; psycopg 3.1 (our floor) does not repeat the host and port in them.
    refused = {
        "postgresql": "*OperationalError: *Connection refused*",
        "postgresql-psycopg2": "*port 1 failed: Connection refused*",
        "postgresql-asyncpg": "*ConnectionRefusedError: *Connect call failed ('127.0.0.1', 1)*",
        "mysql": "*(2003, *Connection refused*",
        # libmariadb, with a connect timeout, connects without blocking: 2002 and EINPROGRESS, or 2003.
        "mysql-mysqldb": "*(200[23], *Can't connect to *server on '127.0.0.1' (*)*",
    }
    result.stdout.fnmatch_lines([refused[backend.name]])
    outcomes = result.parseoutcomes()
    # The first test that needs the database reports it; the run stops there instead of repeating it.
    assert outcomes.get("errors") == 1, outcomes
    assert "failed" not in outcomes, outcomes
    assert outcomes.get("passed") == 1, outcomes
    assert "N0t-shown-pw" not in result.stdout.str() + result.stderr.str()
    assert rows_left(backend, faults_url) == 0


# ------------------------------------------------------------------------------ the library, without pytest
def kill(backend: Backend, peer: Peer, conn: Any) -> None:
    """End ``conn`` from outside with ``peer`` (the server kills it); on SQLite, close it under the library."""
    if backend.family == "postgresql":
        pid = conn.info.backend_pid
        peer.execute(f"SELECT pg_terminate_backend({pid})")
        query = f"SELECT 1 FROM pg_stat_activity WHERE pid = {pid}"
    elif backend.family == "mysql":
        thread = conn.thread_id()
        peer.execute(f"KILL {thread}")
        query = f"SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = {thread}"
    else:
        conn.close()
        return
    for _ in range(500):
        if not peer.fetchall(query):
            return
        time.sleep(0.01)
    raise AssertionError("the killed connection is still on the server after 5 s")


def test_d_connection_lost_in_a_transaction(backend: Backend, engine: Engine, peer: Peer) -> None:
    with pytest.raises(ConnectionLostError) as info, engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        kill(backend, peer, tx.session.connection)
        tx.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
    error = info.value
    assert isinstance(error, ConnectionError)
    assert error.cause is error.__cause__
    assert type(error.cause).__module__.split(".")[0] in (
        "sqlite3",
        "psycopg",
        "psycopg2",
        "pymysql",
        "MySQLdb",
    )
    assert not isinstance(error, type(error.cause))  # the driver's retry-on-OperationalError code stays out
    assert error.statement == "INSERT INTO items (id, name) VALUES (2, 'b')"
    assert tx.state is TransactionState.BROKEN
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]
    assert engine._idle == []  # the dead connection was discarded, not pooled
    with engine as tx:  # a new connection
        assert tx.fetchscalar("SELECT count(*) FROM items") == 0


def test_e_connection_lost_before_commit(backend: Backend, engine: Engine, peer: Peer) -> None:
    with pytest.raises(ConnectionLostError, match="whether the COMMIT took effect is unknown"), engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        kill(backend, peer, tx.session.connection)
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_f_rollback_on_a_lost_connection_is_quiet(backend: Backend, engine: Engine, peer: Peer) -> None:
    tx = engine.begin()
    tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
    kill(backend, peer, tx.session.connection)
    tx.rollback()  # the server rolled back with the connection: the rollback has happened
    assert tx.state is TransactionState.ROLLED_BACK
    assert engine._idle == []
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_g_connection_dead_in_the_pool_is_replaced(backend: Backend, engine: Engine, peer: Peer) -> None:
    with engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        dead = tx.session.connection
    assert engine._idle == [dead]
    kill(backend, peer, dead)
    with engine as tx:  # its BEGIN finds the connection dead (SQLite: the pool does) and takes a new one
        assert tx.fetchscalar("SELECT count(*) FROM items") == 1
        assert tx.session.connection is not dead
    assert engine._open == 1
    sandbox = Sandbox(
        engine
    ).start()  # the same inside a sandbox, through a cursor made before the first send
    kill(backend, peer, sandbox.session().connection)
    raw = sandbox.connection()
    cursor = raw.cursor()
    cursor.execute("DELETE FROM items")
    raw.commit()
    assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 0
    sandbox.stop()
    assert peer.fetchall("SELECT count(*) FROM items") == [(1,)]


@pytest.mark.backends("sqlite-memory")
def test_h_in_memory_sqlite_is_not_reconnected(backend: Backend, engine: Engine) -> None:
    # A new connection would be a new, empty database ("no such table: items"): the loss is reported instead.
    with engine.session() as session:
        session.connection.close()
        with pytest.raises(ConnectionLostError, match="was lost while running 'BEGIN'"):
            session.execute("INSERT INTO items (id, name) VALUES (1, 'a')")


def test_i_raw_rollback_in_a_sandbox_is_no_escape(backend: Backend, engine: Engine, peer: Peer) -> None:
    sandbox = Sandbox(engine).start()
    session = sandbox.session()
    session.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
    with pytest.raises(ImplicitCommitError, match="rolled back the transaction when 'ROLLBACK'") as info:
        session.execute("ROLLBACK")
    assert info.value.rolled_back
    with pytest.raises(TransactionStateError, match="no longer open"), engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
    sandbox.stop()  # nothing escaped: no SandboxEscapeError
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]
