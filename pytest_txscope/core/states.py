"""The states of transactions and sessions that the machine (`machine.TxStack`) moves between."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TransactionStateError
from .workers import worker_ident

__all__ = [
    "ACTIVE",
    "OWNER",
    "VIRTUAL",
    "Frame",
    "Lane",
    "Policy",
    "Step",
    "TransactionKind",
    "TransactionState",
]


class TransactionKind(enum.Enum):
    """What ending a transaction does on the server."""

    ROOT = "root"
    """``BEGIN`` ... ``COMMIT`` / ``ROLLBACK``: the only kind that really commits."""
    NESTED = "nested"
    """A ``SAVEPOINT``: commit releases it, rollback rolls back to it."""
    VIRTUAL = "virtual"
    """Joins the enclosing transaction: neither commits nor rolls back (``ensure_transaction()``, or nested
    blocks on an engine created with ``nested="virtual"``)."""


class TransactionState(enum.Enum):
    """Where a transaction is in its life."""

    ACTIVE = "active"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"
    BROKEN = "broken"
    """The server ended it behind the library's back (MySQL DDL, a raw COMMIT): see ``Transaction.failure``."""


ACTIVE = TransactionState.ACTIVE
VIRTUAL = TransactionKind.VIRTUAL


@dataclass(frozen=True)
class Policy:
    """How a session's transactions sit on the connection: the one plug-in point of the sandbox.

    A session that owns its connection uses `OWNER`. A *guest* session shares a connection another session
    holds open in a transaction: its root transaction is a SAVEPOINT on what is open there.
    """

    guest: bool = False
    """The root transaction is a SAVEPOINT on the transaction open on the connection."""
    implicit_joins: bool = False
    """A guest's statements outside blocks join what is open (no savepoint; the sandbox's own session)."""
    protect_statements: bool = False
    """Statements outside blocks run in a savepoint each, so that a failing one leaves the work usable."""
    nested_virtual: bool = False
    """Blocks inside an open transaction join it instead of setting a savepoint (``nested="virtual"``)."""


OWNER = Policy()


class Lane:
    """One session's view of the stack: its outermost and innermost open transactions."""

    __slots__ = ("closed", "innermost", "io", "joined", "owner", "policy", "root")

    def __init__(self, policy: Policy, owner: Any, io: Any) -> None:
        self.policy = policy
        self.owner = owner
        """The session this lane is the view of (its transactions' `Host`)."""
        self.io = io
        """The I/O layer of the connection (its transactions send their statements through it)."""
        self.root: Frame | None = None
        self.innermost: Frame | None = None
        self.joined: Frame | None = None
        """A guest's implicit transaction that joined what is open: it sends nothing and is not on the stack,
        so other sessions' transactions may begin and end around it."""
        self.closed = False

    def require_open(self) -> None:
        """Raise if the session was closed."""
        if not self.closed:
            return
        if self.policy.guest:
            raise TransactionStateError(
                "this session belonged to a sandbox that has ended (a session kept from an earlier test, "
                "such as a scoped_session that was not removed); open a new session in this test"
            )
        raise TransactionStateError("this session is closed; open a new one with engine.session()")

    def frames(self) -> Iterator[Frame]:
        """The session's open transactions, innermost first."""
        tx = self.innermost
        while tx is not None:
            yield tx
            tx = tx.parent


class Frame:
    """The state of one transaction on the stack (`Transaction` adds the methods code calls)."""

    __slots__ = (
        "below",
        "callbacks",
        "depth",
        "failure",
        "implicit",
        "kind",
        "lane",
        "number",
        "owns_session",
        "parent",
        "savepoint",
        "state",
        "thread",
    )

    def __init__(
        self, lane: Lane, kind: TransactionKind, parent: Frame | None, number: int, below: Frame | None
    ) -> None:
        self.lane = lane
        self.kind = kind
        self.parent = parent
        """The transaction of the same session this one was opened in (None for a root)."""
        self.below = below
        """The transaction under this one on the connection, whatever its session (for a guest session's root,
        the host's transaction it sits on)."""
        self.depth: int = 0 if below is None else below.depth + (0 if kind is VIRTUAL else 1)
        """How many savepoints deep this transaction is on the connection."""
        self.number = number
        self.savepoint: str | None = None
        self.state = ACTIVE
        self.failure: str | None = None
        """Why the transaction is BROKEN or was force-ended, for the errors raised when it is used again."""
        self.implicit = False
        """True for the transaction a bare session opens by itself for statements run outside any block."""
        self.callbacks: list[Callable[[], object]] = []
        self.owns_session = False
        """Its session was opened for it (``engine.begin()``): the session closes when it ends."""
        self.thread: int | None = worker_ident()
        """The worker that opened it (a thread, or an asyncio task: see `core.workers`), by ident; None for a
        transaction every worker works in (a sandbox's outer one). On a connection shared between workers, a
        statement waits while another worker's transaction is open above the place where it belongs."""

    @property
    def is_active(self) -> bool:
        """True until the transaction is committed, rolled back or broken."""
        return self.state is ACTIVE

    def describe(self) -> str:
        """Short text naming this transaction in error messages."""
        kind = (
            "root, as a savepoint"
            if self.kind is TransactionKind.ROOT and self.savepoint
            else self.kind.value
        )
        return f"transaction #{self.number} ({kind})"

    def require_active(self, action: str) -> None:
        """Raise `TransactionStateError` unless the transaction is active."""
        if self.state is ACTIVE:
            return
        reason = f": {self.failure}" if self.failure else ""
        raise TransactionStateError(
            f"cannot {action}: {self.describe()} is already {self.state.value}{reason}; "
            "open a new transaction block for more work"
        )


class Step:
    """What a transition asks of the I/O layer once the stack has changed."""

    __slots__ = ("callbacks", "checks", "end")

    def __init__(
        self,
        *,
        end: str | None = None,
        callbacks: Sequence[Callable[[], object]] = (),
        checks: bool = False,
    ) -> None:
        self.end = end
        """``COMMIT`` or ``ROLLBACK``: send it now with what is queued (a root transaction ends)."""
        self.callbacks = callbacks
        """``on_commit`` callbacks to run once the commit is done (an application's top-level commit)."""
        self.checks = checks
        """The queue holds the checks production runs at COMMIT (`TxStack.commit_checks`) and the release of
        an application's top-level savepoint: send it now, before the callbacks run."""
