"""The model of tests/contract/test_sandbox_machine.py: the stack of transactions open on the sandbox's
connection, whatever their session, and which steps are valid on it now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from pytest_txscope import Session, Transaction, TransactionState

MAX_FRAMES = 6  # transactions open at once on the sandbox connection, all sessions together

COMMITTED = TransactionState.COMMITTED
ROLLED_BACK = TransactionState.ROLLED_BACK
BROKEN = TransactionState.BROKEN
Draw = Callable[[st.SearchStrategy[Any]], Any]


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


class SandboxModel:
    """The model's bookkeeping, and what it knows: which session is where on the stack, what may be refused,
    rolled back under others, or run next (`valid_ops`). `SandboxMachine` holds the state and runs the steps."""

    frames: list[Frame]
    base: dict[int, int]
    """The view of the sandbox's own (outer) transaction."""
    ts: Session | None
    """The test's session (``sandbox.session()``)."""
    lib_txs: list[Transaction]
    expected_fired: list[int]

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
