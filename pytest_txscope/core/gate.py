"""What a connection shared between threads waits on: the `Gate` a channel holds for one step at a time."""

from __future__ import annotations

from typing import Protocol

from .states import Frame, Lane

__all__ = ["Gate"]


class Gate(Protocol):
    """A connection shared between threads (a sandbox that other threads use): which thread may use it now.

    It is held for one statement (with the control statements queued before it) or one transition of the
    stack, never for a whole transaction; the sandbox's thread lease implements it.
    """

    def acquire(self, at: Frame | Lane | None = None) -> None:
        """Wait for (or re-enter) the calling thread's turn. ``at`` is where the step belongs: the transaction
        it ends, or the session whose statement it is (see `TxStack.blocker`); None when it opens a new
        transaction on top."""

    def release(self) -> None:
        """End one `acquire` of the calling thread."""

    def opened(self, tx: Frame) -> None:
        """The calling thread opened ``tx`` (for messages naming where it began)."""

    def sending(self, active: bool) -> None:
        """The calling thread starts (True) or stops (False) waiting on the server for a statement."""
