"""Threads and the sandbox: every thread shares the test's transaction statement by statement (the default),
each thread's transactions stacked as savepoints; strict mode refuses unknown threads.

Interleavings are forced with events and barriers; where a thread must be *waiting* before the next step, the
test waits (bounded) until the lease lists it among its waiting threads.
"""

from __future__ import annotations

import asyncio
import http.server
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from pytest_txscope import ConnectionBusyError, Engine, Sandbox, SandboxThreadError, TransactionStateError

from ..backends import Backend, Peer

WAIT = 10.0  # bound of every wait for an event: never reached when the code under test is right


def in_thread(work: Callable[[], Any], name: str = "worker") -> Any:
    """Run ``work`` in a new thread; return its result or raise its exception here."""
    runner = Runner(work, name)
    return runner.result()


class Runner:
    """``work`` running in a thread of its own, started at once; `result` joins it."""

    def __init__(self, work: Callable[[], Any], name: str) -> None:
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(work,), name=name)
        self.thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.box["result"] = work()
        except BaseException as exc:
            self.box["error"] = exc

    def result(self) -> Any:
        self.thread.join(3 * WAIT)
        assert not self.thread.is_alive(), f"thread {self.thread.name!r} did not finish"
        if "error" in self.box:
            raise self.box["error"]
        return self.box.get("result")


def until_waiting(sandbox: Sandbox, thread: threading.Thread) -> None:
    """Return once ``thread`` waits for its turn on the sandbox's connection (bounded)."""
    deadline = time.monotonic() + WAIT
    while sandbox.lease is None or thread not in sandbox.lease.waiting:
        assert time.monotonic() < deadline, f"thread {thread.name!r} never waited for the connection"
        threading.Event().wait(0.001)


def insert(engine: Engine, id_: int, name: str) -> None:
    with engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": id_, "name": name})


def count(executor: Any) -> int:
    return int(executor.fetchscalar("SELECT count(*) FROM items"))


