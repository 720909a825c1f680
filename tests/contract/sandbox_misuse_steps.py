"""The steps of tests/contract/test_sandbox_machine.py that go against the stack on purpose: invalid orders
across sessions (refused with `TransactionStateError`, nothing changes), a transaction rolled back with other
sessions' transactions above it, a block left while transactions opened after it are open (documented: those
become BROKEN, or are rolled back with an error saying so), and a failed statement followed by a commit.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

from pytest_txscope import Engine, Session, TransactionStateError

from .machines import LIB_SQL, Db, Write, _BoomError, _check
from .sandbox_model import BROKEN, COMMITTED, ROLLED_BACK, Draw, SandboxModel


class SandboxMisuseSteps(SandboxModel):
    """Steps on the model's stack; `SandboxMachine` provides the state and ``raw_write``."""

    db: Db
    app: Engine
    ts: Session | None
    idle_raw: list[Any]

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
