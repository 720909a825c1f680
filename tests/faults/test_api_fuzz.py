"""Fuzzing the core API with misuse: every outcome is correct behaviour or a documented TxScopeError.

A hypothesis state machine drives two engines on one database (the second, "the application's", nests its
blocks virtually; sandboxes pin both) through random sequences of calls, right and wrong: transactions
begun, committed and rolled back twice or out of turn; ``with`` blocks (engine, session, transaction,
``transaction()``, ``ensure_transaction()``, ``engine.session()``) entered and exited in any order, twice, or
without being entered, with and without an exception; sessions used after ``close()`` or ``engine.dispose()``;
sandboxes started, nested, stopped out of order and restarted, shared or not; transactions, sessions and blocks
used from another thread. After every step it checks that

- the step either worked or raised a `TxScopeError` (every class of pytest_txscope.errors) whose message
  names a fix, and never a driver error, an AttributeError, TypeError or AssertionError from inside the library;
- no step hangs: threads are joined with a timeout, waits for connections and locks are short (a wait
  that times out raises; in this test, a hang is a failure);
- the transactions' states only ever move from active to an end, and the database agrees with them: what an
  independent connection (the peer) sees is exactly the rows of the transactions the library says committed.

The one driver error let through is SQLite's ``database is locked``: two of this test's own connections
writing at once, which SQLite refuses after its busy timeout; the library passes server errors on unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pytest_txscope import (
    Engine,
    Sandbox,
    SandboxConnection,
    Session,
    Transaction,
    TransactionKind,
    TransactionState,
    TxScopeError,
    ensure_transaction,
    transaction,
)
from pytest_txscope import sandbox as sandbox_module

from ..backends import ALL, Peer, make_backend

TABLE = f"fuzz_items_{os.getpid()}"  # one per process: concurrent runs of the suite never share it
ACTIVE = TransactionState.ACTIVE
JOIN_TIMEOUT = 15.0  # seconds a step in another thread may take before it counts as a hang
SHORT_WAIT = 0.2  # seconds any wait for a connection, a lease or a lock may take in this test


class _InjectedError(Exception):
    """The exception a block is exited with, to make it roll back; seeing it again is correct."""


@dataclass
class Block:
    """A context manager the machine entered (or will exit without entering)."""

    kind: str
    manager: Any
    value: Any = None
    entered: bool = True


def _step_error(what: str, exc: BaseException) -> AssertionError:
    return AssertionError(f"{what} raised {type(exc).__module__}.{type(exc).__qualname__}: {exc}")


class MisuseMachine(RuleBasedStateMachine):
    def __init__(self, db: FuzzDatabase) -> None:
        super().__init__()
        # An engine per example: what one example breaks (a lost connection, a stuck pin) stays in it.
        self.engine = engine = Engine.from_url(db.url, **db.options)
        # The application's engine: the same database, nested blocks virtual; the sandboxes pin it too. (On
        # :memory: another engine would be another database.)
        self.engines = [engine]
        if db.peer is not None:
            self.engines.append(Engine.from_url(db.url, nested="virtual", **db.options))
        self.peer = db.peer
        self.ctx = contextvars.Context()  # the example's current-session scopes live here, and die with it
        self.txs: list[Transaction] = []
        self.seen: dict[Transaction, TransactionState] = {}
        self.held: dict[
            Transaction, set[int]
        ] = {}  # rows written in each open transaction of an owned session
        self.committed: set[int] = set()
        self.sessions: list[Session] = []
        self.blocks: list[Block] = []
        self.exited: list[Block] = []
        self.sandboxes: list[Sandbox] = []
        self.connections: list[SandboxConnection] = []
        self.next_id = 0
        engine.executescript(f"{db.ddl}; DELETE FROM {TABLE}")

    # ------------------------------------------------------------------------------------- running a step
    def attempt(self, what: str, call: Callable[[], Any], *, injected: BaseException | None = None) -> Any:
        """Run ``call`` in the example's context; return its result, or the documented error it raised."""
        try:
            result = self.ctx.run(call)
        except TxScopeError as exc:
            message = str(exc)
            assert "; " in message, f"{what}: the message names no fix: {message!r}"
            result = exc
        except _InjectedError as exc:
            if exc is not injected:
                raise _step_error(what, exc) from exc
            result = exc
        except sqlite3.OperationalError as exc:
            if "database is locked" not in str(exc):
                raise _step_error(what, exc) from exc
            result = exc
        except BaseException as exc:
            raise _step_error(what, exc) from exc
        self.settle()
        return result

    def in_thread(self, call: Callable[[], Any], allow: Sandbox | None = None) -> Callable[[], Any]:
        """``call`` made to run in a new thread (with an empty context, as every new thread has)."""

        def run_there() -> Any:
            box: dict[str, Any] = {}

            def body() -> None:
                try:
                    box["result"] = call()
                except BaseException as exc:
                    box["error"] = exc

            worker = threading.Thread(target=body, name="fuzz-worker", daemon=True)
            if allow is not None:
                allow.allow_thread(worker, timeout=SHORT_WAIT)
            worker.start()
            worker.join(JOIN_TIMEOUT)
            if worker.is_alive():
                raise AssertionError(f"the step hung: its thread did not return within {JOIN_TIMEOUT:g}s")
            if "error" in box:
                raise box["error"]
            return box.get("result")

        return run_there

    def track(self, value: Any) -> Any:
        """Remember the transactions and sessions a step returned."""
        if isinstance(value, Transaction) and value not in self.seen:
            self.txs.append(value)
            self.seen[value] = value.state
            self.track(value.session)
        elif isinstance(value, Session) and value not in self.sessions:
            self.sessions.append(value)
        elif isinstance(value, SandboxConnection):
            self.connections.append(value)
        return value

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def wrote(self, tx: Transaction | None, row: int) -> None:
        if tx is not None and not tx.session.is_guest:  # a sandbox rolls back all its guests' work
            self.track(tx)
            self.held.setdefault(tx, set()).add(row)

    def settle(self) -> None:
        """Follow the transactions whose state changed: their rows go up, to the database, or away."""
        changed = [tx for tx in self.txs if tx.state is not self.seen[tx]]
        for tx in sorted(changed, key=lambda t: -t.depth):  # inner ones first: their rows go to the outer
            before, after = self.seen[tx], tx.state
            assert before is ACTIVE, f"{tx!r} went from {before.value} to {after.value}"
            self.seen[tx] = after
            rows = self.held.pop(tx, set())
            if tx.session.is_guest:
                continue
            keep = after is TransactionState.COMMITTED or tx.kind is TransactionKind.VIRTUAL
            if keep and tx.parent is not None:
                self.held.setdefault(tx.parent, set()).update(rows)
            elif keep and tx.kind is TransactionKind.ROOT:
                self.committed |= rows

    # ---------------------------------------------------------------------------------------- pickers
    def pick(self, data: st.DataObject, pool: list[Any], label: str) -> Any:
        return data.draw(st.sampled_from(pool), label=label)

    def insert(self, target: Transaction | Session) -> None:
        row = self.new_id()
        target.execute(f"INSERT INTO {TABLE} (id) VALUES ({row})").close()
        self.wrote(target if isinstance(target, Transaction) else target.transaction, row)

    # ------------------------------------------------------------------------------------------ rules
    @rule(data=st.data())
    def begin(self, data: st.DataObject) -> None:
        how = data.draw(st.sampled_from(["engine", "session", "nested"]), label="begin with")
        if how == "engine":
            engine = self.pick(data, self.engines, "engine")
            self.track(self.attempt("engine.begin()", engine.begin))
        elif how == "session" and self.sessions:
            session = self.pick(data, self.sessions, "session")
            self.track(self.attempt("session.begin()", session.begin))
        elif self.txs:
            tx = self.pick(data, self.txs, "transaction")
            self.track(self.attempt("tx.begin_nested()", tx.begin_nested))

    @rule(data=st.data())
    def enter(self, data: st.DataObject) -> None:
        kinds = ["engine", "transaction(engine)", "transaction()", "ensure_transaction(engine)"]
        kinds += ["ensure_transaction()", "engine.session()"]
        kinds += ["session"] * bool(self.sessions) + ["tx"] * bool(self.txs)
        kind = data.draw(st.sampled_from(kinds), label="enter")
        engine = self.pick(data, self.engines, "engine")
        manager: Any = {
            "engine": lambda: engine,
            "transaction(engine)": lambda: transaction(engine),
            "transaction()": transaction,
            "ensure_transaction(engine)": lambda: ensure_transaction(engine),
            "ensure_transaction()": ensure_transaction,
            "engine.session()": engine.session,
            "session": lambda: self.pick(data, self.sessions, "session"),
            "tx": lambda: self.pick(data, self.txs, "transaction"),
        }[kind]()
        # (engine.session() is a contextlib generator: exiting it unentered is contextlib's business.)
        if kind != "engine.session()" and data.draw(st.integers(0, 9), label="exit without entering") == 0:
            self.exited.append(Block(kind, manager, entered=False))  # exited below, never entered
            return
        result = self.attempt(f"entering {kind}", manager.__enter__)
        if not isinstance(result, BaseException):
            self.blocks.append(Block(kind, manager, self.track(result)))

    @precondition(lambda self: self.blocks or self.exited)
    @rule(data=st.data())
    def exit(self, data: st.DataObject) -> None:
        again = not self.blocks or data.draw(st.integers(0, 4), label="exit an exited block") == 0
        pool = self.exited if again else self.blocks
        if not pool:
            return
        block = self.pick(data, pool, "block")  # any of them: out of order, or twice
        if again and block.kind == "engine.session()" and block.entered:
            return  # a contextlib generator's own protocol, not ours
        injected = (
            _InjectedError("the block's body failed") if data.draw(st.booleans(), label="fail") else None
        )
        args = (type(injected), injected, None) if injected else (None, None, None)
        self.attempt(f"exiting {block.kind}", lambda: block.manager.__exit__(*args), injected=injected)
        if not again:
            self.blocks.remove(block)
            self.exited.append(block)

    @precondition(lambda self: self.txs)
    @rule(data=st.data(), how=st.sampled_from(["commit", "rollback"]))
    def end(self, data: st.DataObject, how: str) -> None:
        tx = self.pick(data, self.txs, "transaction")  # ended ones too: double commit, commit after rollback
        self.attempt(f"tx.{how}()", getattr(tx, how))

    @precondition(lambda self: self.txs or self.sessions)
    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        target = self.pick(data, self.txs + self.sessions, "write through")
        self.attempt(f"{type(target).__name__}.execute(INSERT)", lambda: self.insert(target))

    @precondition(lambda self: self.txs or self.sessions)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        target = self.pick(data, self.txs + self.sessions, "read through")
        self.attempt("fetchscalar()", lambda: target.fetchscalar(f"SELECT count(*) FROM {TABLE}"))

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        session = self.pick(data, self.sessions, "session")
        self.attempt("session.close()", session.close)

    # On sqlite:///:memory: the database lives in the engine's one connection: dispose() would drop it.
    @precondition(lambda self: self.peer is not None)
    @rule(data=st.data())
    def dispose(self, data: st.DataObject) -> None:
        self.attempt("engine.dispose()", self.pick(data, self.engines, "engine").dispose)

    @rule(data=st.data())
    def sandbox(self, data: st.DataObject) -> None:
        ops = ["new"] + ["start", "stop", "share", "session", "connection"] * bool(self.sandboxes)
        op = data.draw(st.sampled_from(ops), label="sandbox op")
        if op == "new":
            box = Sandbox(self.engine, engines=self.engines)
            box.thread_timeout = SHORT_WAIT
            self.sandboxes.append(box)
            self.attempt("Sandbox.start()", box.start)
            return
        box = self.pick(data, self.sandboxes, "sandbox")  # stopped or not, outer or inner
        if op == "share":
            self.attempt("sandbox.share()", lambda: box.share(timeout=SHORT_WAIT))
        else:
            call = {
                "start": box.start,
                "stop": box.stop,
                "session": box.session,
                "connection": box.connection,
            }
            self.track(self.attempt(f"sandbox.{op}()", call[op]))

    @precondition(lambda self: self.connections)
    @rule(data=st.data(), op=st.sampled_from(["write", "commit", "rollback", "close"]))
    def raw(self, data: st.DataObject, op: str) -> None:
        conn = self.pick(data, self.connections, "connection")
        if op == "write":
            row = self.new_id()  # in a sandbox: rolled back with it
            sql = f"INSERT INTO {TABLE} (id) VALUES ({row})"
            self.attempt("SandboxConnection.cursor().execute()", lambda: conn.cursor().execute(sql))
        else:
            self.attempt(f"SandboxConnection.{op}()", getattr(conn, op))
        self.track(conn.session.transaction)

    @rule(data=st.data())
    def elsewhere(self, data: st.DataObject) -> None:
        """A step in another thread: with its own (empty) context, maybe let into a sandbox."""
        ops = ["engine block"] + ["write", "commit"] * bool(self.txs) + ["exit"] * bool(self.blocks)
        op = data.draw(st.sampled_from(ops), label="in another thread")
        allow = None
        if self.sandboxes and data.draw(st.booleans(), label="allow the thread"):
            allow = self.pick(data, self.sandboxes, "sandbox")
        if op == "engine block":
            call: Callable[[], Any] = self.thread_block
        elif op == "write":
            tx = self.pick(data, self.txs, "transaction")
            call = lambda: self.insert(tx)  # noqa: E731  # the step's body, named by the rule
        elif op == "commit":
            call = self.pick(data, self.txs, "transaction").commit
        else:
            block = self.pick(data, self.blocks, "block")
            if block.kind == "engine.session()":
                return  # a contextlib generator exited in another thread: not our protocol
            call = lambda: block.manager.__exit__(None, None, None)  # noqa: E731
        self.attempt(f"{op} in another thread", self.in_thread(call, allow))

    def thread_block(self) -> Transaction:
        with self.engine as tx:
            self.insert(tx)
        return tx

    # ------------------------------------------------------------------------------------- invariants
    @invariant()
    def database_agrees(self) -> None:
        if self.peer is not None:
            seen = {row for (row,) in self.peer.fetchall(f"SELECT id FROM {TABLE}")}
            assert seen == self.committed, (
                f"the peer sees rows {sorted(seen)}, the library's reports say {sorted(self.committed)}"
            )

    @invariant()
    def pins_follow_sandboxes(self) -> None:
        active = [box for box in self.sandboxes if box.active]
        pinned = [engine.pinned for engine in self.engines]
        assert pinned == [bool(active)] * len(self.engines), (
            f"engines pinned: {pinned}, active sandboxes {active}"
        )

    # ------------------------------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        failures: list[AssertionError] = []

        def step(what: str, call: Callable[[], Any]) -> None:
            try:
                self.attempt(what, call)
            except AssertionError as exc:  # the cleanup goes on, the first failure is raised at the end
                failures.append(exc)

        for block in reversed(self.blocks):
            step(f"exiting {block.kind} at teardown", lambda b=block: b.manager.__exit__(None, None, None))
        for box in reversed(self.sandboxes):
            step("sandbox.stop() at teardown", box.stop)
        for session in self.sessions:
            step("session.close() at teardown", session.close)
        pinned, listed = any(e.pinned for e in self.engines), Sandbox.current()
        out = sum(e._open - len(e._idle) for e in self.engines)  # checked out: sessions the library lost
        # Whatever this example found, the next one must start clean, or hypothesis could not replay it: the
        # pins go, and every connection this example had is closed, with whatever locks it held.
        for engine in self.engines:
            engine._pin = None
        sandbox_module._active.clear()
        hosts = [box._host for box in self.sandboxes if box._host is not None]
        for session in self.sessions + hosts:
            if not session.closed:
                with contextlib.suppress(Exception):
                    session.connection.close()
        if failures:
            raise failures[0]
        self.database_agrees()
        assert not pinned, "a sandbox still pins the engine after every sandbox stopped"
        assert listed is None, f"{listed!r} is still listed as active after it stopped"
        assert out == 0, f"{out} connection(s) still checked out after every session closed"
        with self.engine.begin() as tx:  # every connection went back: this works, even on :memory:
            count = tx.fetchscalar(f"SELECT count(*) FROM {TABLE}")
        assert count == len(self.committed), (count, sorted(self.committed))
        for engine in self.engines:
            engine.dispose()


