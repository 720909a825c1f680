"""Threads in a sandbox, on every backend: 2-3 threads run random transactions (``with app:``, ``app.begin()``,
the app's bare session, a raw ``sandbox.connection()`` with ``conn.transaction()`` savepoints), taking turns per
transaction (the sandbox shares its connection statement by statement, so the order of whole transactions is the
test's to fix: tests/contract/test_threads.py forces the interleavings inside transactions). Each records its
turn; replaying the committed work in that order must give what the test's session sees, and after the sandbox
stops nothing is left. A second test replays in the wrong order, to show that the check can fail.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_txscope import Sandbox

from .machines import (
    LIB_SQL,
    SELECT,
    TABLE,
    VALS,
    Db,
    Write,
    _BoomError,
    _check,
    backends,
    in_fresh_context,
    open_db,
    quick,
)


@pytest.fixture
def db(backend_name: str, tmp_path: Path) -> Iterator[Db]:
    yield from open_db(backend_name, tmp_path)


THREAD_IDS = tuple(range(4))  # few ids: transactions of different threads write the same rows
SIMPLE_OP = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(THREAD_IDS), VALS),
    st.tuples(st.just("del"), st.sampled_from(THREAD_IDS), st.just(0)),
)
OP = st.one_of(
    SIMPLE_OP,
    st.tuples(st.just("nested"), st.lists(SIMPLE_OP, max_size=3), st.sampled_from(("commit", "rollback"))),
)
# A transaction: its operations, how it ends, and how it is opened: `with app:`, app.begin(), the app's bare
# session (app.session(), its implicit transaction) or a raw DB-API connection (sandbox.connection()).
# Commits weigh double: the order of committed work is what the test is about.
TXN = st.tuples(
    st.lists(OP, min_size=1, max_size=4),
    st.sampled_from(("commit", "commit", "rollback", "raise")),
    st.sampled_from(("with", "begin", "session", "raw")),
)
PLANS = st.lists(st.lists(TXN, min_size=1, max_size=4), min_size=2, max_size=3)
JOIN_TIMEOUT = 30.0


def apply_ops(view: dict[int, int], ops: list[Any]) -> None:
    for op in ops:
        if op[0] == "set":
            view[op[1]] = op[2]
        elif op[0] == "del":
            view.pop(op[1], None)
        else:
            inner = dict(view)
            apply_ops(inner, op[1])
            if op[2] == "commit":
                view.clear()
                view.update(inner)


def replay(plans: list[list[Any]], order: list[tuple[int, int]]) -> dict[int, int]:
    """The committed work of ``plans``, applied in the order the sandbox ran the transactions."""
    view: dict[int, int] = {}
    for thread, seq in order:
        ops, end, _ = plans[thread][seq]
        if end == "commit":
            apply_ops(view, ops)
    return view


def replay_backwards(plans: list[list[Any]], order: list[tuple[int, int]]) -> dict[int, int]:
    """A deliberately wrong model: the transactions in the reverse of the order they ran in."""
    return replay(plans, order[::-1])


class ThreadRun:
    """One example: threads running their plans on the pinned app engine, recording the order."""

    def __init__(self, db: Db, sandbox: Sandbox, plans: list[list[Any]]) -> None:
        self.app = db.app
        self.sandbox = sandbox
        self.marker = db.raw_marker
        self.plans = plans
        self.order: list[tuple[int, int]] = []
        self.errors: list[BaseException] = []
        self._holders: list[int] = []
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(len(plans))
        self.turn = threading.Lock()
        """Held by a thread for its whole transaction."""

    def enter(self, thread: int, seq: int) -> None:
        """Called once the transaction is open, in the thread's turn."""
        with self._lock:
            self._holders.append(thread)
            holders = list(self._holders)
        self.order.append((thread, seq))
        _check("threads inside a transaction at once", holders, [thread])

    def leave(self, thread: int) -> None:
        with self._lock:
            self._holders.remove(thread)

    # ----------------------------------------------------------------------- one statement, per API
    def count(self, executor: Any, how: str, key: int) -> int:
        if how == "raw":
            with executor.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE id = {self.marker}", (key,))
                return int(cursor.fetchone()[0])
        return int(executor.fetchscalar(f"SELECT count(*) FROM {TABLE} WHERE id = :id", {"id": key}))

    def write(self, executor: Any, how: str, op: str, key: int, val: int) -> None:
        if how != "raw":
            executor.execute(LIB_SQL[op], Write(op, key, val).params()).close()
            return
        m = self.marker
        sql, params = {
            "insert": (f"INSERT INTO {TABLE} (id, val) VALUES ({m}, {m})", (key, val)),
            "update": (f"UPDATE {TABLE} SET val = {m} WHERE id = {m}", (val, key)),
            "delete": (f"DELETE FROM {TABLE} WHERE id = {m}", (key,)),
        }[op]
        with executor.cursor() as cursor:
            cursor.execute(sql, params)

    def run_ops(self, executor: Any, ops: list[Any], how: str) -> None:
        for op in ops:
            if op[0] == "set":
                there = self.count(executor, how, op[1])
                self.write(executor, how, "update" if there else "insert", op[1], op[2])
            elif op[0] == "del":
                self.write(executor, how, "delete", op[1], 0)
            elif how == "with":  # a nested block: the thread's current session is its transaction's
                with contextlib.suppress(_BoomError), self.app as nested:
                    _check("a nested block is in the thread's session", nested.parent is executor, True)
                    self.run_ops(nested, op[1], how)
                    if op[2] == "rollback":
                        raise _BoomError
            elif how == "raw":  # psycopg's `with conn.transaction():`, mapped onto a savepoint
                with executor.transaction(force_rollback=op[2] == "rollback"):
                    self.run_ops(executor, op[1], how)
            else:  # explicit begin_nested(), on the transaction or on the session's innermost
                parent = executor if how == "begin" else executor.transaction
                nested = parent.begin_nested()
                self.run_ops(nested, op[1], "begin")
                getattr(nested, op[2])()

    # ------------------------------------------------------------------------ one transaction, per API
    def work(self, thread: int) -> None:
        try:
            self._barrier.wait(JOIN_TIMEOUT)
            for seq, (ops, end, how) in enumerate(self.plans[thread]):
                with self.turn:
                    getattr(self, f"txn_{how}")(thread, seq, ops, end)
                if thread == 0:
                    time.sleep(0)  # let the others in
        except BaseException as exc:
            self.errors.append(exc)

    def txn_with(self, thread: int, seq: int, ops: list[Any], end: str) -> None:
        with contextlib.suppress(_BoomError), self.app as tx:
            self.enter(thread, seq)
            try:
                self.run_ops(tx, ops, "with")
            finally:
                self.leave(thread)
            if end == "rollback":
                tx.rollback()
            elif end == "raise":
                raise _BoomError

    def txn_begin(self, thread: int, seq: int, ops: list[Any], end: str) -> None:
        tx = self.app.begin()
        self.enter(thread, seq)
        try:
            self.run_ops(tx, ops, "begin")
        finally:
            self.leave(thread)
        if end == "commit":
            tx.commit()
        else:
            tx.rollback()

    def txn_session(self, thread: int, seq: int, ops: list[Any], end: str) -> None:
        """The app's bare session: its first statement opens its implicit transaction."""
        with self.app.session() as session:
            session.execute(f"SELECT count(*) FROM {TABLE}").close()  # now its transaction is open
            self.enter(thread, seq)
            try:
                self.run_ops(session, ops, "session")
            finally:
                self.leave(thread)
            tx = session.transaction
            assert tx is not None
            if end == "commit":
                tx.commit()
            elif end == "rollback":
                tx.rollback()
            # "raise": left open; closing the session rolls it back

    def txn_raw(self, thread: int, seq: int, ops: list[Any], end: str) -> None:
        """A raw DB-API connection asked for in the thread: its first statement opens its transaction."""
        conn = self.sandbox.connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM {TABLE}")  # now its transaction is open
            self.enter(thread, seq)
            try:
                self.run_ops(conn, ops, "raw")
            finally:
                self.leave(thread)
            if end == "commit":
                conn.commit()
            elif end == "rollback":
                conn.rollback()
            # "raise": close() below discards it
        finally:
            conn.close()

    def run(self) -> None:
        threads = [
            threading.Thread(target=self.work, args=(i,), name=f"worker-{i}") for i in range(len(self.plans))
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in threads if t.is_alive()]
        assert not hung, (
            f"threads still running after {JOIN_TIMEOUT:g}s: {hung} (a hang in the sandbox's lease?)"
        )
        if self.errors:
            raise self.errors[0]


