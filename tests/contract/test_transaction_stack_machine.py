"""Stateful test: a session's transaction stack against a pure-Python model, on every backend.

The model is a stack of dicts ``id -> val``: the committed state, then one view per open transaction (root,
then savepoints). After every step the innermost transaction must see the model's top view, and an independent
connection (the peer; none for ``sqlite:///:memory:``) must see the committed state. Single steps are checked
one by one; the ``burst`` rule runs several operations with no check in between, so that BEGIN / SAVEPOINT /
RELEASE / ROLLBACK TO stay queued and get dropped, merged or batched as the session does without reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pytest_txscope import Engine, Session, Transaction, TransactionState, TransactionStateError

from ..aio_harness import close_engine
from ..backends import ALL, ALL_ASYNC, Peer, integrity_error, make_backend

# One table per process: two runs sharing a database (pytest-xdist workers, or two people running the suite)
# would otherwise deadlock across processes: one's DROP TABLE queues behind the other's open transaction, and
# that one's peer SELECT queues behind the DROP, where the server cannot see the cycle.
TABLE = f"sm_items_{os.getpid()}"
DDL = f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, val INTEGER NOT NULL)"
SELECT = f"SELECT id, val FROM {TABLE} ORDER BY id"
INSERT = f"INSERT INTO {TABLE} (id, val) VALUES (:id, :val)"
IDS = tuple(range(8))  # few ids: deleted ids get re-inserted, and the same row is written at several levels
VALS = st.integers(0, 99)
MAX_DEPTH = 4  # open transactions at most: the root and three savepoints
ROLLED_BACK = TransactionState.ROLLED_BACK
Draw = Callable[[st.SearchStrategy[Any]], Any]


class _BoomError(Exception):
    """Raised inside a block to make it roll back."""


def _check(what: str, got: object, want: object) -> None:
    # Every check goes through this one line, so that hypothesis reports one failure, not one per invariant.
    assert got == want, f"{what}: the library/database has {got!r}, the model expects {want!r}"


def _op_rule(op: str) -> Callable[..., None]:
    """A rule running operation ``op`` alone, when the model says it is valid."""

    def run(self: TxStackMachine, data: st.DataObject) -> None:
        self.step(op, data.draw)

    run.__name__ = run.__qualname__ = op  # before decorating: hypothesis prints steps by this name
    return precondition(lambda self: self.valid_ops()[op])(rule(data=st.data())(run))


class TxStackMachine(RuleBasedStateMachine):
    def __init__(self, engine: Engine, peer: Peer | None) -> None:
        super().__init__()
        self.engine, self.peer = engine, peer
        with engine.begin() as tx:  # no session is current: a session of its own, committed and closed
            tx.execute(f"DELETE FROM {TABLE}").close()
        self.exits = ExitStack()
        self.session = self.exits.enter_context(engine.session())  # current until teardown
        self.levels: list[dict[int, int]] = [{}]  # [committed, view of txs[0], view of txs[1], ...]
        self.txs: list[Transaction] = []
        self.block: Transaction | None = None  # the transaction of the last failed block

    # ------------------------------------------------------------------------------------------- model
    def model_begin(self) -> None:
        self.levels.append(dict(self.levels[-1]))

    def model_commit(self) -> None:
        top = self.levels.pop()
        self.levels[-1] = top

    def model_rollback(self, k: int) -> None:
        del self.levels[k + 1 :]

    # --------------------------------------------------------------------------- library + model steps
    def do_begin(self, how: str) -> None:
        if how == "engine":
            tx = self.engine.begin()  # the session is current, so the engine opens the transaction in it
        elif how == "session":
            tx = self.session.begin()
        else:
            tx = self.txs[-1].begin_nested()
        _check("new transaction", (tx.session, tx.is_active, tx in self.txs), (self.session, True, False))
        self.txs.append(tx)
        self.model_begin()

    def do_insert(self, key: int, val: int) -> None:
        self.txs[-1].execute(INSERT, {"id": key, "val": val}).close()
        self.levels[-1][key] = val

    def do_update(self, key: int, val: int) -> None:
        self.txs[-1].execute(f"UPDATE {TABLE} SET val = :val WHERE id = :id", {"id": key, "val": val}).close()
        self.levels[-1][key] = val

    def do_delete(self, key: int) -> None:
        cursor = self.txs[-1].execute(f"DELETE FROM {TABLE} WHERE id = ?", (key,))
        _check(f"rows deleted with id {key}", cursor.rowcount, 1)
        cursor.close()
        del self.levels[-1][key]

    def do_commit(self) -> None:
        tx = self.txs.pop()
        tx.commit()
        _check("committed transaction state", tx.state, TransactionState.COMMITTED)
        self.model_commit()

    def do_rollback(self, k: int) -> None:
        """Roll back ``txs[k]``, and with it every transaction opened inside it."""
        ended = self.txs[k:]
        del self.txs[k:]
        ended[0].rollback()
        _check("rolled-back transaction states", [t.state for t in ended], [ROLLED_BACK] * len(ended))
        self.model_rollback(k)

    def do_refused_commit(self, k: int) -> None:
        """Committing ``txs[k]`` while a transaction inside it is open is refused, and changes nothing."""
        with pytest.raises(TransactionStateError, match="still active"):
            self.txs[k].commit()

    def do_failed_block(self, how: str, key: int) -> None:
        """A nested block whose body writes, then fails: its work is undone, the outer one goes on."""
        outer, body = self.txs[-1], {"id": key, "val": 100}
        if how == "manual":  # the protocol a 'with' statement follows when its body raises
            blk = outer.begin_nested()
            blk.__enter__()
            blk.execute(INSERT, body).close()
            blk.__exit__(ValueError, ValueError(), None)
        else:  # "nested": with tx.begin_nested(); "session": with session (nested inside the innermost)
            rows, error = [body], _BoomError
            if how == "duplicate":  # a real error from the server: the primary key of a visible row
                rows.append({"id": min(self.levels[-1]), "val": 0})
                error = integrity_error(self.session.dialect)
            with pytest.raises(error):
                self._block_body(self.session if how == "session" else outer.begin_nested(), rows)
            blk = self.block
            assert blk is not None
        _check(
            "after the failed block",
            (blk.state, blk is outer, self.session.transaction is outer, outer.is_active),
            (ROLLED_BACK, False, True, True),
        )

    def _block_body(self, opener: Transaction | Session, rows: list[dict[str, int]]) -> None:
        with opener as blk:
            self.block = blk
            for row in rows:
                blk.execute(INSERT, row).close()
            raise _BoomError

    # ------------------------------------------------------------------------------- choosing steps
    def valid_ops(self) -> dict[str, bool]:
        """Which operations the model allows now."""
        depth, view = len(self.txs), self.levels[-1]
        free = len(view) < len(IDS)
        return {
            "begin": depth < MAX_DEPTH,
            "insert": depth > 0 and free,
            "update": depth > 0 and bool(view),
            "delete": depth > 0 and bool(view),
            "commit": depth > 0,
            "rollback": depth > 0,
            "rollback_outer": depth > 1,
            "refused_commit": depth > 1,
            "failed_block": depth > 0 and free,
        }

    def step(self, op: str, draw: Draw) -> None:
        view = self.levels[-1]
        free, used = [i for i in IDS if i not in view], sorted(view)
        if op == "begin":
            self.do_begin(draw(st.sampled_from(("engine", "session", "nested")[: 3 if self.txs else 2])))
        elif op == "insert":
            self.do_insert(draw(st.sampled_from(free)), draw(VALS))
        elif op == "update":
            self.do_update(draw(st.sampled_from(used)), draw(VALS))
        elif op == "delete":
            self.do_delete(draw(st.sampled_from(used)))
        elif op == "commit":
            self.do_commit()
        elif op == "rollback":
            self.do_rollback(len(self.txs) - 1)
        elif op == "rollback_outer":
            self.do_rollback(draw(st.integers(0, len(self.txs) - 2)))
        elif op == "refused_commit":
            self.do_refused_commit(draw(st.integers(0, len(self.txs) - 2)))
        else:
            hows = ("nested", "session", "manual") + (("duplicate",) if view else ())
            self.do_failed_block(draw(st.sampled_from(hows)), draw(st.sampled_from(free)))

    # ------------------------------------------------------------------------------------------ rules
    begin = _op_rule("begin")
    insert = _op_rule("insert")
    update = _op_rule("update")
    delete = _op_rule("delete")
    commit = _op_rule("commit")
    rollback = _op_rule("rollback")
    rollback_outer = _op_rule("rollback_outer")
    refused_commit = _op_rule("refused_commit")
    failed_block = _op_rule("failed_block")

    @rule(data=st.data())
    def burst(self, data: st.DataObject) -> None:
        """Several operations in a row, with no read in between to flush what the session keeps queued."""
        for _ in range(data.draw(st.integers(2, 6), label="burst length")):
            op = data.draw(st.sampled_from([op for op, ok in self.valid_ops().items() if ok]))
            self.step(op, data.draw)

    # ------------------------------------------------------------------------------------- invariants
    @invariant()
    def session_sees_innermost_view(self) -> None:
        _check(
            "open transactions",
            (self.session.transaction, [t.is_active for t in self.txs]),
            (self.txs[-1] if self.txs else None, [True] * len(self.txs)),
        )
        if self.txs:
            _check("innermost transaction's view", dict(self.txs[-1].fetchall(SELECT)), self.levels[-1])

    @invariant()
    def peer_sees_committed(self) -> None:
        if self.peer is not None:
            _check("committed state seen by the peer", dict(self.peer.fetchall(SELECT)), self.levels[0])

    def teardown(self) -> None:
        try:
            if self.txs:
                self.txs[0].rollback()
        finally:
            self.exits.close()  # closes the session: its connection goes back to the engine's pool


class ForgetfulMachine(TxStackMachine):
    """A deliberately wrong model: rolling back keeps the work, as if it were committed."""

    def model_rollback(self, k: int) -> None:
        while len(self.levels) > k + 1:
            self.model_commit()


@dataclass
class Db:
    engine: Engine  # or, for an asyncio driver, an AsyncEngine behind a sync proxy
    peer: Peer | None


@pytest.fixture
def db(backend_name: str, tmp_path: Path) -> Iterator[Db]:
    backend = next(make_backend(backend_name, tmp_path))  # skips (or fails, when required) if unreachable
    # A short acquire_timeout: a session the library fails to give back shows as an error, not a 30 s hang.
    engine = backend.engine(acquire_timeout=5)
    engine.executescript(f"DROP TABLE IF EXISTS {TABLE}; {DDL}")
    peer = backend.peer() if backend.has_peer else None
    try:
        yield Db(engine, peer)
    finally:
        if peer is not None:
            peer.close()
        engine.executescript(f"DROP TABLE IF EXISTS {TABLE}")
        close_engine(engine)


# The asyncio drivers drive the same machine through the asyncio API (an AsyncEngine behind the sync proxy of
# tests/aio_harness.py: each step awaited in the engine's task).
backends = pytest.mark.parametrize("backend_name", ALL + ALL_ASYNC)


@backends
def test_transaction_stack_matches_model(db: Db) -> None:
    run_state_machine_as_test(lambda: TxStackMachine(db.engine, db.peer), settings=settings.default)


@backends
def test_teardown_rolls_back_open_work(db: Db) -> None:
    with db.engine.begin() as tx:  # a row left by an earlier run: a new machine starts from an empty table
        tx.execute(INSERT, {"id": 7, "val": 7}).close()
    machine = TxStackMachine(db.engine, db.peer)
    machine.do_begin("engine")
    machine.do_insert(1, 10)
    machine.do_begin("nested")
    machine.do_insert(2, 20)
    machine.session_sees_innermost_view()
    machine.peer_sees_committed()
    machine.teardown()
    assert machine.session.closed
    if db.peer is not None:
        assert db.peer.fetchall(SELECT) == []
    with db.engine.begin() as tx:  # also proves the connection went back (:memory: engines have only one)
        assert tx.fetchall(SELECT) == []


@backends
def test_wrong_model_is_caught(db: Db) -> None:
    # Finding the failure is the point; shrinking it would only cost time (7-10 s per backend).
    quick = settings(parent=settings.default, phases=(Phase.explicit, Phase.reuse, Phase.generate))
    with pytest.raises(AssertionError, match="the model expects"):
        run_state_machine_as_test(lambda: ForgetfulMachine(db.engine, db.peer), settings=quick)