def test_threads_share_the_sandbox_by_default_and_nothing_survives(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox:
        threads = [threading.Thread(target=insert, args=(engine, i, f"t{i}")) for i in range(1, 6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert count(sandbox.session()) == 5
        assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_a_worker_does_a_whole_request_while_the_test_waits_with_a_transaction_open(
    engine: Engine, peer: Peer
) -> None:
    """The test client's flow: the test's ORM session holds a transaction open and blocks on the response;
    the request runs in a worker thread, opens its transaction above, commits, returns; the test goes on."""
    with Sandbox(engine) as sandbox:
        sandbox.thread_timeout = 2  # a wait would fail fast; none happens
        main = engine.begin()
        main.execute("INSERT INTO items (id, name) VALUES (1, 'test')")

        def request() -> int:
            with engine as tx:
                seen = count(tx)  # the test's uncommitted row: one connection, one transaction
                tx.execute("INSERT INTO items (id, name) VALUES (2, 'request')")
            return seen

        assert in_thread(request, name="AnyIO worker thread") == 1
        assert count(main) == 2
        main.commit()
        assert count(sandbox.session()) == 2
        assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_a_worker_commit_is_undone_by_the_rollback_of_a_transaction_open_below_it(engine: Engine) -> None:
    """Where sharing differs from production: the worker's savepoint sits inside the test's open one."""
    with Sandbox(engine) as sandbox:
        main = engine.begin()
        main.execute("INSERT INTO items (id, name) VALUES (1, 'test')")
        in_thread(lambda: insert(engine, 2, "request"))
        main.rollback()
        assert count(sandbox.session()) == 0


SLOW_STATEMENT = {
    "postgresql": "SELECT pg_sleep(0.5)",
    "mysql": "SELECT SLEEP(0.5)",
    "sqlite": "SELECT slow()",
}


def test_a_thread_arriving_during_the_tests_statement_waits_for_its_end(
    engine: Engine, backend: Backend
) -> None:
    """The test's thread runs without the lease until a second thread comes; what it began before must end
    before the newcomer sends anything on the connection."""
    with Sandbox(engine) as sandbox:
        session = sandbox.session()
        inside = threading.Event()
        if backend.family == "sqlite":  # no sleep function: one that tells when the statement is running
            session.connection.create_function("slow", 0, lambda: inside.set() or time.sleep(0.5) or 1)
        sent = {}

        def arrive() -> None:
            assert inside.wait(WAIT)
            time.sleep(0.05)  # well inside the half-second statement
            insert(engine, 1, "worker")
            sent["worker"] = time.monotonic()

        worker = Runner(arrive, "worker")
        if backend.family != "sqlite":
            inside.set()  # the statement starts at once: the worker arrives while it runs
        session.execute(SLOW_STATEMENT[backend.family])
        sent["test"] = time.monotonic()
        worker.result()
        assert sent["worker"] > sent["test"]
        assert count(sandbox.session()) == 1


def test_a_statement_waits_while_another_threads_transaction_is_open_above_its_own(engine: Engine) -> None:
    first_open, second_open, second_go = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'first')")
            first_open.set()
            assert second_open.wait(WAIT)
            tx.execute("INSERT INTO items (id, name) VALUES (3, 'first again')")  # waits for 'second'
            order.append("first wrote again")

    def second() -> None:
        assert first_open.wait(WAIT)
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (2, 'second')")
            second_open.set()
            assert second_go.wait(WAIT)
            order.append("second commits")

    with Sandbox(engine) as sandbox:
        a, b = Runner(first, "first"), Runner(second, "second")
        until_waiting(sandbox, a.thread)
        second_go.set()
        b.result()
        a.result()
        assert order == ["second commits", "first wrote again"]
        assert sorted(sandbox.session().fetchall("SELECT name FROM items")) == [
            ("first",),
            ("first again",),
            ("second",),
        ]


def test_ending_a_block_under_another_threads_block_waits_for_it(engine: Engine) -> None:
    first_open, second_open, second_go = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'first')")
            first_open.set()
            assert second_open.wait(WAIT)
        # the commit above waited for 'second' to roll back: only then was its savepoint on top

    def second() -> None:
        assert first_open.wait(WAIT)
        tx = engine.begin()
        tx.execute("INSERT INTO items (id, name) VALUES (2, 'second')")
        second_open.set()
        assert second_go.wait(WAIT)
        tx.rollback()

    with Sandbox(engine) as sandbox:
        a, b = Runner(first, "first"), Runner(second, "second")
        until_waiting(sandbox, a.thread)
        second_go.set()
        b.result()
        a.result()
        assert sandbox.session().fetchall("SELECT name FROM items") == [("first",)]


def test_ending_a_block_under_another_threads_block_times_out_naming_both(engine: Engine) -> None:
    first_open, second_open, done = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'first')")
            first_open.set()
            assert second_open.wait(WAIT)

    def second() -> None:
        assert first_open.wait(WAIT)
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (2, 'second')")
            second_open.set()
            assert done.wait(WAIT)

    with Sandbox(engine) as sandbox:
        sandbox.share(timeout=0.2)
        a, b = Runner(first, "first"), Runner(second, "second")
        with pytest.raises(ConnectionBusyError) as info:
            a.result()
        done.set()
        b.result()
    message = str(info.value)
    assert re.fullmatch(
        r"thread 'first' waited 0\.2s at .*test_threads\.py:\d+ in first \(its transaction #\d+ \(root, as a "
        r"savepoint\) began at .*test_threads\.py:\d+ in first\) for thread 'second''s transaction #\d+ \(root, "
        r"as a savepoint\) to end: it began at .*test_threads\.py:\d+ in second, and is now at "
        r".*test_threads\.py:\d+ in second, and it is open above the transaction 'first' works in, so "
        r"'first''s statement would land inside it \(and be undone by its rollback\); threads sharing the "
        r"sandbox's connection stack their transactions, and one ends \(or runs a statement in\) its transaction "
        r"only when no other thread's is open above it: commit or close 'second''s session sooner, or raise "
        r"txscope_thread_timeout",
        message,
    )


