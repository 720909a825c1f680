"""Stateful and property tests of the sandbox, of shared sandboxes under threads, and of isolation outside it.

Three kinds of machine, each with a test that runs it against the real library and backends, and a test that
runs it with a deliberately wrong model to show that its invariants can fail:

1. `SandboxMachine`: a sandbox pins "the app's" engine to its connection. The app opens top-level and nested
   transactions (explicitly and as ``with`` blocks, driven through ``__enter__`` / ``__exit__``), a raw DB-API
   connection (``sandbox.connection()``) and the sandbox's ORM session (``session_for(sandbox)``) open their
   own, and the test's session (``sandbox.session()``) runs statements between them. All of them share one
   connection, so their transactions form one stack of savepoints: the model is that stack (one view per open
   transaction, whatever its session). After every step the test's session must see the innermost view (its
   statements join whatever is innermost), the ``on_commit`` callbacks that ran must be those of the sessions'
   root commits, and an independent connection must still see the starting state.
   Only valid orders are generated, except in the rules that try an invalid order on purpose (refused with
   `TransactionStateError`, nothing changes) and the ones that roll back a transaction with other sessions'
   transactions above it (documented: those become BROKEN). At the end the sandbox stops and the independent
   connection must see exactly the starting state.
2. Threads in a shared sandbox (`test_shared_sandbox_serialises_thread_transactions`): 2-3 threads run random
   transactions at once (``with app:``, ``app.begin()``, the app's bare session, a raw ``sandbox.connection()``
   with ``conn.transaction()`` savepoints); each records, while it holds the lease, that its transaction runs.
   Replaying the committed work in that order must give what the test's session sees, no two threads may be
   inside a transaction at once, and after the sandbox stops nothing is left.
3. `IsolationMachine` (PostgreSQL, MySQL/MariaDB): two sessions of two engines, outside any sandbox, never see
   each other's uncommitted rows and see committed ones as the server's default isolation level says (READ
   COMMITTED on PostgreSQL; REPEATABLE READ on MariaDB, whose snapshot is taken at the first read).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, given, settings
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

from pytest_txscope import Engine, Sandbox, Session, Transaction, TransactionState, TransactionStateError
from pytest_txscope.sqlalchemy import session_for

from ..backends import ALL, Peer, make_backend

# One table per process (see tests/contract/test_transaction_stack_machine.py: two runs sharing a database
# would deadlock on DDL).
TABLE = f"sbm_items_{os.getpid()}"
DDL = f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, val INTEGER NOT NULL)"
SELECT = f"SELECT id, val FROM {TABLE} ORDER BY id"
LIB_SQL = {
    "insert": f"INSERT INTO {TABLE} (id, val) VALUES (:id, :val)",
    "update": f"UPDATE {TABLE} SET val = :val WHERE id = :id",
    "delete": f"DELETE FROM {TABLE} WHERE id = :id",
}
ITEMS = Table(
    TABLE,
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("val", Integer, nullable=False),
)
IDS = tuple(range(8))
VALS = st.integers(0, 99)
MAX_FRAMES = 6  # transactions open at once on the sandbox connection, all sessions together

COMMITTED = TransactionState.COMMITTED
ROLLED_BACK = TransactionState.ROLLED_BACK
BROKEN = TransactionState.BROKEN
Draw = Callable[[st.SearchStrategy[Any]], Any]


class _BoomError(Exception):
    """Raised inside a block to make it roll back."""


def _check(what: str, got: object, want: object) -> None:
    # One line for every check, so that hypothesis reports one failure, not one per invariant.
    assert got == want, f"{what}: the library/database has {got!r}, the model expects {want!r}"


# ------------------------------------------------------------------------------------------------- writes
@dataclass(frozen=True)
class Write:
    """One row change: ``insert`` / ``update`` (to ``val``) or ``delete`` of the row ``key``."""

    op: str
    key: int
    val: int = 0

    def params(self) -> dict[str, int]:
        return {"id": self.key} if self.op == "delete" else {"id": self.key, "val": self.val}

    def apply(self, view: dict[int, int]) -> None:
        if self.op == "delete":
            del view[self.key]
        else:
            view[self.key] = self.val


def draw_write(draw: Draw, view: dict[int, int]) -> Write:
    """A write that is valid on ``view``: insert a free id, update or delete a used one."""
    free, used = [i for i in IDS if i not in view], sorted(view)
    op = draw(st.sampled_from((["insert"] if free else []) + (["update", "delete"] if used else [])))
    key = draw(st.sampled_from(free if op == "insert" else used))
    return Write(op, key, 0 if op == "delete" else draw(VALS))


def lib_write(executor: Transaction | Session, w: Write) -> None:
    """Run ``w`` through the library (portable placeholders)."""
    cursor = executor.execute(LIB_SQL[w.op], w.params())
    if w.op != "update":  # MySQL counts changed rows, not matched ones: an update to the same value counts 0
        _check(f"rows changed by {w}", cursor.rowcount, 1)
    cursor.close()


# ------------------------------------------------------------------------------------------- fixtures
@dataclass
class Db:
    backend: str
    engine: Engine
    app: Engine
    peer: Peer | None

    @property
    def integrity_error(self) -> type[Exception]:
        error: type[Exception] = importlib.import_module(self.engine.dialect.driver).IntegrityError
        return error

    @property
    def raw_marker(self) -> str:
        """The driver's own placeholder, for statements on a raw DB-API connection."""
        return "?" if self.engine.dialect.name == "sqlite" else "%s"

    def committed_rows(self) -> dict[int, int]:
        """What is committed, seen from outside every sandbox (the peer, or a fresh session for :memory:)."""
        if self.peer is not None:
            return dict(self.peer.fetchall(SELECT))
        with self.engine.session() as session:
            return dict(session.fetchall(SELECT))


