"""The rules that say whether a step of the transaction state machine may happen now: the checks that refuse an
illegal transition (naming the fix), and, on a connection shared between threads, which transaction of
another thread a step must wait for (`StackRules.blocker`). Read-only: they never change the stack."""

from __future__ import annotations

from ..errors import TransactionStateError
from .states import ACTIVE, VIRTUAL, Frame, Lane

__all__ = ["StackRules"]


class StackRules:
    """The checks of `pytest_txscope.core.machine.TxStack`, which inherits them; they read only ``top``."""

    top: Frame | None
    """The most recently opened transaction still open on the connection, whatever its session."""

    def check_commit(self, tx: Frame) -> None:
        """Refuse to commit ``tx`` while a transaction opened inside it (or, on a shared connection, another
        session's opened after it) is open, or once its session no longer has it."""
        inner = tx.lane.innermost
        if inner is None:  # its session was closed (or ended it) without marking it
            tx.lane.require_open()
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: its session no longer has it open; open a new transaction "
                "block for more work"
            )
        if inner is not tx:
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: {inner.describe()}, opened inside it, is still "
                "active; commit or roll back the inner transaction first"
            )
        if tx.kind is not VIRTUAL:
            self.check_on_top(tx, "commit")

    def check_on_top(self, tx: Frame, action: str) -> None:
        """Refuse to end (or open inside) ``tx`` while another session's transaction opened after it is open."""
        top = self.top
        if top is tx or top is None or top.lane is tx.lane:
            return
        raise TransactionStateError(
            f"cannot {action} {tx.describe()}: {top.describe()} of another session sharing this connection was "
            "opened after it and is still open; sessions sharing a connection (in a sandbox) must end their "
            "transactions in reverse order of opening"
        )

    def check_executable(self, tx: Frame) -> None:
        """Refuse a statement (or a block) on ``tx`` unless it is its session's innermost real transaction."""
        tx.require_active("run a statement")
        lane = tx.lane
        lane.require_open()
        for inner in lane.frames():
            if inner is tx:
                return
            if inner.kind is not VIRTUAL:
                break
        raise TransactionStateError(
            f"cannot use {tx.describe()}: {lane.innermost.describe() if lane.innermost else 'nothing'}, "
            "opened inside it, is still active; use the innermost transaction, or end it first"
        )

    def blocker(self, at: Frame | Lane, thread: int) -> Frame | None:
        """On a connection shared between threads: the transaction of another thread open above the place
        where ``thread``'s next step belongs, which that step must wait for (None: it may go now).

        ``at`` is the transaction the step ends, or the session whose statement (or nested block) it is: that
        belongs at the session's innermost real transaction. A session with none joins what is open (the
        sandbox's own session): its statement belongs at the thread's topmost transaction, or the sandbox's.
        A step that opens a new transaction goes on top and never asks. Transactions of the same thread above
        the place do not count: waiting for them would wait for itself (the checks above raise instead).
        """
        if isinstance(at, Lane):
            place = next((f for f in at.frames() if f.kind is not VIRTUAL), None)
            if place is None:
                top = self.top
                if top is None or top.thread is None or top.thread == thread:
                    return None
                return top
            at = place
        if at.state is not ACTIVE or at is at.lane.joined:
            return None  # nothing to send there: the machine's own checks decide
        t: Frame | None = self.top
        while t is not None and t is not at:
            if t.thread is not None and t.thread != thread:
                return t
            t = t.below
        return None
