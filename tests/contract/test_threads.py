"""Threads and the sandbox: refused by default, shared on request, one thread at a time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_txscope import ConnectionBusyError, Engine, Sandbox, SandboxThreadError

from ..backends import Backend, Peer


def in_thread(work: Callable[[], Any], name: str = "worker") -> Any:
    """Run ``work`` in a new thread; return its result or raise its exception here."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the thread did not finish"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def insert(engine: Engine, id_: int, name: str) -> None:
    with engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": id_, "name": name})


def test_another_thread_is_refused_by_default(engine: Engine) -> None:
    with Sandbox(engine) as sandbox:
        with pytest.raises(SandboxThreadError) as info:
            in_thread(lambda: insert(engine, 1, "escape"), name="intruder")
        assert str(info.value) == (
            f"thread 'intruder' used {engine!r}, which the sandbox of thread 'MainThread' pins to its connection; "
            "another thread's work would escape the test's rollback, so it is refused; run the work in the test's "
            "thread, or share the sandbox: mark the test @pytest.mark.txscope(shared=True), or call "
            "db_sandbox.share() or db_sandbox.allow_thread(thread)"
        )
        raw = sandbox.connection()
        raw.cursor().execute("SELECT 1")
        with pytest.raises(SandboxThreadError):  # a pool may hand the raw connection to another thread
            in_thread(lambda: raw.cursor().execute("SELECT 1"), name="pool-thread")


def test_shared_threads_write_into_the_sandbox_and_nothing_survives(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox:
        sandbox.share()
        threads = [threading.Thread(target=insert, args=(engine, i, f"t{i}")) for i in range(1, 6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 5
        assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_a_thread_holds_the_connection_for_its_whole_transaction(engine: Engine) -> None:
    order: list[str] = []
    inside = threading.Event()

    def slow() -> None:
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'slow')")
            inside.set()
            time.sleep(0.3)
            order.append("slow commits")

    with Sandbox(engine) as sandbox:
        sandbox.share()
        thread = threading.Thread(target=slow)
        thread.start()
        inside.wait(10)
        # The test's statement waits for the other thread's transaction to end.
        count = sandbox.session().fetchscalar("SELECT count(*) FROM items")
        order.append("test reads")
        thread.join(10)
    assert order == ["slow commits", "test reads"]
    assert count == 1


def test_waiting_too_long_names_the_holder(engine: Engine) -> None:
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with engine as tx:
            tx.execute("SELECT 1").close()
            holding.set()
            release.wait(10)

    with Sandbox(engine) as sandbox:
        sandbox.share(timeout=0.2)
        thread = threading.Thread(target=hold, name="holder")
        thread.start()
        holding.wait(10)
        with pytest.raises(ConnectionBusyError) as info:
            sandbox.session().execute("SELECT 1")
        release.set()
        thread.join(10)
    message = str(info.value)
    # The test's own thread: MainThread, except on the workers of pytest-xdist < 3.6, which run tests in another.
    assert message.startswith(
        f"thread {threading.current_thread().name!r} waited 0.2s for the sandbox's connection, which thread "
        "'holder' holds since "
    )
    assert "test_threads.py:" in message
    assert " in hold;" in message
    assert message.endswith(
        "a thread holds it for the whole of its transaction (or ORM session transaction): commit or roll back "
        "sooner there, or raise txscope_thread_timeout"
    )


def test_teardown_waits_for_work_in_flight(engine: Engine, peer: Peer) -> None:
    started = threading.Event()
    finished: list[bool] = []

    def late() -> None:
        with engine as tx:
            started.set()
            time.sleep(0.3)
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'late')")
        finished.append(True)

    with Sandbox(engine) as sandbox:
        sandbox.share()
        thread = threading.Thread(target=late)
        thread.start()
        started.wait(10)
    # stop() waited for the thread's transaction, then rolled everything back
    assert finished == [True]
    thread.join(10)
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_allow_one_thread(engine: Engine) -> None:
    with Sandbox(engine) as sandbox:
        allowed = threading.Thread(target=insert, args=(engine, 1, "allowed"), name="allowed")
        sandbox.allow_thread(allowed)
        allowed.start()
        allowed.join(10)
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 1
        with pytest.raises(SandboxThreadError, match="thread 'other' used"):
            in_thread(lambda: insert(engine, 2, "other"), name="other")


def test_asyncio_to_thread_in_shared_mode(engine: Engine) -> None:
    async def main() -> None:
        await asyncio.gather(*(asyncio.to_thread(insert, engine, i, f"a{i}") for i in range(1, 4)))

    with Sandbox(engine) as sandbox:
        sandbox.share()
        asyncio.run(main())
        assert sandbox.session().fetchscalar("SELECT count(*) FROM items") == 3


@pytest.mark.backends("sqlite-memory")
def test_in_memory_sqlite_is_shared_across_threads(engine: Engine, backend: Backend) -> None:
    with Sandbox(engine) as sandbox:
        sandbox.share()
        in_thread(lambda: insert(engine, 1, "from a thread"))
        assert sandbox.session().fetchall("SELECT name FROM items") == [("from a thread",)]
    with engine.session() as session:
        assert session.fetchscalar("SELECT count(*) FROM items") == 0


@pytest.mark.backends("sqlite-file")
def test_shared_marker_through_the_plugin(pytester: pytest.Pytester, backend: Backend) -> None:
    pytester.makefile(".sql", schema="CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20));")
    pytester.makefile(".ini", pytest="[pytest]\ntxscope_schema = schema.sql\ntxscope_thread_timeout = 5\n")
    pytester.makepyfile(
        test_shared="""
import threading
import pytest

def work(engine):
    with engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'thread')")

@pytest.mark.txscope(shared=True)
def test_shared(db_engine, db_session):
    t = threading.Thread(target=work, args=(db_engine,))
    t.start(); t.join(10)
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1

def test_refused_by_default(db_engine, db_session):
    errors = []
    def run():
        try:
            work(db_engine)
        except Exception as exc:
            errors.append(type(exc).__name__)
    t = threading.Thread(target=run); t.start(); t.join(10)
    assert errors == ["SandboxThreadError"]

def test_allowed_from_the_fixture(db_engine, db_sandbox, db_session):
    t = threading.Thread(target=work, args=(db_engine,))
    db_sandbox.allow_thread(t)
    t.start(); t.join(10)
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1

def test_zz_nothing_left(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
"""
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=4)
