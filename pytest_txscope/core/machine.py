"""The transaction state machine of one connection, without I/O.

Every session that uses a connection (its owner, and in a sandbox the guests that share it) keeps its
transactions on one stack: `TxStack`. Its methods are the transitions, declared here and nowhere else:

==================  ================================================================  ==========================
transition          when it happens                                                    control SQL it queues
==================  ================================================================  ==========================
``begin``           a session opens its root transaction (a block, or a first          ``BEGIN``; a guest's:
                    statement outside blocks)                                          ``SAVEPOINT``
``begin_nested``    a block or ``begin_nested()`` inside an open transaction           ``SAVEPOINT`` (or nothing:
                                                                                       virtual)
``join``            ``ensure_transaction()`` inside an open transaction                nothing
``commit``          ``commit()`` or a clean exit of the block                          ``RELEASE`` (a root:
                                                                                       ``COMMIT``, sent at once)
``checks_failed``   the checks sent with a guest root's commit failed (deferred        ``ROLLBACK TO`` +
                    constraints): the application's transaction is rolled back         ``RELEASE``
``rollback``        ``rollback()``, an exception leaving the block, a session closing  ``ROLLBACK TO`` +
                                                                                       ``RELEASE`` (a root:
                                                                                       ``ROLLBACK``, at once)
``take_over``       a block begins where statements opened an implicit transaction    nothing
``statement``       a statement is about to be sent                                   hands out what is queued
``protect``         a statement outside blocks runs in its own savepoint               ``SAVEPOINT`` / ``RELEASE``
                                                                                       / ``ROLLBACK TO``
``break_all``       the connection was lost, or the server ended the transaction       drops the queue
                    behind the library's back (an escape)
``end_above``       a sandbox ends: what its guests left open is rolled back with it   nothing
==================  ================================================================  ==========================

The machine never talks to the driver: a transition changes the stack, queues control SQL for the next round
trip (``BEGIN`` and savepoints are sent lazily, ``RELEASE`` rides with the next statement) and returns a `Step`
that says what the I/O layer must send at once (``COMMIT`` / ``ROLLBACK`` of a root) and which callbacks to
run afterwards. Illegal transitions raise `TransactionStateError` naming the fix (the checks,
and the thread rule, are `StackRules` in `core/rules.py`). The sync `Channel` drives it; an async twin drives
the same machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from ..errors import TransactionStateError
from .rules import StackRules
from .states import ACTIVE, VIRTUAL, Frame, Lane, Step, TransactionKind, TransactionState

__all__ = ["TxStack"]


F = TypeVar("F", bound=Frame)


class TxStack(StackRules, Generic[F]):
    """The transactions open on one connection, across every session sharing it, and the control SQL queued
    for the next round trip. ``sql`` gives the statement texts (a dialect); ``make`` builds transactions."""

    def __init__(self, sql: _ControlSQL, make: Callable[[Lane, TransactionKind, F | None, int, F | None], F]):
        self.sql = sql
        self.make = make
        self.top: F | None = None
        """The most recently opened transaction still open on this connection, whatever its session."""
        self.counter = 0
        """Numbers transactions for messages, unique on this connection."""
        self.outbox: list[str] = []
        """Control statements queued for the next round trip."""
        self._opening: list[Frame | None] = []
        """For each queued statement, the transaction whose SAVEPOINT (or BEGIN) it is: dropped, with what
        follows, if that transaction rolls back before it was sent, or alone if it commits before."""
        self.server_open = False
        """True once BEGIN reached the server and until COMMIT/ROLLBACK."""
        self.escaped = False
        """True once something committed behind the library's back (work may have escaped a rollback)."""
        self.begin_sql = sql.begin_statement()
        self.commit_checks: Sequence[str] = ()
        """Statements that check, before a guest's root is released (the application's top-level commit), what
        production checks at COMMIT: PostgreSQL's deferred constraints. Set by the I/O layer; empty: none."""

    # ----------------------------------------------------------------------------------------- begin
    def begin(self, lane: Lane, *, implicit: bool = False) -> F:
        """A session opens its root transaction: ``BEGIN`` for a session that owns the connection, a SAVEPOINT
        on what is open for a guest (refused when nothing is open: its sandbox has ended)."""
        lane.require_open()
        self.counter += 1
        below = self.top
        if lane.policy.guest and implicit and lane.policy.implicit_joins:
            tx = self.make(lane, VIRTUAL, None, self.counter, below)
            tx.implicit = True
            lane.root = lane.innermost = lane.joined = tx
            return tx
        if lane.policy.guest and (below is None or below.state is not ACTIVE):
            raise TransactionStateError(
                "this session shares a sandbox connection whose transaction is no longer open; the sandbox "
                "has ended (or was broken): open sessions inside the sandbox's lifetime"
            )
        tx = self.make(lane, TransactionKind.ROOT, None, self.counter, below)
        tx.implicit = implicit
        if lane.policy.guest:
            self._set_savepoint(tx)
        else:
            self._queue(self.begin_sql, tx)
        lane.root = tx
        return self._push(tx)

    def begin_nested(self, parent: F) -> F:
        """A block opens inside ``parent``: a SAVEPOINT, or a virtual transaction with ``nested="virtual"``.
        Refused when another session's transaction was opened after ``parent`` and is still open."""
        lane = parent.lane
        if parent is not lane.joined:
            self.check_on_top(parent, "open a transaction inside")
        self.counter += 1
        below = self.top if parent is lane.joined else parent
        if lane.policy.nested_virtual:
            return self._push(self.make(lane, VIRTUAL, parent, self.counter, below))
        tx = self.make(lane, TransactionKind.NESTED, parent, self.counter, below)
        self._set_savepoint(tx)
        return self._push(tx)

    def join(self, parent: F) -> F:
        """``ensure_transaction()`` inside ``parent``: a virtual transaction that sends nothing. It goes on top
        of whatever is open on the connection, which may be another session's transaction opened after
        ``parent``: below ``parent`` itself, that one would drop out of the connection's stack."""
        self.counter += 1
        return self._push(self.make(parent.lane, VIRTUAL, parent, self.counter, self.top))

    def take_over(self, tx: F) -> bool:
        """A block takes over the implicit transaction of its session: its work is kept (True). A guest's
        joined implicit transaction sends nothing: it ends, and the block needs a real root (False)."""
        if tx.kind is not VIRTUAL:
            tx.implicit = False
            return True
        tx.state = TransactionState.COMMITTED
        self._pop(tx)  # holds nothing: a joined transaction sends nothing
        return False

    def _set_savepoint(self, tx: F) -> None:
        # Named by depth, not by a counter: the same few texts recur, so psycopg's prepared-statement cache is
        # not churned by ever-new SAVEPOINT texts (each new text can trigger DEALLOCATE ALL).
        tx.savepoint = f"txscope_sp{tx.depth}"
        self._queue(self.sql.savepoint(tx.savepoint), tx)

    # ---------------------------------------------------------------------------------------- commit
    def commit(self, tx: F) -> Step:
        """``tx`` commits (after `check_commit`): a virtual one just ends; a savepoint is released (or never
        sent, if nothing ran in it) and its callbacks pass to its parent, or, for a guest's root (the
        application's commit), run now; a root queues nothing more and asks for ``COMMIT``."""
        self._pop(tx)
        if tx.kind is VIRTUAL:
            tx.state = TransactionState.COMMITTED
            return _NOTHING
        if tx.savepoint is None:  # the root of a session that owns its connection
            return _COMMIT
        checks = False
        if not self.sent(tx):
            self.outbox.pop()  # never sent: nothing ran inside it
            self._opening.pop()
        else:
            checks = tx.parent is None and bool(self.commit_checks)
            for statement in self.commit_checks if checks else ():
                self._queue(statement)
            self._queue(self.sql.release(tx.savepoint))
        tx.state = TransactionState.COMMITTED
        if tx.parent is not None:
            tx.parent.callbacks.extend(tx.callbacks)
            return _NOTHING
        return Step(callbacks=tx.callbacks, checks=checks)

    def sent(self, tx: Frame) -> bool:
        """Whether the SAVEPOINT of ``tx`` was sent (or may be, queued under later statements): something ran in
        it. False only while it is the last thing queued."""
        return not (self._opening and self._opening[-1] is tx)

    def checks_failed(self, tx: F) -> None:
        """The `commit_checks` sent before releasing a guest's root failed (a deferred constraint is violated):
        the server still holds its savepoint, in an aborted state. The application's transaction is rolled back,
        as production's failed COMMIT would roll it back, and its callbacks dropped."""
        assert tx.savepoint is not None
        tx.state = TransactionState.ROLLED_BACK
        tx.failure = "its commit failed a check production makes at COMMIT, and it was rolled back"
        tx.callbacks.clear()
        self.forget_queue()  # the statements after the failed check did not run
        self._queue(self.sql.rollback_to(tx.savepoint))
        self._queue(self.sql.release(tx.savepoint))

    def root_ended(self, tx: F, *, committed: bool) -> Sequence[Callable[[], object]]:
        """The server answered the ``COMMIT`` of a root (or it failed): its callbacks run only if it
        committed."""
        tx.state = TransactionState.COMMITTED if committed else TransactionState.ROLLED_BACK
        return tx.callbacks if committed else []

    # -------------------------------------------------------------------------------------- rollback
    def rollback(self, tx: F) -> Step:
        """``tx`` rolls back, with everything opened above it on the connection: its session's transactions
        are rolled back, other sessions' become BROKEN (their work went with it). A savepoint that was never
        sent is dropped with what was queued after it; a sent one queues ``ROLLBACK TO`` and ``RELEASE``; the
        root of an owning session asks for ``ROLLBACK``."""
        if tx is tx.lane.joined:  # off the connection's stack: nothing to send
            tx.state = TransactionState.ROLLED_BACK
            tx.callbacks.clear()
            self._pop(tx)
            return _NOTHING
        chain = self._chain_to(tx)
        if chain is None:  # BROKEN, and no longer on the stack: only the session's bookkeeping is left
            return self.unwind(tx)
        target = None  # the outermost real (root or savepoint) transaction among tx and what is above it
        for t in chain:
            if t.kind is not VIRTUAL:
                target = t
        for t in chain:
            self._roll_back_one(t, tx)
        self.top = tx.below  # type: ignore[assignment]  # below of an F is an F: the stack holds one type
        if target is None or tx.state is TransactionState.BROKEN:
            return _NOTHING
        if target.savepoint is None:  # the root of a session that owns its connection
            return _ROLLBACK
        if target in self._opening:
            unsent = self._opening.index(target)
            del self.outbox[unsent:]  # never sent: drop it and all queued after it
            del self._opening[unsent:]
        else:
            # Everything queued was queued after the savepoint was sent; rolling back to it discards it.
            self.forget_queue()
            self._queue(self.sql.rollback_to(target.savepoint))
            self._queue(self.sql.release(target.savepoint))
        return _NOTHING

    def _chain_to(self, tx: F) -> list[F] | None:
        """The transactions from the top of the stack down to ``tx``, ``tx`` last; None for a BROKEN ``tx``
        that is no longer on the stack."""
        chain: list[F] = []
        inner = self.top
        while inner is not None and inner is not tx:
            chain.append(inner)
            inner = inner.below  # type: ignore[assignment]  # the stack holds one type
        if inner is None:
            if tx.state is TransactionState.BROKEN:
                return None
            raise TransactionStateError(
                f"{tx.describe()} is not open on this connection: it ended with a transaction it was opened in; "
                "open a new transaction block for more work"
            )
        chain.append(tx)
        return chain

    def _roll_back_one(self, t: Frame, cause: Frame) -> None:
        if t.state is ACTIVE:
            if t.lane is cause.lane:
                t.state = TransactionState.ROLLED_BACK
            else:
                t.state = TransactionState.BROKEN
                t.failure = (
                    f"it was rolled back when {cause.describe()}, opened before it by another session on the "
                    "same connection, rolled back"
                )
        t.callbacks.clear()
        if t.lane is cause.lane:
            lane = t.lane
            if lane.innermost is t:
                lane.innermost = t.parent
                if t.parent is None:
                    lane.root = None

    def unwind(self, tx: F) -> Step:
        """A BROKEN transaction leaves its session (the server ended it already: nothing to send)."""
        lane = tx.lane
        if lane.innermost is tx:
            lane.innermost = tx.parent
            if tx.parent is None:
                lane.root = None
        return _NOTHING

    # ------------------------------------------------------------------------------------ statements
    def statement(self) -> list[str]:
        """A statement is about to be sent: hand out (and forget) the queued control SQL, to send first. When
        it begins with `begin_sql`, the I/O layer calls `opened` once it went through."""
        outbox, self.outbox = self.outbox, []
        self._opening = []
        return outbox

    def opened(self) -> None:
        """The BEGIN reached the server."""
        self.server_open = True

    def end_root(self, end: str) -> list[str]:
        """A root transaction ends: what is queued, then ``end`` (``COMMIT`` or ``ROLLBACK``), to send now.
        A transaction that never reached the server sends nothing."""
        if not self.server_open:
            self.forget_queue()
            return []
        statements = self.outbox if end == "COMMIT" else []
        statements.append(end)
        self.forget_queue()
        self.server_open = False
        return statements

    def protect(self) -> str:
        """A statement outside blocks is about to run in a savepoint of its own: queue it; the name returned
        goes to `protected` afterwards."""
        name = f"txscope_stmt{self.top.depth + 1 if self.top else 1}"
        self._queue(self.sql.savepoint(name))
        return name

    def protected(self, name: str, *, failed: bool) -> None:
        """The protected statement ran: release its savepoint, after rolling back to it if it failed (and the
        server still holds the transaction)."""
        if failed:
            if not self.server_open:
                return
            self._queue(self.sql.rollback_to(name))
        self._queue(self.sql.release(name))

    # -------------------------------------------------------------------------------- faults and end
    def break_all(self, reason: str, *, escaped: bool = True) -> None:
        """The server no longer holds our transaction (the connection was lost, or something committed or rolled
        back behind the library's back): every open transaction becomes BROKEN with ``reason``.
        ``escaped=False`` when nothing can have been committed (a lost connection, a ROLLBACK)."""
        self.escaped = self.escaped or escaped
        tx = self.top
        while tx is not None:
            if tx.state is ACTIVE:
                tx.state = TransactionState.BROKEN
                tx.failure = reason
                tx.callbacks.clear()
            tx = tx.below  # type: ignore[assignment]  # the stack holds one type
        self.forget()

    def forget(self) -> None:
        """The root's end failed on the wire: nothing is queued or open on the server any more."""
        self.forget_queue()
        self.server_open = False

    def forget_queue(self) -> None:
        """Drop what is queued (what it would do is undone, or was never needed)."""
        self.outbox = []
        self._opening = []

    def end_above(self, base: F, guests: list[Lane]) -> None:
        """A sandbox ends: what its guests left open above ``base`` is marked rolled back (the rollback of
        ``base`` undoes it) and their sessions closed, so that none goes on sending statements to a connection
        back in the pool."""
        tx = self.top
        while tx is not None and tx is not base:
            _mark_ended(tx)
            tx.lane.innermost = tx.lane.root = None
            tx = tx.below  # type: ignore[assignment]  # the stack holds one type
        self.top = base
        for lane in guests:
            if lane.joined is not None:
                _mark_ended(lane.joined)
            lane.joined = lane.innermost = lane.root = None
            lane.closed = True

    # ---------------------------------------------------------------------------------------- helpers
    def _queue(self, sql: str, opens: Frame | None = None) -> None:
        self.outbox.append(sql)
        self._opening.append(opens)

    def _push(self, tx: F) -> F:
        tx.lane.innermost = tx
        self.top = tx
        return tx

    def _pop(self, tx: F) -> None:
        lane = tx.lane
        if tx is lane.joined:
            lane.joined = None
        lane.innermost = tx.parent
        if tx.parent is None:
            lane.root = None
        if self.top is tx:
            self.top = tx.below  # type: ignore[assignment]  # the stack holds one type


_NOTHING = Step()
"""A transition that asks nothing of the I/O layer (never changed: each Step is read once)."""
_COMMIT = Step(end="COMMIT")
_ROLLBACK = Step(end="ROLLBACK")


class _ControlSQL(Protocol):
    """The statement texts the machine queues (a dialect provides them)."""

    def begin_statement(self) -> str: ...
    def savepoint(self, name: str) -> str: ...
    def release(self, name: str) -> str: ...
    def rollback_to(self, name: str) -> str: ...


def _mark_ended(tx: Frame) -> None:
    if tx.state is ACTIVE:
        tx.state = TransactionState.ROLLED_BACK
        tx.failure = "it was rolled back when the sandbox ended"
    tx.callbacks.clear()