def test_the_tests_statement_times_out_naming_the_thread_whose_transaction_is_open(engine: Engine) -> None:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine as tx:
            tx.execute("SELECT 1").close()
            holding.set()
            assert release.wait(WAIT)

    with Sandbox(engine) as sandbox:
        sandbox.share(timeout=0.2)
        holder = Runner(hold, "holder")
        assert holding.wait(WAIT)
        with pytest.raises(ConnectionBusyError) as info:
            sandbox.session().execute("SELECT 1")
        release.set()
        holder.result()
    message = str(info.value)
    # The test's own thread: MainThread, except on the workers of pytest-xdist < 3.6, which run tests in another.
    me = threading.current_thread().name
    assert message.startswith(f"thread {me!r} waited 0.2s at ")
    assert re.search(
        r"for thread 'holder''s transaction #\d+ \(root, as a savepoint\) to end: it began at "
        r".*test_threads\.py:\d+ in hold, and is now at .*test_threads\.py:\d+ in hold,",
        message,
    )


def test_strict_mode_refuses_an_unknown_thread(engine: Engine) -> None:
    with Sandbox(engine, threads="strict") as sandbox:
        with pytest.raises(SandboxThreadError) as info:
            in_thread(lambda: insert(engine, 1, "escape"), name="intruder")
        assert str(info.value) == (
            f"thread 'intruder' used {engine!r}, which the sandbox of thread {threading.current_thread().name!r} "
            "pins to its connection; "
            "the sandbox is strict about threads (txscope_threads = strict), so it is refused; run the work in "
            "the test's thread, or let threads share the sandbox: mark the test "
            '@pytest.mark.txscope(threads="shared"), call db_sandbox.share() or db_sandbox.allow_thread(thread), '
            "or set txscope_threads = shared (the default)"
        )
        raw = sandbox.connection()
        raw.cursor().execute("SELECT 1")
        with pytest.raises(SandboxThreadError):  # a pool may hand the raw connection to another thread
            in_thread(lambda: raw.cursor().execute("SELECT 1"), name="pool-thread")


def test_strict_mode_lets_in_the_threads_it_is_told(engine: Engine) -> None:
    with Sandbox(engine, threads="strict") as sandbox:
        allowed = threading.Thread(target=insert, args=(engine, 1, "allowed"), name="allowed")
        sandbox.allow_thread(allowed)
        allowed.start()
        allowed.join(WAIT)
        assert count(sandbox.session()) == 1
        with pytest.raises(SandboxThreadError, match="thread 'other' used"):
            in_thread(lambda: insert(engine, 2, "other"), name="other")
        sandbox.share()
        in_thread(lambda: insert(engine, 3, "any"), name="any")
        assert count(sandbox.session()) == 2


def test_a_bad_threads_mode_is_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match=r"threads='loose' is not valid; use one of: shared, strict"):
        Sandbox(engine, threads="loose")


