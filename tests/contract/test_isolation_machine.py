"""Isolation outside any sandbox (PostgreSQL, MySQL/MariaDB): a state machine of two sessions of two engines.

They never see each other's uncommitted rows and see committed ones as the server's default isolation level says
(READ COMMITTED on PostgreSQL; REPEATABLE READ on MariaDB, whose snapshot is taken at the first read). A second
test runs the machine with a model that sees dirty reads, to show that its invariants can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

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

from pytest_txscope import Engine

from ..backends import Peer, make_backend
from .machines import DDL, SELECT, TABLE, VALS, Write, _check, in_fresh_context, lib_write, quick, servers

PARTS = (
    tuple(range(0, 10, 2)),
    tuple(range(1, 10, 2)),
)  # each session writes only its own ids: no lock waits
SESSION = st.sampled_from((0, 1))


@dataclass
class SessionModel:
    open: bool = False
    implicit: bool = False
    """The transaction statements outside blocks opened (a later begin() takes it over)."""
    snapshot: dict[int, int] | None = None
    """REPEATABLE READ: what was committed at the transaction's first read."""
    pending: dict[int, int | None] = field(default_factory=dict)
    """Uncommitted writes: id -> val, or None for a deleted row."""


@dataclass
class IsoDb:
    engines: tuple[Engine, Engine]
    peer: Peer
    repeatable_read: bool


@pytest.fixture
def iso(backend_name: str, tmp_path: Path) -> Iterator[IsoDb]:
    backend = next(make_backend(backend_name, tmp_path))
    # A lock wait would be a bug in the machine (the sessions write disjoint rows): fail fast instead of hanging.
    timeout = (
        {"options": "-c lock_timeout=5000"}
        if backend.family == "postgresql"
        else {"init_command": "SET SESSION innodb_lock_wait_timeout = 5"}
    )
    engines = (backend.engine(acquire_timeout=5, **timeout), backend.engine(acquire_timeout=5, **timeout))
    engines[0].executescript(f"DROP TABLE IF EXISTS {TABLE}; {DDL}")
    peer = backend.peer()
    try:
        yield IsoDb(engines, peer, _isolation_level(peer) == "REPEATABLE READ")
    finally:
        peer.close()
        engines[0].executescript(f"DROP TABLE IF EXISTS {TABLE}")
        for engine in engines:
            engine.dispose()


def _isolation_level(peer: Peer) -> str:
    """The server's default isolation level (PostgreSQL: READ COMMITTED; MariaDB/MySQL: REPEATABLE READ)."""
    if peer.family == "postgresql":
        level = peer.fetchall("SHOW transaction_isolation")[0][0]
    else:
        try:
            level = peer.fetchall("SELECT @@transaction_isolation")[0][0]  # MySQL 8, MariaDB 11.1+
        except Exception:  # older MariaDB: only the old name
            level = peer.fetchall("SELECT @@tx_isolation")[0][0]
    return str(level).upper().replace("-", " ")