@pytest.fixture
def db(backend_name: str, tmp_path: Path) -> Iterator[Db]:
    backend = next(make_backend(backend_name, tmp_path))  # skips (or fails, when required) if unreachable
    engine = backend.engine(acquire_timeout=5)  # a session not given back errors instead of hanging
    app = backend.engine(acquire_timeout=5)  # "the application's" engine on the same database
    engine.executescript(f"DROP TABLE IF EXISTS {TABLE}; {DDL}")
    peer = backend.peer() if backend.has_peer else None
    try:
        yield Db(backend_name, engine, app, peer)
    finally:
        if peer is not None:
            peer.close()
        engine.executescript(f"DROP TABLE IF EXISTS {TABLE}")
        engine.dispose()
        app.dispose()


backends = pytest.mark.parametrize("backend_name", ALL)
servers = pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])


def in_fresh_context(run: Callable[[], None]) -> None:
    """Run a whole hypothesis test in a copy of the current context: blocks it leaves open (a failing step)
    cannot leave current sessions behind for the tests that follow."""
    contextvars.copy_context().run(run)


def quick() -> settings:
    """Settings for the wrong-model tests: finding the failure is the point; shrinking it would only cost time."""
    return settings(parent=settings.default, phases=(Phase.explicit, Phase.reuse, Phase.generate))


# ===================================================================================================
# 1. The sandbox machine
# ===================================================================================================
@dataclass(eq=False)
class Frame:
    """One transaction open on the sandbox connection, and the model's view inside it."""

    kind: str
    """``tx`` (explicit begin), ``block`` (a with block), ``raw`` (a SandboxConnection's transaction),
    ``orm`` (the ORM session's transaction) or ``orm_nested`` (its ``begin_nested()``)."""
    session: Any
    """The library session it belongs to (the ORM's frames: the marker ``"orm"``)."""
    handle: Any
    """What ends it: the Transaction, the SandboxConnection, the ORM session or its nested transaction."""
    view: dict[int, int]
    app: bool = False
    """Whether its session is one of the app engine's (what ``app.begin()`` finds when a block is current)."""
    exit: Any = None
    """For a block: the object whose ``with`` opened it (app engine, test session or transaction)."""
    libtx: Transaction | None = None
    """The library's transaction behind it (None for the ORM's frames)."""
    sent: bool = True
    """False for an ORM savepoint SQLAlchemy has not sent yet (it sends it with the session's next statement):
    until then its view *is* its parent's (the same dict), since on the server nothing separates them."""
    callbacks: list[int] = field(default_factory=list)
    """``on_commit`` callbacks registered in it (or in nested transactions committed into it)."""


def _op_rule(op: str) -> Any:
    """A rule running step ``op`` alone, when the model says it is valid now."""

    def run(self: SandboxMachine, data: st.DataObject) -> None:
        self.step(op, data.draw)

    run.__name__ = run.__qualname__ = op  # before decorating: hypothesis prints steps by this name
    return precondition(lambda self: self.valid_ops()[op])(rule(data=st.data())(run))