def run_threads(
    db: Db, model: Callable[[list[list[Any]], list[tuple[int, int]]], dict[int, int]], config: settings
) -> None:
    @settings(config)
    @given(plans=PLANS)
    def check(plans: list[list[Any]]) -> None:
        with db.engine.begin() as tx:
            tx.execute(f"DELETE FROM {TABLE}").close()
        with Sandbox(db.engine, engines=[db.app]) as sandbox:
            run = ThreadRun(db, sandbox, plans)
            run.run()
            everything = sorted((i, s) for i, plan in enumerate(plans) for s in range(len(plan)))
            _check("transactions recorded", sorted(run.order), everything)
            for i in range(len(plans)):
                seqs = [s for t, s in run.order if t == i]
                _check(f"order of thread {i}'s transactions", seqs, sorted(seqs))
            _check(
                "the sandbox's view after the threads",
                dict(sandbox.session().fetchall(SELECT)),
                model(plans, run.order),
            )
            if db.peer is not None:
                _check("what the peer sees while the sandbox runs", db.peer.fetchall(SELECT), [])
        _check("what is committed after the sandbox stopped", db.committed_rows(), {})

    in_fresh_context(check)


@backends
def test_shared_sandbox_serialises_thread_transactions(db: Db) -> None:
    run_threads(db, replay, settings.default)


@backends
def test_threads_wrong_model_is_caught(db: Db) -> None:
    with pytest.raises(AssertionError, match="the model expects"):
        run_threads(db, replay_backwards, quick())
