"""Sharing one connection between threads, statement by statement: the `Lease` (the core's `Gate`).

A thread holds the lease for one statement (with the control statements queued before it) or one transition
of the transaction stack, never for a whole transaction. So a thread that is merely blocked with a transaction
open (a test waiting for its test client's response, with its ORM session's savepoint open) holds nothing.

Each thread's transactions are savepoints stacked on the one connection. A statement belongs at the top of
its own transaction; it must wait while another thread's transaction is open above that place, or it would
land inside that savepoint and be undone by its rollback. Ending a transaction under another thread's open one
waits the same way. A statement that opens a new transaction goes on top and never waits. Every wait is
bounded (the sandbox's ``thread_timeout``): `ConnectionBusyError` names both threads and where each is.

When the sandbox ends, it takes the lease over (`Lease.seize`), displacing a thread still running a statement
after the timeout, and closes it (`Lease.close`), so that a thread that outlived the test cannot reach the
connection later.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

from .bridge import await_, in_bridge
from .core import Channel, Transaction
from .core.machine import TxStack
from .core.states import Frame, Lane, TransactionKind
from .core.workers import TaskWorker, Worker, current_worker, find_worker, thread_of, worker_label
from .errors import ConnectionBusyError, TransactionStateError
from .places import Place, caller_place, describe_place

__all__ = ["Holding", "Lease", "wait_until_idle"]


@dataclass(frozen=True)
class Holding:
    """A worker (thread or asyncio task) that holds a shared connection, as messages name it."""

    thread: Worker
    since: str
    """Where it took the connection (the start of the statement it runs)."""
    now: str | None
    """Where the thread is now, when that is somewhere else; None if the same, or the thread has ended."""
    alive: bool
    running: bool
    """It is sending a statement (or waiting for the server's answer) on the connection now."""

    def describe(self) -> str:
        """``thread 'x' holds since <place>, now at <place>``, or what a thread that ended left behind."""
        if not self.alive:
            return (
                f"{worker_label(self.thread)} took at {self.since} and never gave back: that "
                f"{worker_label(self.thread).partition(' ')[0]} has ended without ending its transaction"
            )
        return f"{worker_label(self.thread)} holds since {self.since}" + (
            f", now at {self.now}" if self.now else ""
        )

    def fix(self) -> str:
        """What to change, for the end of a message."""
        if not self.alive:
            return "end every transaction in the thread that began it (a 'with' block ends it on every path)"
        return "a thread holds it for one statement: that statement is slow, or raise txscope_thread_timeout"


class Lease:
    """Which thread may use a shared connection now: one statement at a time, re-entrant, with a timeout.

    ``stack`` is the connection's transaction stack: `acquire` reads it to tell whether another thread's
    transaction is open above the place where the caller's statement belongs (without one, threads only take
    turns statement by statement).
    """

    def __init__(self, timeout: float, stack: TxStack[Transaction] | None = None) -> None:
        self.stack = stack
        self.timeout = timeout
        self._cond = threading.Condition()
        self.owner: Worker | None = None
        self._since: Place | None = None
        self._entered: tuple[FrameType, int] | None = None
        self._depth = 0
        self.closed = False
        """True once `close` ran: the lease is refused to every thread but its holder."""
        self._sender: Worker | None = None
        self._sending = 0
        self._began: dict[int, Place | None] = {}
        """Where each transaction opened under the lease began (by its number), for messages."""
        self.waiting: set[Worker] = set()
        """The threads waiting for their turn now (for diagnostics, and for tests that force an order)."""
        self.timeouts: list[tuple[Worker, ConnectionBusyError]] = []
        """The thread waited for and the error of each wait that timed out, so that the end of the sandbox can
        tell what the test was told already."""

    def acquire(self, at: Frame | Lane | None = None) -> None:
        """Take the lease for one statement or transition (again, if this thread holds it).

        ``at`` says where the step belongs: the transaction it ends, or the session whose statement it is
        (see `TxStack.blocker`); None for a step that opens a transaction on top. The outermost acquire waits,
        up to the timeout, while another thread holds the lease or has a transaction open above that place.
        """
        me = current_worker()
        if self.owner is me:  # only this worker makes itself the owner: no lock needed to see it
            self._depth += 1
            return
        with self._cond:
            deadline = 0.0
            while True:
                blocker = None
                if self.closed:
                    if not isinstance(at, Frame):
                        raise _ended(me)
                    if self.owner is None or not at.is_active:
                        return  # the sandbox's end rolls (rolled) it back: ending it sends nothing
                elif self.owner is None:
                    if at is not None and self.stack is not None:
                        blocker = self.stack.blocker(at, me.ident or 0)
                    if blocker is None:
                        break
                deadline = deadline or time.monotonic() + self.timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out(me, blocker, at)
                self.waiting.add(me)
                try:
                    self._wait(me, remaining, blocker)
                finally:
                    self.waiting.discard(me)
            self.owner = me
            self._depth = 1
            # Where the holder took it is looked up only for a message: the frame is kept until the release.
            caller = sys._getframe(1)
            self._entered = (caller, caller.f_lasti)

    def opened(self, tx: Frame) -> None:
        """``tx`` was opened by the thread holding the lease: note where, for messages."""
        self._began[tx.number] = caller_place(inspect.currentframe())

    def sending(self, active: bool) -> None:
        """The calling thread starts (True) or stops (False) waiting on the server for a statement (nested:
        control statements go out while a statement is being sent)."""
        me = current_worker()
        if active:
            self._sending = self._sending + 1 if self._sender is me else 1
            self._sender = me
        elif self._sender is me:
            self._sending -= 1
            if self._sending <= 0:
                self._sender = None

    def is_sending(self, thread: Worker) -> bool:
        """Whether ``thread`` is sending a statement on the connection now (or waiting for the answer)."""
        return self._sender is thread

    def release(self) -> None:
        """Give the lease back (once per acquire). A thread that no longer holds it (displaced by `seize`, or
        forgotten by `reset`) changes nothing."""
        with self._cond:
            if self.owner is not current_worker():
                return
            self._depth -= 1
            if self._depth <= 0:
                self.owner = None
                self._since = self._entered = None
                self._depth = 0
                self._cond.notify_all()  # waiters wait for different places: each checks its own

    def reset(self) -> None:
        """Forget the holder (the sandbox is ending and rolls its work back)."""
        with self._cond:
            self.owner = None
            self._since = self._entered = None
            self._depth = 0
            self._cond.notify_all()

    def seize(self, timeout: float | None = None) -> Holding | None:
        """Take the lease to end the sandbox: wait up to ``timeout`` seconds for the statement in flight.

        A holder still there then, or a thread that ended while holding it, is displaced: the calling thread
        takes the lease over, and the displaced holder is returned (None when nobody was displaced).
        """
        me = current_worker()
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            while self.owner is not None and self.owner is not me and self.owner.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.05))  # a thread that ends holding the lease never notifies
            displaced = None if self.owner is None or self.owner is me else self._holding()
            if self.owner is me:
                self._depth += 1
            else:
                self.owner = me
                self._depth = 1
                self._since, self._entered = caller_place(inspect.currentframe()), None
            return displaced

    def close(self) -> None:
        """Refuse the lease to every thread from now on, except the one holding it (the sandbox ending)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # ------------------------------------------------------------------------------------------ messages
    def _holding(self) -> Holding:
        owner = self.owner
        assert owner is not None
        since = describe_place(self._since or _entered_at(self._entered))
        alive = owner.is_alive()
        now = _now(owner)
        return Holding(owner, since, None if now == since else now, alive, alive and self.is_sending(owner))

    def _wait(self, me: Worker, remaining: float, blocker: Frame | None) -> None:
        """Wait (holding ``_cond``) until the holder releases, or at most ``remaining`` seconds.

        A task must not block its thread: that thread's event loop runs the tasks it waits for. Inside the
        bridge it lets its loop run meanwhile; elsewhere, waiting for a task of its own loop would never end,
        so it is told at once instead of after the timeout. So is a thread waiting for a task of a loop that
        this thread runs (a loop it drives with ``run_until_complete``, idle between two calls): that task can
        run only when the thread stops waiting.
        """
        if isinstance(me, TaskWorker) and in_bridge():
            self._cond.release()
            try:
                await_(asyncio.sleep(min(remaining, 0.001)))
            finally:
                self._cond.acquire()
            return
        other = self.owner if blocker is None else find_worker(blocker.thread)
        if other is not None and other is not me and other.is_alive() and thread_of(other) is thread_of(me):
            raise _would_block_loop(me, other, blocker)
        self._cond.wait(remaining)

    def _timed_out(self, me: Worker, blocker: Frame | None, at: Frame | Lane | None) -> Exception:
        here = describe_place(caller_place(inspect.currentframe()))
        if blocker is None:  # another thread was running a statement all along
            holding = self._holding()
            error = ConnectionBusyError(
                f"{worker_label(me)} waited {self.timeout:g}s for the sandbox's connection, which "
                f"{holding.describe()}; {holding.fix()}"
            )
            self.timeouts.append((holding.thread, error))
            return error
        other = find_worker(blocker.thread)
        name = other.name if other is not None else f"#{blocker.thread}"
        label = worker_label(other) if other is not None else f"thread {name!r}"
        began = self._began.get(blocker.number)
        where = f"began at {describe_place(began)}" if began is not None else "began before threads shared it"
        now = _now(other) if other is not None and other.is_alive() else None
        state = f", and is now at {now}" if now else (", and has ended" if other is None else "")
        mine = at if isinstance(at, Frame) else None if at is None else at.innermost
        own = (
            f" (its {mine.describe()} began at {describe_place(self._began[mine.number])})"
            if mine is not None and mine.kind is not TransactionKind.VIRTUAL and mine.number in self._began
            else ""
        )
        error = ConnectionBusyError(
            f"{worker_label(me)} waited {self.timeout:g}s at {here}{own} for {label}'s "
            f"{blocker.describe()} to end: it {where}{state}, and it is open above the transaction "
            f"{me.name!r} works in, so {me.name!r}'s statement would land inside it (and be undone by its "
            "rollback); threads sharing the sandbox's connection stack their transactions, and one ends (or "
            "runs a statement in) its transaction only when no other thread's is open above it: commit or "
            f"close {name!r}'s session sooner, or raise txscope_thread_timeout"
        )
        if other is not None:
            self.timeouts.append((other, error))
        return error


def _entered_at(entered: tuple[FrameType, int] | None) -> Place | None:
    """Where the holder took the lease: its caller as it was then when that is the user's code, else the user's
    frame around it (still inside that call while the holder holds the lease)."""
    if entered is None:
        return None
    frame, offset = entered
    place = caller_place(frame)
    return (frame.f_code, offset) if place is not None and place[0] is frame.f_code else place


def _ended(me: Worker) -> TransactionStateError:
    return TransactionStateError(
        f"{worker_label(me)} used a sandbox that has ended: the test that shared its connection "
        "is over, and everything done in it was rolled back; a thread must not outlive the test "
        "whose sandbox it uses: join threads, shut executors down and stop servers before the test "
        "ends"
    )


def _would_block_loop(me: Worker, other: Worker, blocker: Frame | None) -> ConnectionBusyError:
    what = (
        "the connection"
        if blocker is None
        else f"its {blocker.describe()} to end (open above the transaction {me.name!r} works in)"
    )
    if isinstance(me, TaskWorker):
        return ConnectionBusyError(
            f"{worker_label(me)} must wait for {worker_label(other)}, on the same event loop, for {what}; it "
            "calls the database synchronously here, so waiting would block the loop that runs the other task, "
            "which could then never end its work: make the call from async code (an AsyncSession of a pinned "
            "AsyncEngine, or pytest-txscope's AsyncEngine), or await the other task first"
        )
    return ConnectionBusyError(
        f"{worker_label(me)} must wait for {worker_label(other)}, which runs on an event loop of this same "
        f"thread, for {what}; that loop runs only when this thread lets it (it is not running while this code "
        "runs), so the task could never end its work while the thread waited: run the call on that loop (in "
        "a coroutine given to its run_until_complete(), or through the async API), or let the task end its "
        "transaction first"
    )


def _now(thread: Worker) -> str | None:
    """Where a running thread is now, for a message; None when that cannot be read (and for a task)."""
    frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
    try:
        return describe_place(caller_place(frame)) if frame is not None else None
    except AttributeError:
        # Walking another running thread's frames is not safe on CPython 3.11 (a CI run read a function
        # object as a frame's f_back): the message goes without this detail rather than fail.
        return None


def wait_until_idle(channel: Channel, timeout: float) -> bool:
    """Wait until no step runs on ``channel`` without its gate (one the owner thread of a sandbox began before
    a second thread set the gate: see `Channel.take_turn`); False if one still does after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not channel.idle():
        if time.monotonic() >= deadline:
            return False
        if in_bridge():  # the owner may be a task of this loop, suspended in its step: let it run
            await_(asyncio.sleep(0.0005))
        else:
            time.sleep(0.0005)  # only while the owner finishes what it began: once per sandbox at most
    return True