class IsolationMachine(RuleBasedStateMachine):
    def __init__(self, iso: IsoDb) -> None:
        super().__init__()
        self.iso = iso
        with iso.engines[0].begin() as tx:
            tx.execute(f"DELETE FROM {TABLE}").close()
        self.exits = ExitStack()
        self.sessions = [self.exits.enter_context(engine.session()) for engine in iso.engines]
        self.models = [SessionModel(), SessionModel()]
        self.committed: dict[int, int] = {}

    # ------------------------------------------------------------------------------------- the model
    def view(self, s: int) -> dict[int, int]:
        m = self.models[s]
        base = m.snapshot if m.snapshot is not None else self.committed
        view = dict(base)
        for key, val in m.pending.items():
            if val is None:
                view.pop(key, None)
            else:
                view[key] = val
        return view

    def model_read(self, s: int) -> dict[int, int]:
        """A read on session ``s``: opens its implicit transaction if none is open; under REPEATABLE READ the
        transaction's first read takes its snapshot."""
        m = self.models[s]
        if not m.open:
            self.models[s] = m = SessionModel(open=True, implicit=True)
        if self.iso.repeatable_read and m.snapshot is None:
            m.snapshot = dict(self.committed)
        return self.view(s)

    def model_commit(self, s: int) -> None:
        for key, val in self.models[s].pending.items():
            if val is None:
                self.committed.pop(key, None)
            else:
                self.committed[key] = val
        self.models[s] = SessionModel()

    # ------------------------------------------------------------------------------------------ rules
    @rule(s=SESSION)
    def begin(self, s: int) -> None:
        m = self.models[s]
        if m.open and not m.implicit:
            return
        tx = self.sessions[s].begin()
        _check("begin() is the session's transaction", tx is self.sessions[s].transaction, True)
        if m.open:  # it takes over the implicit transaction: same work, same snapshot
            m.implicit = False
        else:
            self.models[s] = SessionModel(open=True)

    @rule(s=SESSION, data=st.data())
    def write(self, s: int, data: st.DataObject) -> None:
        own = {k: v for k, v in self.view(s).items() if k in PARTS[s]}
        free = [k for k in PARTS[s] if k not in own]
        op = data.draw(st.sampled_from((["insert"] if free else []) + (["update", "delete"] if own else [])))
        key = data.draw(st.sampled_from(free if op == "insert" else sorted(own)))
        w = Write(op, key, 0 if op == "delete" else data.draw(VALS))
        session = self.sessions[s]
        m = self.models[s]
        # Outside a transaction the statement opens the implicit one; inside, through the session or the tx.
        executor = session if not m.open or data.draw(st.booleans()) else session.transaction
        assert executor is not None
        lib_write(executor, w)
        if not m.open:
            self.models[s] = m = SessionModel(open=True, implicit=True)
        m.pending[key] = None if op == "delete" else w.val

    @precondition(lambda self: any(m.open for m in self.models))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        s = data.draw(st.sampled_from([i for i in (0, 1) if self.models[i].open]))
        tx = self.sessions[s].transaction
        assert tx is not None
        tx.commit()
        self.model_commit(s)

    @precondition(lambda self: any(m.open for m in self.models))
    @rule(data=st.data())
    def rollback(self, data: st.DataObject) -> None:
        s = data.draw(st.sampled_from([i for i in (0, 1) if self.models[i].open]))
        tx = self.sessions[s].transaction
        assert tx is not None
        tx.rollback()
        self.models[s] = SessionModel()

    @rule(s=SESSION)
    def look(self, s: int) -> None:
        """A read on the session (outside a transaction it opens the implicit one)."""
        rows = dict(self.sessions[s].fetchall(SELECT))
        _check(f"what session {s} sees", rows, self.model_read(s))

    @rule(s=SESSION)
    def look_in_block(self, s: int) -> None:
        """``with session as tx:`` read: nested in an open transaction, else it takes over the implicit one
        (committing it at the end), else a transaction of its own."""
        m = self.models[s]
        with self.sessions[s] as tx:
            rows = dict(tx.fetchall(SELECT))
        was_open, was_implicit = m.open, m.implicit
        if not was_open:
            self.models[s] = SessionModel(open=True)
        _check(f"what session {s} sees in a block", rows, self.model_read(s))
        if not was_open or was_implicit:
            self.model_commit(s)

    @rule(s=SESSION)
    def reopen(self, s: int) -> None:
        """Close the session (what is open is rolled back) and open a new one."""
        self.sessions[s].close()
        self.sessions[s] = self.exits.enter_context(self.iso.engines[s].session())
        self.models[s] = SessionModel()

    @invariant()
    def peer_sees_committed(self) -> None:
        _check("what is committed (seen by the peer)", dict(self.iso.peer.fetchall(SELECT)), self.committed)

    def teardown(self) -> None:
        self.exits.close()


class DirtyReadsMachine(IsolationMachine):
    """A deliberately wrong model: each session also sees the other's uncommitted writes."""

    def view(self, s: int) -> dict[int, int]:
        view = super().view(s)
        for key, val in self.models[1 - s].pending.items():
            if val is None:
                view.pop(key, None)
            else:
                view[key] = val
        return view


@servers
def test_sessions_are_isolated(iso: IsoDb) -> None:
    in_fresh_context(
        lambda: run_state_machine_as_test(lambda: IsolationMachine(iso), settings=settings.default)
    )


@servers
def test_isolation_wrong_model_is_caught(iso: IsoDb) -> None:
    with pytest.raises(AssertionError, match="the model expects"):
        in_fresh_context(lambda: run_state_machine_as_test(lambda: DirtyReadsMachine(iso), settings=quick()))
