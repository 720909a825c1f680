"""Runtime faults, injected for real into generated projects run by pytest in a subprocess (issue 7).

Each case asserts three things: the failing test gets one clear error naming the cause and the fix (and no
second error for the same test); the tests after it pass; and an independent connection (`Peer`) sees no row
left behind. Faults:

- a thread keeps its transaction open above the test's while the test thread waits to run a statement;
- a thread outlives the test: with its transaction open (waiting in Python, or ended without ending it: a
  warning each, as for any transaction left open), or stuck in a statement (an error);
- a test leaves a transaction open: ``engine.begin()``, a ``with`` block entered and never left, an ORM
  session that wrote and was never closed (a warning; a session that only read is fine);
- a fixture raises in its teardown, after the test's sandbox or while it is still active;
- a connection outside the sandbox waits for a row lock the sandbox holds (the server's lock timeout);
- ``KeyboardInterrupt`` in a sandboxed test;
- a pytest-xdist worker crashes (``os._exit``): its database is dropped, or reused by the next run.

The projects use small timeouts (``txscope_thread_timeout = 0.5``, lock timeouts of 0.2-1 s), so that the
waits stay short.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_txscope import ConnectionBusyError, DatabaseURL, TransactionStateError
from pytest_txscope.lease import Lease
from pytest_txscope.provision import drop, drop_templates, worker_url

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);\n"

# The application: a SQLAlchemy engine on the test database, pinned through txscope_engines.
APP = """
import os

from sqlalchemy import create_engine

from pytest_txscope import ConnectionBusyError, DatabaseURL, TransactionStateError
from pytest_txscope.lease import Lease
from pytest_txscope.sqlalchemy import sqlalchemy_url

sa_engine = create_engine(sqlalchemy_url(DatabaseURL.parse(os.environ["FAULTS_URL"])))
"""

CONFTEST = '''
import os

from pytest_txscope import ConnectionBusyError, DatabaseURL, TransactionStateError
from pytest_txscope.lease import Lease

URL = DatabaseURL.parse(os.environ["FAULTS_URL"])


def outside():
    """A connection of the driver's own, outside the sandbox, that gives up waiting for a lock quickly."""
    if URL.backend == "sqlite":
        import sqlite3

        return sqlite3.connect(URL.database, timeout=0.2, isolation_level=None)
    if URL.backend == "postgresql":
        import psycopg

        conn = psycopg.connect(
            host=URL.host, port=URL.port, user=URL.user, password=URL.password, dbname=URL.database,
            autocommit=True,
        )
        conn.execute("SET lock_timeout = '200ms'")
        return conn
    import pymysql

    conn = pymysql.connect(
        host=URL.host, port=URL.port or 3306, user=URL.user, password=URL.password or "",
        database=URL.database, autocommit=True,
    )
    conn.cursor().execute("SET SESSION innodb_lock_wait_timeout = 1")
    return conn


def count_outside():
    conn = outside()
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM items")
        return cur.fetchone()[0]
    finally:
        conn.close()
