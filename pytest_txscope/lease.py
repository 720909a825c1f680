"""Sharing one connection between threads: the `Lease` says which thread may use it now (the core's `Gate`).

Threads take turns: a thread holds the lease for the whole of its transaction, others wait, and a wait that
lasts too long raises `ConnectionBusyError` naming the holder, where it took the connection and where it is now.
When the sandbox ends, it takes the lease over (`Lease.seize`), displacing a holder that did not give it back in
time, and closes it (`Lease.close`), so that a thread that outlived the test cannot reach the connection later.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
from dataclasses import dataclass

from .errors import ConnectionBusyError, TransactionStateError
from .places import Place, caller_place, describe_place

__all__ = ["Holding", "Lease"]


@dataclass(frozen=True)
class Holding:
    """A thread that holds a shared connection, as messages name it."""

    thread: threading.Thread
    since: str
    """Where it took the connection (the start of its transaction)."""
    now: str | None
    """Where the thread is now, when that is somewhere else; None if the same, or the thread has ended."""
    alive: bool
    running: bool
    """It is sending a statement (or waiting for the server's answer) on the connection now."""

    def describe(self) -> str:
        """``thread 'x' holds since <place>, now at <place>``, or what a thread that ended left behind."""
        if not self.alive:
            return (
                f"thread {self.thread.name!r} took at {self.since} and never gave back: that thread has ended "
                "without ending its transaction"
            )
        return f"thread {self.thread.name!r} holds since {self.since}" + (
            f", now at {self.now}" if self.now else ""
        )

    def fix(self) -> str:
        """What to change, for the end of a message."""
        if not self.alive:
            return "end every transaction in the thread that began it (a 'with' block ends it on every path)"
        return (
            "a thread holds it for the whole of its transaction (or ORM session transaction): commit or roll "
            "back sooner there, or raise txscope_thread_timeout"
        )


class Lease:
    """Which thread may use a shared connection now: one at a time, re-entrant, with a timeout.

    A guest session holds it for the whole of its top-level transaction; a statement sent outside one holds it
    for that statement. Waiting longer than ``timeout`` raises `ConnectionBusyError` naming the holder.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._cond = threading.Condition()
        self.owner: threading.Thread | None = None
        self._since: Place | None = None
        self._depth = 0
        self.closed = False
        """True once `close` ran: the lease is refused to every thread but its holder."""
        self._sender: threading.Thread | None = None
        self._sending = 0
        self.timeouts: list[tuple[threading.Thread, ConnectionBusyError]] = []
        """The holder and the error of each wait that timed out, so that the end of the sandbox can tell what
        the test was told already."""

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lease (again, if this thread holds it), waiting up to ``timeout`` seconds."""
        me = threading.current_thread()
        with self._cond:
            if self.owner is me:
                self._depth += 1
                return
            limit = self.timeout if timeout is None else timeout
            deadline = time.monotonic() + limit
            while self.owner is not None and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holding = self._holding()
                    error = ConnectionBusyError(
                        f"thread {me.name!r} waited {limit:g}s for the sandbox's connection, which "
                        f"{holding.describe()}; {holding.fix()}"
                    )
                    self.timeouts.append((holding.thread, error))
                    raise error
                self._cond.wait(remaining)
            if self.closed:
                raise TransactionStateError(
                    f"thread {me.name!r} used a sandbox that has ended: the test that shared its connection "
                    "is over, and everything done in it was rolled back; a thread must not outlive the test "
                    "whose sandbox it uses: join threads, shut executors down and stop servers before the test "
                    "ends"
                )
            self.owner = me
            self._depth = 1
            self._since = caller_place(inspect.currentframe())

    def sending(self, active: bool) -> None:
        """The calling thread starts (True) or stops (False) waiting on the server for a statement (nested:
        control statements go out while a statement is being sent)."""
        me = threading.current_thread()
        if active:
            self._sending = self._sending + 1 if self._sender is me else 1
            self._sender = me
        elif self._sender is me:
            self._sending -= 1
            if self._sending <= 0:
                self._sender = None

    def is_sending(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is sending a statement on the connection now (or waiting for the answer)."""
        return self._sender is thread

    def release(self) -> None:
        """Give the lease back (once per acquire). A thread that no longer holds it (displaced by `seize`, or
        forgotten by `reset`) changes nothing."""
        with self._cond:
            if self.owner is not threading.current_thread():
                return
            self._depth -= 1
            if self._depth <= 0:
                self.owner = None
                self._since = None
                self._depth = 0
                self._cond.notify()

    def reset(self) -> None:
        """Forget the holder (the sandbox is ending and rolls its work back)."""
        with self._cond:
            self.owner = None
            self._since = None
            self._depth = 0
            self._cond.notify_all()

    def seize(self, timeout: float | None = None) -> Holding | None:
        """Take the lease to end the sandbox: wait up to ``timeout`` seconds for the holder to give it back.

        A holder still there then, or a thread that ended while holding it, is displaced: the calling thread
        takes the lease over, and the displaced holder is returned (None when nobody was displaced).
        """
        me = threading.current_thread()
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
                self._since = caller_place(inspect.currentframe())
            return displaced

    def close(self) -> None:
        """Refuse the lease to every thread from now on, except the one holding it (the sandbox ending)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _holding(self) -> Holding:
        owner = self.owner
        assert owner is not None
        since = describe_place(self._since)
        alive = owner.is_alive()
        frame = sys._current_frames().get(owner.ident) if alive and owner.ident is not None else None
        now = describe_place(caller_place(frame)) if frame is not None else None
        return Holding(owner, since, None if now == since else now, alive, alive and self.is_sending(owner))