class SandboxMachine(RuleBasedStateMachine):
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

    # ------------------------------------------------------------------------------------- the model
    def top_view(self) -> dict[int, int]:
        return self.frames[-1].view if self.frames else self.base

    def push(self, frame: Frame) -> None:
        self.frames.append(frame)
        if frame.libtx is not None:
            self.lib_txs.append(frame.libtx)

    def model_commit_top(self) -> None:
        top = self.frames.pop()
        below = self.top_view()
        if below is not top.view:  # in place: an unsent ORM savepoint above may share the dict
            below.clear()
            below.update(top.view)
        if top.libtx is not None and top.libtx.parent is None:
            self.expected_fired.extend(top.callbacks)  # a session's root commits: the app's commit
        elif top.callbacks:  # a nested one: they wait for its parent, the frame right below (same session)
            assert self.frames[-1].libtx is top.libtx.parent  # type: ignore[union-attr]
            self.frames[-1].callbacks.extend(top.callbacks)

    def model_rollback_from(self, k: int) -> None:
        """Roll back ``frames[k]`` and everything above it."""
        del self.frames[k:]

    # ------------------------------------------------------------------------------ what the model knows
    def app_session(self) -> Session | None:
        """The session ``app.begin()`` uses: that of the innermost block of an app session, if any."""
        for f in reversed(self.frames):
            if f.kind == "block" and f.app:
                return f.session  # type: ignore[no-any-return]
        return None

    def ts_frames(self) -> list[int]:
        return [i for i, f in enumerate(self.frames) if f.session is self.ts]

    def on_top(self, session: object) -> bool:
        return bool(self.frames) and self.frames[-1].session is session

    def innermost_of(self, session: object) -> int:
        return max(i for i, f in enumerate(self.frames) if f.session is session)

    def orm_group(self) -> int | None:
        """Index of the ORM session's outermost open frame (its frames are always the top ones)."""
        return next((i for i, f in enumerate(self.frames) if f.kind == "orm"), None)

    def refusals(self) -> list[tuple[str, int]]:
        """Invalid orders the library must refuse without changing anything: (what, frame index)."""
        out: list[tuple[str, int]] = []
        for k, f in enumerate(self.frames[:-1]):
            if f.kind in ("tx", "block", "raw"):
                out.append(("commit", k))
            if f.kind in ("tx", "block"):
                out.append(("begin_nested", k))
        app = self.app_session()
        if app is not None and not self.on_top(app):
            out.append(("app", self.innermost_of(app)))
        if self.ts_frames() and not self.on_top(self.ts):
            out.append(("ts", self.innermost_of(self.ts)))
        return out

    def rollback_points(self) -> list[int]:
        """Frames that may be rolled back with other frames above them (not the ORM's: SQLAlchemy would try
        to roll back to savepoints that are gone, which is SQLAlchemy's business, not the sandbox's)."""
        return [
            k
            for k, f in enumerate(self.frames[:-1])
            if f.kind in ("tx", "block", "raw") and not any(g.kind.startswith("orm") for g in self.frames[k:])
        ]

    def last_block(self) -> int | None:
        return next((i for i in range(len(self.frames) - 1, -1, -1) if self.frames[i].kind == "block"), None)

    def valid_ops(self) -> dict[str, bool]:
        frames = self.frames
        top = frames[-1] if frames else None
        room = len(frames) < MAX_FRAMES
        app = self.app_session()
        lib_top = top is not None and top.kind in ("tx", "block")
        ts_ok = not self.ts_frames() or self.on_top(self.ts)
        block = self.last_block()
        return {
            "app_begin": room and (app is None or self.on_top(app)),
            "ts_begin": room and ts_ok,
            "nested_begin": room and lib_top,
            "write": top is not None,
            "test_write": ts_ok,
            "app_bare_session": app is None,
            "commit": top is not None and top.kind == "tx",
            "rollback": top is not None and top.kind == "tx",
            "block_exit": top is not None and top.kind == "block",
            "block_raise": top is not None and top.kind == "block",
            "block_end_explicit": top is not None and top.kind == "block",
            "raw_open": room,
            "raw_end": top is not None and top.kind == "raw",
            "orm_write": (room and self.orm_group() is None)
            or (top is not None and top.kind.startswith("orm")),
            "orm_nested_begin": room and top is not None and top.kind.startswith("orm"),
            "orm_nested_end": top is not None and top.kind == "orm_nested",
            "orm_end": top is not None and top.kind.startswith("orm"),
            "refused": bool(self.refusals()),
            "rollback_under": bool(self.rollback_points()),
            "on_commit": lib_top,
            "failed_statement_then_commit": top is not None
            and top.kind in ("tx", "block", "raw")
            and bool(top.view),
            "block_exit_out_of_order": block is not None
            and block < len(frames) - 1
            and not any(g.kind.startswith("orm") for g in frames[block:]),
        }

    # ------------------------------------------------------------------------------------ start and end
    @initialize(seed=st.dictionaries(st.sampled_from(IDS), VALS, max_size=4))
    def start(self, seed: dict[int, int]) -> None:
        """Commit a starting state outside any sandbox, then start the sandbox."""
        with self.engine.begin() as tx:
            tx.execute(f"DELETE FROM {TABLE}").close()
            for key, val in seed.items():
                tx.execute(LIB_SQL["insert"], {"id": key, "val": val}).close()
        self.seed, self.base = dict(seed), dict(seed)
        self.sandbox = Sandbox(self.engine, engines=[self.app]).start()
        self.ts = self.sandbox.session()

    def teardown(self) -> None:
        if self.sandbox is None:
            return
        blocks = [f for f in self.frames if f.kind == "block"]
        self.sandbox.stop()  # rolls back whatever is still open; SandboxEscapeError would be a bug
        for f in reversed(blocks):  # leaving the blocks afterwards ends nothing more (and unwinds the scopes)
            assert f.libtx is not None
            if f.libtx.state is BROKEN:
                # The ORM session's cleanup rolled back its transaction under this block before the sandbox
                # ended the rest: the block's transaction is BROKEN, and leaving the block says so.
                with pytest.raises(TransactionStateError, match="cannot commit: it was rolled back when"):
                    f.exit.__exit__(None, None, None)
            else:
                f.exit.__exit__(None, None, None)
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

    def do_failed_statement_then_commit(self, draw: Draw) -> None:
        """A statement fails (duplicate key), the code carries on and commits. PostgreSQL aborted the
        transaction: the commit is refused and the transaction rolled back (documented). Elsewhere the failed
        statement changed nothing and the commit goes through."""
        top = self.frames[-1]
        key = draw(st.sampled_from(sorted(top.view)))
        with pytest.raises(self.db.integrity_error):
            if top.kind == "raw":
                self.raw_write(top.handle, Write("insert", key, 0))
            else:
                top.handle.execute(LIB_SQL["insert"], {"id": key, "val": 0})
        end = top.exit.__exit__ if top.kind == "block" else top.handle.commit
        assert top.libtx is not None
        if self.db.engine.dialect.aborts_on_error:
            with pytest.raises(TransactionStateError, match="a statement in it failed and PostgreSQL aborts"):
                end() if top.kind != "block" else end(None, None, None)
            _check("a transaction whose commit was refused", top.libtx.state, ROLLED_BACK)
            self.model_rollback_from(len(self.frames) - 1)
        else:
            end() if top.kind != "block" else end(None, None, None)
            _check("a transaction committed after a failed statement", top.libtx.state, COMMITTED)
            self.model_commit_top()
        if top.kind == "raw":
            self.idle_raw.append(top.handle)

    def do_refused(self, draw: Draw) -> None:
        """An invalid order across sessions: refused with TransactionStateError, and nothing changes."""
        what, k = draw(st.sampled_from(self.refusals()))
        f = self.frames[k]
        innermost = self.innermost_of(f.session) == k
        if what == "commit":
            match = (
                "must end their transactions in reverse order"
                if innermost
                else "opened inside it, is still active"
            )
            with pytest.raises(TransactionStateError, match=match):
                f.handle.commit()
        elif what == "begin_nested":
            assert f.libtx is not None
            match = "cannot open a transaction inside" if innermost else "opened inside it, is still active"
            with pytest.raises(TransactionStateError, match=match):
                if draw(st.booleans()):
                    f.libtx.begin_nested()
                else:
                    f.libtx.begin_nested().__enter__()
        else:  # app.begin() / with app / ts.begin() / with ts, nested in the session's innermost (not on top)
            opener = self.app if what == "app" else self.ts
            assert opener is not None
            with pytest.raises(TransactionStateError, match="cannot open a transaction inside"):
                if draw(st.booleans()):
                    opener.begin()
                else:
                    opener.__enter__()

    def unwind_above(self, k: int) -> None:
        """After ``frames[k]`` rolled back: the frames of its session above it are rolled back, the other
        sessions' are BROKEN; their owners unwind them (committing a broken one is refused)."""
        origin = self.frames[k].session
        for g in reversed(self.frames[k + 1 :]):
            same = g.session is origin
            assert g.libtx is not None
            _check(
                "state of a transaction above the one rolled back",
                g.libtx.state,
                ROLLED_BACK if same else BROKEN,
            )
            if g.kind == "block":
                if same:
                    g.exit.__exit__(None, None, None)
                else:
                    with pytest.raises(TransactionStateError, match="cannot commit: it was rolled back when"):
                        g.exit.__exit__(None, None, None)
            elif not same:
                with pytest.raises(TransactionStateError, match="is already broken: it was rolled back when"):
                    g.handle.commit()
                g.handle.rollback()
                _check("a broken transaction after its rollback", g.libtx.state, BROKEN)
            if g.kind == "raw":
                self.idle_raw.append(g.handle)

    def do_rollback_under(self, draw: Draw) -> None:
        """Roll back a transaction with others above it: allowed, and they all go."""
        k = draw(st.sampled_from(self.rollback_points()))
        f = self.frames[k]
        f.handle.rollback()  # a Transaction, or a SandboxConnection (rolls back its transaction)
        self.unwind_above(k)
        if f.kind == "block":
            f.exit.__exit__(None, None, None)
        if f.kind == "raw":
            self.idle_raw.append(f.handle)
        assert f.libtx is not None
        _check("the transaction rolled back under others", f.libtx.state, ROLLED_BACK)
        self.model_rollback_from(k)

    def do_block_exit_out_of_order(self, draw: Draw) -> None:
        """The innermost block ends while transactions opened after it are open: both rolled back, and an
        error says so (documented)."""
        b = self.last_block()
        assert b is not None
        f = self.frames[b]
        exc = _BoomError() if draw(st.booleans()) else None
        with pytest.raises(
            TransactionStateError, match=r"ended while .* was still open; both were rolled back"
        ):
            f.exit.__exit__(type(exc) if exc else None, exc, None)
        self.unwind_above(b)
        assert f.libtx is not None
        _check("the block that ended out of order", f.libtx.state, ROLLED_BACK)
        self.model_rollback_from(b)

    # ------------------------------------------------------------------------------------------ rules
    def step(self, op: str, draw: Draw) -> None:
        getattr(self, f"do_{op}")(draw)

    app_begin = _op_rule("app_begin")
    ts_begin = _op_rule("ts_begin")
    nested_begin = _op_rule("nested_begin")
    write = _op_rule("write")
    test_write = _op_rule("test_write")
    app_bare_session = _op_rule("app_bare_session")
    commit = _op_rule("commit")
    rollback = _op_rule("rollback")
    block_exit = _op_rule("block_exit")
    block_raise = _op_rule("block_raise")
    block_end_explicit = _op_rule("block_end_explicit")
    raw_open = _op_rule("raw_open")
    raw_end = _op_rule("raw_end")
    orm_write = _op_rule("orm_write")
    orm_nested_begin = _op_rule("orm_nested_begin")
    orm_nested_end = _op_rule("orm_nested_end")
    orm_end = _op_rule("orm_end")
    on_commit = _op_rule("on_commit")
    failed_statement_then_commit = _op_rule("failed_statement_then_commit")
    refused = _op_rule("refused")
    rollback_under = _op_rule("rollback_under")
    block_exit_out_of_order = _op_rule("block_exit_out_of_order")

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


# ===================================================================================================
# 2. Threads in a shared sandbox
# ===================================================================================================
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

    def enter(self, thread: int, seq: int) -> None:
        """Called once the transaction is open: the thread holds the sandbox connection's lease."""
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
            session.execute(f"SELECT count(*) FROM {TABLE}").close()  # now the thread holds the lease
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
                cursor.execute(f"SELECT count(*) FROM {TABLE}")  # now the thread holds the lease
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
            sandbox.share(timeout=10)
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


# ===================================================================================================
# 3. Isolation between two sessions outside any sandbox
# ===================================================================================================
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