'''

# The faults. Threads catch what they run into (an uncaught error in a thread would be reported by pytest,
# in whichever test runs then) and test_99 checks it.
FAULTS = """
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

import app
from conftest import URL, count_outside, outside

RELEASE = threading.Event()
THREADS = {}
SAW = {}  # thread name -> what it ran into


def start(name, work, *args):
    started = threading.Event()

    def run():
        try:
            work(started, *args)
        except Exception as exc:
            SAW[name] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    THREADS[name] = thread
    thread.start()
    assert started.wait(10)
    return thread


def hold(started, engine, row):
    with engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": row, "name": f"thread-{row}"})
        started.set()
        RELEASE.wait(30)
        tx.execute("INSERT INTO items (id, name) VALUES (:id, 'too late')", {"id": row + 100})


SLOW = {
    "postgresql": "SELECT pg_sleep(30)",
    "mysql": "SELECT SLEEP(30)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
}


def run_slow(started, engine):
    with engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (3, 'thread-3')")
        started.set()
        tx.execute(SLOW[URL.backend])


def begin_and_return(started, engine):
    tx = engine.begin()
    tx.execute("INSERT INTO items (id, name) VALUES (4, 'thread-4')")


@pytest.mark.txscope(shared=True)
def test_01_thread_holds_while_the_test_waits(db_engine, db_session):
    start("holder-01", hold, db_engine, 1)
    db_session.execute("INSERT INTO items (id, name) VALUES (11, 'test')")


@pytest.mark.txscope(shared=True)
def test_02_thread_never_gives_the_connection_back(db_engine, db_session):
    start("holder-02", hold, db_engine, 2)


@pytest.mark.txscope(shared=True)
def test_03_thread_stuck_in_a_statement(db_engine, db_session):
    start("sleeper-03", run_slow, db_engine)
    time.sleep(0.2)  # let it reach the server


@pytest.mark.txscope(shared=True)
def test_04_thread_ended_inside_its_transaction(db_engine, db_session):
    start("ender-04", begin_and_return, db_engine).join(10)


def test_05_engine_begin_never_ended(db_engine, db_session):
    tx = db_engine.begin()
    tx.execute("INSERT INTO items (id, name) VALUES (5, 'begun')")


def test_06_with_block_never_left(db_engine, db_session):
    tx = db_engine.__enter__()
    tx.execute("INSERT INTO items (id, name) VALUES (6, 'entered')")


def test_07_orm_session_that_wrote_never_closed(db_session):
    session = Session(app.sa_engine)
    session.execute(text("INSERT INTO items (id, name) VALUES (7, 'orm')"))


def test_08_orm_session_that_only_read_never_closed(db_session):
    session = Session(app.sa_engine)
    assert session.execute(text("SELECT count(*) FROM items")).scalar() == 0


@pytest.fixture
def fails_after_yield(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (9, 'fixture')")
    yield db_session
    db_session.execute("INSERT INTO items (id, name) VALUES (90, 'fixture teardown')")
    raise RuntimeError("fails_after_yield broke in its teardown")


def test_09_fixture_raises_after_yield(fails_after_yield):
    fails_after_yield.execute("INSERT INTO items (id, name) VALUES (19, 'test')")


@pytest.fixture
def cleans_up_and_fails(db_engine):
    yield
    with db_engine as tx:  # the sandbox is still active: this goes into it
        tx.execute("INSERT INTO items (id, name) VALUES (10, 'cleanup')")
    raise RuntimeError("cleans_up_and_fails broke in its teardown")


@pytest.mark.txscope
def test_10_fixture_raises_while_the_sandbox_is_active(cleans_up_and_fails, db_engine):
    with db_engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (20, 'test')")


def test_11_outside_connection_waits_for_a_row_the_sandbox_holds(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (11, 'sandbox')")
    conn = outside()
    try:
        conn.cursor().execute("INSERT INTO items (id, name) VALUES (11, 'outside')")
    finally:
        conn.close()


def test_12_after_the_faults(db_engine, db_session):
    with db_engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (12, 'fine')")
    assert db_session.fetchall("SELECT id FROM items") == [(12,)]


def test_99_nothing_is_left(db_session):
    RELEASE.set()
    for thread in THREADS.values():
        thread.join(10)
        assert not thread.is_alive(), thread.name
    names = {name: type(exc).__name__ for name, exc in SAW.items()}
    stuck = "OperationalError" if URL.backend == "sqlite" else "ConnectionLostError"
    assert names == {
        "holder-01": "TransactionStateError",
        "holder-02": "TransactionStateError",
        "sleeper-03": stuck,
    }, SAW
    assert "rolled back when the sandbox ended" in str(SAW["holder-02"])
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
    assert count_outside() == 0
"""


# ---------------------------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    # The generated projects load only the plugins they name: whatever else is installed (hypothesis, faker,
    # factory-boy plugins...) costs about a second to import in every process, xdist workers included.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def faults_url(
    backend: Backend, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DatabaseURL]:
    """A database of this test's own (an SQLite file in the project), dropped afterwards with its workers'."""
    stem = f"faults_{uuid.uuid4().hex[:8]}"
    if backend.family == "sqlite":
        url = DatabaseURL.parse(f"sqlite:///{pytester.path / 'data' / (stem + '_test.db')}")
    else:
        url = DatabaseURL.parse(sibling_url(backend, stem).partition("?")[0])
    monkeypatch.setenv("FAULTS_URL", str(url))  # no password on the test servers: nothing is masked
    yield url
    for worker in (None, "gw0", "gw1", "gw2", "gw3"):
        drop(worker_url(url, worker), allow=())
    drop_templates(url, allow=())


def make_project(pytester: pytest.Pytester, url: DatabaseURL, *, app: bool = True) -> None:
    """A project on ``url`` with the plugin; ``app``: an application SQLAlchemy engine on that database (not
    under pytest-xdist, whose workers use databases of their own)."""
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makepyfile(conftest=CONFTEST)
    if app:
        pytester.makepyfile(app=APP)
    pytester.makefile(
        ".ini",
        pytest="\n".join(
            [
                "[pytest]",
                "txscope_schema = schema.sql",
                f"txscope_url = {url}",
                *(["txscope_engines = app:sa_engine"] if app else []),
                "txscope_thread_timeout = 0.5",
                "addopts = -p txscope -p no:cacheprovider",
            ]
        ),
    )


def rows_left(backend: Backend, url: DatabaseURL, table: str = "items") -> int:
    """Rows in ``table`` of ``url``'s database, counted through an independent connection."""
    peer = Backend(backend.name, str(url)).peer()
    try:
        return int(peer.fetchall(f"SELECT count(*) FROM {table}")[0][0])
    finally:
        peer.close()


def databases_of(backend: Backend, url: DatabaseURL) -> list[str]:
    """The databases (SQLite: files) named after ``url``'s: itself, its workers' and templates."""
    name = url.database
    if backend.family == "sqlite":
        path = Path(name)
        return sorted(p.name for p in path.parent.glob(path.stem + "*"))
    peer = backend.peer()
    try:
        if backend.family == "postgresql":
            rows = peer.fetchall("SELECT datname FROM pg_database")
        else:
            rows = peer.fetchall("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    finally:
        peer.close()
    mine = re.compile(rf"{re.escape(name)}(_gw\d+|_tpl_.*)?")
    return sorted(str(r[0]) for r in rows if mine.fullmatch(str(r[0])))


def summary_lines(output: str, nodeid: str) -> list[str]:
    """The short test summary's lines about ``nodeid`` (one per error or failure reported for it)."""
    return [
        line for line in output.splitlines() if re.match(rf"(FAILED|ERROR) {re.escape(nodeid)}( |$)", line)
    ]


def line_of(pytester: pytest.Pytester, module: str, text: str, after: str = "") -> int:
    """The number of the first line of ``module`` (a generated file) containing ``text`` (after ``after``)."""
    lines = (pytester.path / module).read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if after in line) if after else 0
    return next(n for n, line in enumerate(lines) if n >= start and text in line) + 1


# ------------------------------------------------------------------------------------------------ tests
def test_lease_seize_displaces_the_holder_and_close_keeps_it_out() -> None:
    lease = Lease(timeout=5)
    took, release = threading.Event(), threading.Event()
    seen: list[BaseException] = []

    def holder() -> None:
        lease.acquire()
        took.set()
        release.wait(10)
        lease.release()  # displaced meanwhile: changes nothing
        try:
            lease.acquire()
        except TransactionStateError as exc:
            seen.append(exc)

    thread = threading.Thread(target=holder, name="late")
    thread.start()
    assert took.wait(10)
    displaced = lease.seize(0.1)
    assert displaced is not None
    assert (displaced.thread, displaced.alive, displaced.running) == (thread, True, False)
    assert re.fullmatch(r".*test_faults_runtime\.py:\d+ in holder", displaced.since)
    assert displaced.now is not None
    assert displaced.now.endswith(" in holder")
    assert displaced.now != displaced.since
    lease.close()
    release.set()
    thread.join(10)
    assert lease.owner is threading.current_thread()  # the late release did not give it away
    assert [str(e).split(":")[0] for e in seen] == ["thread 'late' used a sandbox that has ended"]
    lease.acquire()  # the holder itself may still take it again (the sandbox's own stop does)
    lease.reset()


def test_lease_taken_by_a_thread_that_ended_is_seized_at_once_and_named() -> None:
    lease = Lease(timeout=0.2)
    thread = threading.Thread(target=lease.acquire, name="gone")
    thread.start()
    thread.join(10)
    with pytest.raises(ConnectionBusyError) as info:
        lease.acquire()
    me = re.escape(threading.current_thread().name)  # not MainThread on some pytest-xdist workers
    assert re.fullmatch(
        rf"thread '{me}' waited 0\.2s for the sandbox's connection, which thread 'gone' took at an unknown "
        r"place and never gave back: that thread has ended without ending its transaction; end every "
        r"transaction in the thread that began it \(a 'with' block ends it on every path\)",
        str(info.value),
    )
    assert lease.timeouts == [(thread, info.value)]
    started = time.monotonic()
    displaced = lease.seize(30)
    assert time.monotonic() - started < 5  # nobody to wait for
    assert displaced is not None
    assert not displaced.alive


LOCK_ERRORS = {
    "sqlite": "sqlite3.OperationalError: database is locked",
    "postgresql": "psycopg.errors.LockNotAvailable: canceling statement due to lock timeout",
    "mysql": "pymysql.err.OperationalError: (1205, 'Lock wait timeout exceeded; try restarting transaction')",
}


def test_thread_teardown_and_lock_faults(
    pytester: pytest.Pytester, backend: Backend, faults_url: DatabaseURL
) -> None:
    make_project(pytester, faults_url)
    pytester.makepyfile(test_faults=FAULTS)
    result = pytester.runpytest_subprocess("--txscope-reuse-db", timeout=120)
    output = result.stdout.str()
    result.assert_outcomes(passed=11, failed=2, errors=3, warnings=5)
    module = "test_faults.py"
    hold_at = line_of(pytester, module, "with engine as tx:", after="def hold(")
    waits_at = line_of(pytester, module, "RELEASE.wait(30)")
    where = f"*/{module}:{{}} in {{}}"

    # (a) one error per failing test, naming the cause and the fix; nothing for the tests that passed clean
    expected = {
        "test_01_thread_holds_while_the_test_waits": 1,
        "test_03_thread_stuck_in_a_statement": 1,
        "test_09_fixture_raises_after_yield": 1,
        "test_10_fixture_raises_while_the_sandbox_is_active": 1,
        "test_11_outside_connection_waits_for_a_row_the_sandbox_holds": 1,
    }
    for name in re.findall(r"^def (test_\w+)", FAULTS, re.MULTILINE):
        assert len(summary_lines(output, f"{module}::{name}")) == expected.get(name, 0), name

    # 1. the test thread waited for a thread's transaction open above its own: that thread, where it began its
    # transaction and where it is now; its teardown (which found the thread's transaction open) adds nothing
    test_01_at = line_of(pytester, module, "db_session.execute(", after="def test_01_")
    result.stdout.fnmatch_lines(
        [
            "E * pytest_txscope.errors.ConnectionBusyError: thread 'MainThread' waited 0.5s at "
            f"{where.format(test_01_at, 'test_01_thread_holds_while_the_test_waits')} for thread 'holder-01''s "
            f"transaction #* (root, as a savepoint) to end: it began at {where.format(hold_at, 'hold')}, and is "
            f"now at {where.format(waits_at, 'hold')}, and it is open above the transaction 'MainThread' works "
            "in, so 'MainThread''s statement would land inside it (and be undone by its rollback); threads "
            "sharing the sandbox's connection stack their transactions, and one ends (or runs a statement in) "
            "its transaction only when no other thread's is open above it: commit or close 'holder-01''s "
            "session sooner, or raise txscope_thread_timeout",
        ]
    )
    # 2. a thread stuck in a statement when the test ends (threads that only keep a transaction open hold
    # nothing: their transactions are reported as left open, below)
    slow_at = line_of(pytester, module, "tx.execute(SLOW", after="def run_slow(")
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_03_thread_stuck_in_a_statement _*",
            "E * pytest_txscope.errors.SandboxStillHeldError: the test ended while thread 'sleeper-03' still "
            f"held the sandbox's connection: it took it at {where.format(slow_at, 'run_slow')}. The sandbox "
            "waited 0.5s for it (txscope_thread_timeout), then rolled everything back, that thread's work "
            "included; the statement it was running was interrupted; the thread's next use of the database "
            "fails. Let threads finish before the test ends: join them, shut executors down and stop servers in "
            "the test or in a fixture it requests",
        ]
    )
    # 3. transactions left open: a warning each, naming where they began; an ORM session that only read: none
    left_open = (
        "  */pytest_txscope/plugin_teardown.py:*: TransactionLeftOpenWarning: the test ended with 1 "
        "transaction(s) still open, which were rolled back (with the sandbox, if they were in one): "
        "transaction #* (root, as a savepoint) of {} Outside a test their work would never be committed (nor "
        "their connections given back): end each transaction (commit() or rollback(), or a 'with' block) and "
        "close sessions (session.close(), or 'with engine.session() as session:')"
    )
    begun = "<Engine *>, begun at " + where + "."
    result.stdout.fnmatch_lines(
        [
            "*= warnings summary =*",
            f"{module}::test_02_thread_never_gives_the_connection_back",
            left_open.format(begun.format(hold_at, "hold")),
            f"{module}::test_04_thread_ended_inside_its_transaction",
            left_open.format(
                begun.format(line_of(pytester, module, "tx = engine.begin()"), "begin_and_return")
            ),
            f"{module}::test_05_engine_begin_never_ended",
            left_open.format(
                begun.format(
                    line_of(pytester, module, "tx = db_engine.begin()"), "test_05_engine_begin_never_ended"
                )
            ),
            f"{module}::test_06_with_block_never_left",
            left_open.format(
                begun.format(
                    line_of(pytester, module, "db_engine.__enter__()"), "test_06_with_block_never_left"
                )
            ),
            f"{module}::test_07_orm_session_that_wrote_never_closed",
            left_open.format(
                "a DB-API connection from db_sandbox.connection() (the application's SQLAlchemy engines use "
                "these), begun at "
                + where.format(
                    line_of(pytester, module, 'session.execute(text("INSERT'),
                    "test_07_orm_session_that_wrote_never_closed",
                )
                + ", which changed data."
            ),
            "-- Docs: *",
        ]
    )
    assert "test_08_orm_session_that_only_read_never_closed" not in output.split("warnings summary")[1]
    # 4. a fixture's teardown error: reported once, as the user's own error; the sandbox still rolled back
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_09_fixture_raises_after_yield _*",
            "E * RuntimeError: fails_after_yield broke in its teardown",
            "*_ ERROR at teardown of test_10_fixture_raises_while_the_sandbox_is_active _*",
            "E * RuntimeError: cleans_up_and_fails broke in its teardown",
        ]
    )
    # 1 (ii). a connection outside the sandbox waited for a row the sandbox holds: the server's error, with
    # the cause and the fix
    result.stdout.fnmatch_lines(
        [
            "*_ test_11_outside_connection_waits_for_a_row_the_sandbox_holds _*",
            f"E * {LOCK_ERRORS[backend.family]}",
            "E * pytest-txscope: a connection gave up waiting for a lock. This test runs in a sandbox: a "
            "transaction that stays open until the test ends, and keeps locked every row the test wrote (or "
            "locked) until then. A second connection that writes or locks those rows waits for the test, while "
            "the test waits for that connection. Send that work through the sandbox instead (db_session, the "
            "engines in txscope_engines, db_sandbox.connection()), or mark the test "
            "@pytest.mark.txscope(commit=True) to run it with real commits",
        ]
    )
    # (b) the tests after the faults passed (test_12, test_99, counted above); (c) nothing is left
    assert rows_left(backend, faults_url) == 0


INTERRUPT = """
from sqlalchemy import text
from sqlalchemy.orm import Session

import app
from conftest import count_outside


def test_1_before(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'before')")


def test_2_interrupted(db_engine, db_session):
    with db_engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (2, 'committed by the app')")
    with Session(app.sa_engine) as session:
        session.execute(text("INSERT INTO items (id, name) VALUES (3, 'committed by the ORM')"))
        session.commit()
    db_session.execute("INSERT INTO items (id, name) VALUES (4, 'the test')")
    raise KeyboardInterrupt


def test_3_after(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
    assert count_outside() == 0
"""


def test_keyboard_interrupt_stops_the_run_cleanly(
    pytester: pytest.Pytester, backend: Backend, faults_url: DatabaseURL
) -> None:
    make_project(pytester, faults_url)
    pytester.makepyfile(test_interrupt=INTERRUPT)
    result = pytester.runpytest_subprocess("--txscope-reuse-db", timeout=120)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*! KeyboardInterrupt !*", "*/test_interrupt.py:*: KeyboardInterrupt", "*= 1 passed in *"]
    )
    everything = result.stdout.str() + result.stderr.str()
    for noise in ("Traceback", "pytest_txscope", "ERROR", "Error"):
        assert noise not in everything, f"{noise!r} in the output of an interrupted run:\n{everything}"
    assert rows_left(backend, faults_url) == 0
    # the next run starts from a clean database and passes
    pytester.runpytest_subprocess("--txscope-reuse-db", "-k", "not interrupted", timeout=120).assert_outcomes(
        passed=2
    )
    assert rows_left(backend, faults_url) == 0


CRASH = """
import os

import pytest


@pytest.mark.parametrize("n", range(6))
def test_fine(db_session, n):
    db_session.execute("INSERT INTO items (id, name) VALUES (1, 'row')")
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1


def test_crash(db_session):
    db_session.execute("INSERT INTO items (id, name) VALUES (2, 'crash')")
    os._exit(1)
"""


def test_crashed_xdist_worker_database_is_dropped(
    pytester: pytest.Pytester, backend: Backend, faults_url: DatabaseURL
) -> None:
    make_project(pytester, faults_url, app=False)
    pytester.makepyfile(test_workers=CRASH)
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", timeout=120)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running 'test_workers.py::test_crash'*"])
    result.assert_outcomes(passed=6, failed=1)
    assert summary_lines(result.stdout.str(), "test_workers.py::test_crash") != []
    assert databases_of(backend, faults_url) == [], "the crashed worker's database was left behind"


def test_crashed_xdist_worker_database_is_reused_by_the_next_run(
    pytester: pytest.Pytester, backend: Backend, faults_url: DatabaseURL
) -> None:
    make_project(pytester, faults_url, app=False)
    pytester.makepyfile(test_workers=CRASH)
    first = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "--txscope-reuse-db", timeout=120)
    first.stdout.fnmatch_lines(["*worker 'gw*' crashed while running 'test_workers.py::test_crash'*"])
    first.assert_outcomes(passed=6, failed=1)
    workers = [worker_url(faults_url, w) for w in ("gw0", "gw1")]
    for url in workers:
        assert rows_left(backend, url) == 0  # the crashed transaction never reached the database
        peer = Backend(backend.name, str(url)).peer()
        try:  # a mark that survives only if the next run reuses the database rather than building it again
            peer.execute("CREATE TABLE reuse_mark (id INTEGER)")
        finally:
            peer.close()

    second = pytester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "--txscope-reuse-db", "-k", "not test_crash", timeout=120
    )
    second.assert_outcomes(passed=6)
    for url in workers:
        assert rows_left(backend, url) == 0
        assert rows_left(backend, url, "reuse_mark") == 0  # the table is still there: reused, not rebuilt