@dataclass
class FuzzDatabase:
    """Where each example's engine connects, and the peer that checks what is committed there."""

    url: str
    options: dict[str, Any]
    ddl: str
    peer: Peer | None


@pytest.fixture
def fuzz_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FuzzDatabase]:
    backend = next(make_backend(request.param, tmp_path))  # skips (or fails, when required) if unreachable
    options: dict[str, Any] = {"acquire_timeout": SHORT_WAIT}
    url = backend.url
    if not backend.has_peer:  # :memory: has one connection, which the machine often asks for twice
        options["acquire_timeout"] = 0.01
    elif backend.family == "sqlite":
        url += "?timeout=0.1&journal_mode=wal"
    else:
        options["max_connections"] = 6  # the machine opens sessions freely; the server is shared
    # Waits for locks end in an error rather than a hang (the step then fails, naming the driver's error).
    if backend.family == "postgresql":
        options["options"] = "-c lock_timeout=3000 -c statement_timeout=10000"
    elif backend.family == "mysql":
        options["init_command"] = "SET SESSION innodb_lock_wait_timeout = 3, lock_wait_timeout = 10"
    ddl = f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY)"
    setup = Engine.from_url(url)
    setup.executescript(f"DROP TABLE IF EXISTS {TABLE}")
    setup.dispose()
    peer = backend.peer() if backend.has_peer else None
    try:
        yield FuzzDatabase(url, options, ddl, peer)
    finally:
        if peer is not None:
            peer.close()
        setup.executescript(f"DROP TABLE IF EXISTS {TABLE}")
        setup.dispose()


@pytest.mark.parametrize("fuzz_db", ALL, indirect=True)
def test_misuse_gives_correct_behaviour_or_a_documented_error(fuzz_db: FuzzDatabase) -> None:
    run_state_machine_as_test(
        lambda: MisuseMachine(fuzz_db), settings=settings(parent=settings.default, stateful_step_count=30)
    )