def test_the_sandbox_ends_without_waiting_for_a_threads_open_transaction(engine: Engine, peer: Peer) -> None:
    opened, stopped = threading.Event(), threading.Event()

    def late() -> None:
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'late')")
            opened.set()
            assert stopped.wait(WAIT)
            tx.execute("INSERT INTO items (id, name) VALUES (2, 'too late')")

    with Sandbox(engine):
        runner = Runner(late, "late")
        assert opened.wait(WAIT)
    stopped.set()
    with pytest.raises(TransactionStateError):
        runner.result()
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_a_live_server_handles_two_requests_at_once(engine: Engine, peer: Peer) -> None:
    both_wrote = threading.Barrier(2, timeout=WAIT)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            name = self.path.strip("/")
            if name == "b":
                assert first_wrote.wait(WAIT)  # 'b' opens its transaction above 'a''s
            with engine as tx:
                tx.execute(
                    "INSERT INTO items (id, name) VALUES (:id, :name)", {"id": ord(name), "name": name}
                )
                if name == "a":
                    first_wrote.set()
                    both_wrote.wait()  # 'a' commits under 'b''s open transaction: it waits for it
                else:
                    both_wrote.wait()
                seen = count(tx)
            body = str(seen).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    first_wrote = threading.Event()
    with Sandbox(engine) as sandbox:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serving = threading.Thread(target=server.serve_forever, name="live-server")
        serving.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"

            def post(name: str) -> bytes:
                request = urllib.request.Request(url + name, method="POST")  # noqa: S310 - the live server's URL
                with urllib.request.urlopen(request, timeout=WAIT) as response:  # noqa: S310 - the same
                    return bytes(response.read())

            a, b = Runner(lambda: post("a"), "client-a"), Runner(lambda: post("b"), "client-b")
            assert (a.result(), b.result()) == (b"2", b"2")
        finally:
            server.shutdown()
            server.server_close()
            serving.join(WAIT)
        assert count(sandbox.session()) == 2
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_asyncio_to_thread(engine: Engine) -> None:
    async def main() -> None:
        await asyncio.gather(*(asyncio.to_thread(insert, engine, i, f"a{i}") for i in range(1, 4)))

    with Sandbox(engine) as sandbox:
        asyncio.run(main())
        assert count(sandbox.session()) == 3


@pytest.mark.backends("sqlite-memory")
def test_in_memory_sqlite_is_shared_across_threads(engine: Engine, backend: Backend) -> None:
    with Sandbox(engine) as sandbox:
        in_thread(lambda: insert(engine, 1, "from a thread"))
        assert sandbox.session().fetchall("SELECT name FROM items") == [("from a thread",)]
    with engine.session() as session:
        assert count(session) == 0


@pytest.mark.backends("sqlite-file")
def test_thread_modes_through_the_plugin(pytester: pytest.Pytester, backend: Backend) -> None:
    pytester.makefile(".sql", schema="CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20));")
    pytester.makefile(".ini", pytest="[pytest]\ntxscope_schema = schema.sql\ntxscope_thread_timeout = 5\n")
    pytester.makepyfile(
        test_threads="""
import threading
import pytest

def work(engine):
    with engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'thread')")

def run(engine):
    errors = []
    def target():
        try:
            work(engine)
        except Exception as exc:
            errors.append(type(exc).__name__)
    t = threading.Thread(target=target); t.start(); t.join(10)
    return errors

def test_shared_by_default(db_engine, db_session):
    assert run(db_engine) == []
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1

@pytest.mark.txscope(threads="strict")
def test_strict(db_engine, db_session):
    assert run(db_engine) == ["SandboxThreadError"]

@pytest.mark.txscope(threads="strict")
def test_allowed_from_the_fixture(db_engine, db_sandbox, db_session):
    t = threading.Thread(target=work, args=(db_engine,))
    db_sandbox.allow_thread(t)
    t.start(); t.join(10)
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 1

@pytest.mark.txscope(shared=True)
def test_shared_marker_still_works(db_engine, db_session):
    assert run(db_engine) == []

def test_zz_nothing_left(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM items") == 0
"""
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=5)
    strict = pytester.runpytest("-p", "no:randomly", "--txscope-threads=strict", "-k", "by_default")
    strict.assert_outcomes(failed=1)
    strict.stdout.re_match_lines([r".*AssertionError: assert \['SandboxThreadError'\] == \[\]$"])
    bad = pytester.runpytest("-o", "txscope_threads=loose")
    bad.stderr.fnmatch_lines(["ERROR: txscope_threads = 'loose' is not valid; use one of: shared, strict"])
