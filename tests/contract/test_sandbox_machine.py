"""Stateful test of the sandbox, on every backend: a state machine against a model of the transactions open on
the sandbox's connection.

A sandbox pins "the app's" engine to its connection. The app opens top-level and nested transactions
(explicitly and as ``with`` blocks, driven through ``__enter__`` / ``__exit__``), a raw DB-API connection
(``sandbox.connection()``) and the sandbox's ORM session (``session_for(sandbox)``) open their own, and the test's
session (``sandbox.session()``) runs statements between them. All of them share one connection, so their
transactions form one stack of savepoints: the model is that stack (one view per open transaction, whatever its
session; tests/contract/sandbox_model.py). After every step the test's session must see the innermost view (its
statements join whatever is innermost), the ``on_commit`` callbacks that ran must be those of the sessions' root
commits, and an independent connection must still see the starting state.

Only valid orders are generated, except in the rules that try an invalid order on purpose (refused with
`TransactionStateError`, nothing changes) and the ones that roll back a transaction with other sessions'
transactions above it (documented: those become BROKEN); they are in tests/contract/sandbox_misuse_steps.py. At
the end the sandbox stops and the independent connection must see exactly the starting state. A second test runs
the machine with a deliberately wrong model, to show that its invariants can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Column, Integer, MetaData, Table, delete, insert, text, update

from pytest_txscope import Sandbox, Session, Transaction, TransactionStateError
from pytest_txscope.sqlalchemy import session_for

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
    lib_write,
    open_db,
    quick,
)
from .sandbox_misuse_steps import SandboxMisuseSteps
from .sandbox_model import BROKEN, COMMITTED, ROLLED_BACK, Draw, Frame

ITEMS = Table(
    TABLE,
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("val", Integer, nullable=False),
)
IDS = tuple(range(8))


def draw_write(draw: Draw, view: dict[int, int]) -> Write:
    """A write that is valid on ``view``: insert a free id, update or delete a used one."""
    free, used = [i for i in IDS if i not in view], sorted(view)
    op = draw(st.sampled_from((["insert"] if free else []) + (["update", "delete"] if used else [])))
    key = draw(st.sampled_from(free if op == "insert" else used))
    return Write(op, key, 0 if op == "delete" else draw(VALS))


@pytest.fixture
def db(backend_name: str, tmp_path: Path) -> Iterator[Db]:
    yield from open_db(backend_name, tmp_path)


def op_rule(op: str) -> Any:
    """A rule running step ``op`` alone, when the model says it is valid now."""

    def run(self: SandboxMachine, data: st.DataObject) -> None:
        self.step(op, data.draw)

    run.__name__ = run.__qualname__ = op  # before decorating: hypothesis prints steps by this name
    return precondition(lambda self: self.valid_ops()[op])(rule(data=st.data())(run))


class SandboxMachine(SandboxMisuseSteps, RuleBasedStateMachine):
    def __init__(self, db: Db) -> None:
        super().__init__()
        self.db = db
        self.engine, self.app, self.peer = db.engine, db.app, db.peer
        self.sandbox: Sandbox | None = None
        self.ts: Session | None = None
        self.seed: dict[int, int] = {}
        self.base: dict[int, int] = {}  # the view of the sandbox's own (outer) transaction
        self.frames: list[Frame] = []
        self.idle_raw: list[Any] = []  # SandboxConnections with no transaction open, to be used again
        self._orm: Any = None
        self.lib_txs: list[Transaction] = []  # every library transaction seen: none may be active after stop
        self.fired: list[int] = []  # on_commit callbacks the library ran, in order
        self.expected_fired: list[int] = []  # ... and those the model says it should have run
        self.callback_count = 0

    # ------------------------------------------------------------------------------------ start and end
    @initialize(seed=st.dictionaries(st.sampled_from(IDS), VALS, max_size=4))
    def start(self, seed: dict[int, int]) -> None:
        """Commit a starting state outside any sandbox, then start the sandbox."""
        with self.engine.begin() as tx:
            tx.execute(f"DELETE FROM {TABLE}").close()
            for key, val in seed.items():
                tx.execute(LIB_SQL["insert"], {"id": key, "val": val}).close()
        self.seed, self.base = dict(seed), dict(seed)
        self.sandbox = Sandbox(self.engine, engines=[self.app, *self.extra_engines()]).start()
        self.ts = self.sandbox.session()

    def extra_engines(self) -> tuple[Any, ...]:
        """More engines of the app for the sandbox to pin (a subclass's SQLAlchemy ``AsyncEngine``)."""
        return ()

    def teardown(self) -> None:
        if self.sandbox is None:
            return
        blocks = [f for f in self.frames if f.kind == "block"]
        self.sandbox.stop()  # rolls back whatever is still open; SandboxEscapeError would be a bug
        self.leave_blocks(blocks)
        self.check_after_stop()

    def leave_blocks(self, blocks: list[Frame]) -> None:
        """Leave the blocks still open when the sandbox stopped, innermost first."""
        for f in reversed(blocks):  # leaving the blocks afterwards ends nothing more (and unwinds the scopes)
            assert f.libtx is not None
            if f.libtx.state is BROKEN:
                # The ORM session's cleanup rolled back its transaction under this block before the sandbox
                # ended the rest: the block's transaction is BROKEN, and leaving the block says so.
                with pytest.raises(TransactionStateError, match="cannot commit: it was rolled back when"):
                    f.exit.__exit__(None, None, None)
            else:
                f.exit.__exit__(None, None, None)

    def check_after_stop(self) -> None:
        """Nothing is active, nothing was committed, and only the root commits' callbacks ran."""
        _check(
            "transactions still active after the sandbox stopped",
            [tx for tx in self.lib_txs if tx.is_active],
            [],
        )
        _check("what is committed after the sandbox stopped", self.db.committed_rows(), self.seed)
        _check("on_commit callbacks run, after the sandbox stopped", self.fired, self.expected_fired)

    # -------------------------------------------------------------------------------------- the ORM
    @property
    def orm(self) -> Any:
        if self._orm is None:
            assert self.sandbox is not None
            self._orm = session_for(self.sandbox)
        return self._orm

    def orm_execute(self, w: Write, draw: Draw) -> None:
        """Run ``w`` through the ORM session, as a Core statement or as text()."""
        if draw(st.sampled_from(("core", "text"))) == "text":
            result = self.orm.execute(text(LIB_SQL[w.op]), w.params())
        elif w.op == "insert":
            result = self.orm.execute(insert(ITEMS).values(id=w.key, val=w.val))
        elif w.op == "update":
            result = self.orm.execute(update(ITEMS).where(ITEMS.c.id == w.key).values(val=w.val))
        else:
            result = self.orm.execute(delete(ITEMS).where(ITEMS.c.id == w.key))
        if w.op == "delete":  # SQLAlchemy documents rowcount for UPDATE/DELETE only (-1 for psycopg inserts)
            _check(f"rows changed by {w} (ORM)", result.rowcount, 1)

    def orm_sent(self) -> None:
        """SQLAlchemy sent the savepoints of its open nested transactions: each gets a view of its own."""
        for f in self.frames:
            if not f.sent:
                f.view = dict(f.view)
                f.sent = True

    # ----------------------------------------------------------------------------------- raw DB-API
    def raw_write(self, conn: Any, w: Write) -> None:
        m = self.db.raw_marker
        sql = {
            "insert": (f"INSERT INTO {TABLE} (id, val) VALUES ({m}, {m})", (w.key, w.val)),
            "update": (f"UPDATE {TABLE} SET val = {m} WHERE id = {m}", (w.val, w.key)),
            "delete": (f"DELETE FROM {TABLE} WHERE id = {m}", (w.key,)),
        }[w.op]
        with conn.cursor() as cursor:
            cursor.execute(*sql)
            if w.op != "update":
                _check(f"rows changed by {w} (raw DB-API)", cursor.rowcount, 1)

    # ------------------------------------------------------------------------------------- the steps
    def do_app_begin(self, draw: Draw) -> None:
        """The app opens a transaction: top-level (a new session) unless one of its blocks is current."""
        current = self.app_session()
        if draw(st.sampled_from(("begin", "with"))) == "begin":
            tx, kind, exit_ = self.app.begin(), "tx", None
        else:
            tx, kind, exit_ = self.app.__enter__(), "block", self.app
        if current is None:
            _check(
                "app.begin() outside its blocks: a new guest session",
                (
                    tx.session.is_guest,
                    tx.session.engine is self.app,
                    tx.parent,
                    any(f.session is tx.session for f in self.frames),
                ),
                (True, True, None, False),
            )
        else:
            _check("app.begin() inside its block: nested in the block's session", tx.session is current, True)
        self.push(Frame(kind, tx.session, tx, dict(self.top_view()), app=True, exit=exit_, libtx=tx))

    def do_ts_begin(self, draw: Draw) -> None:
        """The test's session opens a transaction (it then behaves as the app's would)."""
        assert self.ts is not None
        if draw(st.sampled_from(("begin", "with"))) == "begin":
            tx, kind, exit_ = self.ts.begin(), "tx", None
        else:
            tx, kind, exit_ = self.ts.__enter__(), "block", self.ts
        _check("the test session's transaction", (tx.session is self.ts, tx.is_active), (True, True))
        self.push(Frame(kind, self.ts, tx, dict(self.top_view()), exit=exit_, libtx=tx))

    def do_nested_begin(self, draw: Draw) -> None:
        top = self.frames[-1]
        assert top.libtx is not None
        tx = top.libtx.begin_nested()
        kind, exit_ = "tx", None
        if draw(st.sampled_from(("begin_nested", "with"))) == "with":
            kind, exit_ = "block", tx
            _check("with tx.begin_nested() as n: n", tx.__enter__() is tx, True)
        _check("nested transaction", (tx.session is top.session, tx.parent is top.libtx), (True, True))
        self.push(Frame(kind, top.session, tx, dict(top.view), app=top.app, exit=exit_, libtx=tx))

    def do_write(self, draw: Draw) -> None:
        """Insert, update or delete in the innermost transaction, through its own session's API."""
        top = self.frames[-1]
        if top.kind.startswith("orm"):
            self.orm_sent()
            top = self.frames[-1]
            w = draw_write(draw, top.view)
            self.orm_execute(w, draw)
        else:
            w = draw_write(draw, top.view)
            if top.kind == "raw":
                self.raw_write(top.handle, w)
            else:
                lib_write(draw(st.sampled_from((top.libtx, top.session))), w)
        w.apply(top.view)

    def do_test_write(self, draw: Draw) -> None:
        """A statement on the test's session: it joins whatever transaction is innermost on the connection."""
        assert self.ts is not None
        view = self.top_view()
        if view and not self.ts_frames() and draw(st.booleans()):
            # A failing statement outside blocks (pytest.raises): the test goes on, nothing changed.
            key = draw(st.sampled_from(sorted(view)))
            with pytest.raises(self.db.integrity_error):
                self.ts.execute(LIB_SQL["insert"], {"id": key, "val": 0})
            return
        w = draw_write(draw, view)
        lib_write(self.ts, w)
        w.apply(view)

    def do_app_bare_session(self, draw: Draw) -> None:
        """The app's bare session runs a statement and closes: its implicit transaction is rolled back."""
        view = dict(self.top_view())
        w = draw_write(draw, view)
        with self.app.session() as session:
            _check(
                "app.session() outside blocks: a new guest session",
                (session.is_guest, any(f.session is session for f in self.frames)),
                (True, False),
            )
            lib_write(session, w)
            w.apply(view)
            _check("the app's bare session sees its statement", dict(session.fetchall(SELECT)), view)
        _check("the app's bare session after it closed", session.closed, True)

    def do_commit(self, draw: Draw) -> None:
        top = self.frames[-1]
        top.handle.commit()
        _check("committed transaction", top.handle.state, COMMITTED)
        self.model_commit_top()

    def do_rollback(self, draw: Draw) -> None:
        top = self.frames[-1]
        top.handle.rollback()
        _check("rolled-back transaction", top.handle.state, ROLLED_BACK)
        self.model_rollback_from(len(self.frames) - 1)

    def do_block_exit(self, draw: Draw) -> None:
        """A block ends cleanly: it commits."""
        top = self.frames[-1]
        top.exit.__exit__(None, None, None)
        _check("transaction of a block that ended cleanly", top.handle.state, COMMITTED)
        self.model_commit_top()

    def do_block_raise(self, draw: Draw) -> None:
        """The body of a block raises (the app's own error, or the server's duplicate key): it rolls back."""
        top = self.frames[-1]
        exc: BaseException = _BoomError()
        if top.view and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(top.view)))
            with pytest.raises(self.db.integrity_error) as info:
                top.handle.execute(LIB_SQL["insert"], {"id": key, "val": 0})
            exc = info.value
        top.exit.__exit__(type(exc), exc, exc.__traceback__)
        _check("transaction of a block that raised", top.handle.state, ROLLED_BACK)
        self.model_rollback_from(len(self.frames) - 1)

    def do_block_end_explicit(self, draw: Draw) -> None:
        """The body ends its block's transaction itself; leaving the block afterwards does nothing more."""
        top = self.frames[-1]
        if draw(st.booleans()):
            top.handle.commit()
            self.model_commit_top()
        else:
            top.handle.rollback()
            self.model_rollback_from(len(self.frames) - 1)
        state = top.handle.state
        top.exit.__exit__(None, None, None)
        _check("leaving a block whose transaction had ended", top.handle.state, state)

    def do_raw_open(self, draw: Draw) -> None:
        """A raw DB-API connection's first statement opens its transaction (a savepoint)."""
        assert self.sandbox is not None
        if self.idle_raw and draw(st.booleans()):
            conn = draw(st.sampled_from(self.idle_raw))
            self.idle_raw.remove(conn)
        else:
            conn = self.sandbox.connection()
        view = dict(self.top_view())
        w = draw_write(draw, view)
        self.raw_write(conn, w)
        w.apply(view)
        tx = conn.session.transaction
        _check(
            "the raw connection's transaction",
            (tx is not None and tx.is_active, tx in self.lib_txs),
            (True, False),
        )
        self.push(Frame("raw", conn.session, conn, view, libtx=tx))

    def do_raw_end(self, draw: Draw) -> None:
        top = self.frames[-1]
        conn = top.handle
        how = draw(st.sampled_from(("commit", "rollback", "close")))
        getattr(conn, how)()
        assert top.libtx is not None
        _check(
            f"raw connection's transaction after {how}()",
            top.libtx.state,
            COMMITTED if how == "commit" else ROLLED_BACK,
        )
        if how == "commit":
            self.model_commit_top()
        else:
            self.model_rollback_from(len(self.frames) - 1)
        if how == "close":
            with pytest.raises(TransactionStateError, match="this sandbox connection is closed"):
                conn.cursor()
        else:
            self.idle_raw.append(conn)

    def do_orm_write(self, draw: Draw) -> None:
        """A statement on the ORM session: its first one opens the ORM's transaction (a savepoint)."""
        if self.orm_group() is None:
            view = dict(self.top_view())
            w = draw_write(draw, view)
            self.orm_execute(w, draw)
            w.apply(view)
            _check("the ORM session is in a transaction", self.orm.in_transaction(), True)
            self.push(Frame("orm", "orm", self.orm, view))
        else:
            self.do_write(draw)

    def do_orm_nested_begin(self, draw: Draw) -> None:
        nested = self.orm.begin_nested()
        self.push(Frame("orm_nested", "orm", nested, self.frames[-1].view, sent=False))
        if draw(st.booleans()):
            self.orm.connection()  # makes SQLAlchemy send the SAVEPOINT now
            self.orm_sent()

    def do_orm_nested_end(self, draw: Draw) -> None:
        top = self.frames[-1]
        if draw(st.booleans()):
            top.handle.commit()
            self.model_commit_top()
        else:
            top.handle.rollback()
            self.model_rollback_from(len(self.frames) - 1)
        _check("the ORM's nested transaction after it ended", top.handle.is_active, False)

    def do_orm_end(self, draw: Draw) -> None:
        """The ORM session commits or rolls back (and with it any nested transaction still open)."""
        root = self.orm_group()
        assert root is not None
        if draw(st.booleans()):
            self.orm.commit()
            while len(self.frames) > root:
                self.model_commit_top()
        else:
            self.orm.rollback()
            self.model_rollback_from(root)
        _check("the ORM session after it ended its transaction", self.orm.in_transaction(), False)

    def do_on_commit(self, draw: Draw) -> None:
        """Register a callback for when the innermost transaction's work is committed (by its session's root)."""
        top = self.frames[-1]
        assert top.libtx is not None
        self.callback_count += 1
        number = self.callback_count
        top.libtx.on_commit(lambda: self.fired.append(number))
        top.callbacks.append(number)

    # ------------------------------------------------------------------------------------------ rules
    def step(self, op: str, draw: Draw) -> None:
        getattr(self, f"do_{op}")(draw)

    app_begin = op_rule("app_begin")
    ts_begin = op_rule("ts_begin")
    nested_begin = op_rule("nested_begin")
    write = op_rule("write")
    test_write = op_rule("test_write")
    app_bare_session = op_rule("app_bare_session")
    commit = op_rule("commit")
    rollback = op_rule("rollback")
    block_exit = op_rule("block_exit")
    block_raise = op_rule("block_raise")
    block_end_explicit = op_rule("block_end_explicit")
    raw_open = op_rule("raw_open")
    raw_end = op_rule("raw_end")
    orm_write = op_rule("orm_write")
    orm_nested_begin = op_rule("orm_nested_begin")
    orm_nested_end = op_rule("orm_nested_end")
    orm_end = op_rule("orm_end")
    on_commit = op_rule("on_commit")
    failed_statement_then_commit = op_rule("failed_statement_then_commit")
    refused = op_rule("refused")
    rollback_under = op_rule("rollback_under")
    block_exit_out_of_order = op_rule("block_exit_out_of_order")

    @invariant()
    def test_session_sees_innermost_view(self) -> None:
        assert self.ts is not None
        active = []
        for f in self.frames:
            if f.kind.startswith("orm"):
                active.append(f.handle.is_active if f.kind == "orm_nested" else f.handle.in_transaction())
            else:
                assert f.libtx is not None
                active.append(f.libtx.is_active and (f.kind != "raw" or f.session.transaction is f.libtx))
        _check("open transactions are active", active, [True] * len(self.frames))
        _check(
            "the test session's view (the innermost transaction's)",
            dict(self.ts.fetchall(SELECT)),
            self.top_view(),
        )
        _check("on_commit callbacks run", self.fired, self.expected_fired)

    @invariant()
    def nothing_escapes(self) -> None:
        if self.peer is not None:
            _check("what the peer sees while the sandbox runs", dict(self.peer.fetchall(SELECT)), self.seed)

    @rule(data=st.data())
    def burst(self, data: st.DataObject) -> None:
        """Several steps in a row with no read in between, so that queued control statements pile up."""
        for _ in range(data.draw(st.integers(2, 6), label="burst length")):
            op = data.draw(st.sampled_from([op for op, ok in self.valid_ops().items() if ok]))
            self.step(op, data.draw)


class ForgetfulSandboxMachine(SandboxMachine):
    """A deliberately wrong model: rolling back keeps the work, as if it were committed."""

    def model_rollback_from(self, k: int) -> None:
        while len(self.frames) > k:
            self.model_commit_top()


@backends
def test_sandbox_matches_model(db: Db) -> None:
    in_fresh_context(lambda: run_state_machine_as_test(lambda: SandboxMachine(db), settings=settings.default))


@backends
def test_sandbox_wrong_model_is_caught(db: Db) -> None:
    with pytest.raises(AssertionError, match="the model expects"):
        in_fresh_context(
            lambda: run_state_machine_as_test(lambda: ForgetfulSandboxMachine(db), settings=quick())
        )
