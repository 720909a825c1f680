"""How a session carries out what its transactions ask (their `Host`): ending them, opening nested ones, entering
and leaving their ``with`` blocks, through the gate of a connection shared between threads."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ..bridge import await_
from ..errors import TransactionStateError
from .channel import Channel
from .commit_checks import arm_checks, send_checks
from .context import Scope, current_scope, push_scope, reset_scope
from .hooks import COMMIT_CAPTURES
from .machine import TxStack
from .states import ACTIVE, Lane, Step, TransactionKind, TransactionState
from .transaction import Transaction
from .workers import worker_ident

__all__ = ["SessionHost"]


class SessionHost:
    """The `Host` methods of `pytest_txscope.core.session.Session`, which inherits them."""

    lane: Lane
    """The session's view of the connection's transaction stack."""
    _channel: Channel
    _stack: TxStack[Transaction]
    engine: Any
    """The engine the session came from (None for ``Session(conn)``)."""

    @property
    def closed(self) -> bool:
        """True once the session was closed."""
        raise NotImplementedError  # the session's

    @property
    def transaction(self) -> Transaction | None:
        """The innermost open transaction, or None."""
        raise NotImplementedError  # the session's

    def close(self) -> None:
        """Roll back whatever is open and give the connection back."""
        raise NotImplementedError  # the session's

    def check_usable(self, tx: Transaction) -> None:
        """Refuse a statement on ``tx`` unless it is the session's innermost real transaction."""
        self._stack.check_executable(tx)

    def open_inside(self, tx: Transaction) -> Transaction:
        """Open a transaction nested in ``tx`` (`Transaction.begin_nested`)."""
        return self.open_in_turn(self.lane, lambda: self._nest_in(tx))

    def _nest_in(self, tx: Transaction) -> Transaction:
        inner = self.transaction
        if inner is not None and inner is not tx:
            # Only virtual transactions (joined ones) may be open inside this one: the new one goes inside
            # them, as they send nothing, so that the connection's stack stays one line.
            self._stack.check_executable(tx)
            return self._stack.begin_nested(inner)
        return self._stack.begin_nested(tx)

    def open_in_turn(self, at: Lane | None, open_tx: Callable[[], Transaction]) -> Transaction:
        """Run ``open_tx`` in the calling thread's turn on the connection (``at`` as in `Gate.acquire`), and
        tell a shared connection's gate where the transaction it opened began."""
        gate = self._channel.take_turn(at)
        try:
            tx = open_tx()
            if gate is not None:
                gate.opened(tx)
            return tx
        finally:
            self._channel.end_turn(gate)

    def end(self, tx: Transaction, *, commit: bool) -> None:
        """Commit or roll back ``tx`` (`Transaction.commit`, `Transaction.rollback`, a block's end)."""
        gate = self._channel.take_turn(tx)  # waits while another thread's transaction is open above it
        try:
            # Unless the end of the sandbox ended it meanwhile (a thread that outlived its test).
            ended = gate is not None and tx.state is TransactionState.ROLLED_BACK
            callbacks = None if ended else self._end(tx, commit)
        finally:
            self._channel.end_turn(gate)
        if callbacks is not None:  # a top-level commit: after the gate, as a callback may wait for a thread
            if tx.owns_session:
                self.close()
            if COMMIT_CAPTURES:  # the plugin's db_capture_on_commit: collected instead of run now
                if callbacks:
                    COMMIT_CAPTURES[-1](list(callbacks))
                return
            _fire(callbacks)

    def _end(self, tx: Transaction, commit: bool) -> Sequence[Callable[[], object]] | None:
        """End ``tx``; return the callbacks to fire when it was a top-level commit (None otherwise)."""
        if not commit:
            self._rollback(tx)
            return None
        self._stack.check_commit(tx)
        if tx.kind is not TransactionKind.VIRTUAL and self._channel.failed():
            self._rollback(tx)
            raise TransactionStateError(
                f"cannot commit {tx.describe()}: a statement in it failed and PostgreSQL aborts the "
                "transaction until it is rolled back, so it was rolled back; catch errors inside a nested "
                "block (with tx.begin_nested(): ...) to keep the rest of the work"
            )
        if tx.parent is None and self.lane.policy.guest:
            arm_checks(self._channel, tx)
        step = self._stack.commit(tx)
        callbacks = step.callbacks
        if step.end is not None:
            callbacks = self._commit_root(tx, step)
        elif step.checks:
            try:
                send_checks(self._channel, tx)
            except Exception:
                if tx.owns_session:
                    self.close()
                raise
        if tx.parent is None and tx.kind is not TransactionKind.VIRTUAL:
            return callbacks
        return None

    def enter_block(self, tx: Transaction, opened_by: object | None) -> None:
        """Make ``tx`` current for its ``with`` block (`Transaction.enter`)."""
        if self.lane.innermost is not tx:
            self._stack.check_executable(tx)
        tx.block_token = push_scope(self, tx, opened_by)

    def exit_block(self, tx: Transaction, exc: BaseException | None) -> None:
        """End the ``with`` block of ``tx``: commit on a clean exit, roll back on an exception; a block left
        out of order rolls back what was opened inside it too, and raises."""
        token, tx.block_token = tx.block_token, None
        if tx.forced:
            # An enclosing block already ended (out of order) and rolled this one back.
            if exc is None:
                raise TransactionStateError(
                    f"{tx.failure or tx.describe() + ' was already rolled back'}; leave inner blocks before outer "
                    "ones, in the thread or task that opened them"
                )
            return
        scope = current_scope()  # taken before the reset: _end_block tells an in-order exit by it
        if token is not None:
            # Before anything ends, so that a block exited in another thread or task ends nothing: the token
            # knows where it was entered, and the block stays open for that thread or task to end.
            try:
                reset_scope(token)
            except ValueError:
                tx.block_token = token
                raise TransactionStateError(
                    f"the block of {tx.describe()} was exited in a thread or asyncio task other than the one that "
                    "entered it, and was left open; end each block in the thread or task that opened it"
                ) from None
        error: TransactionStateError | None = None
        try:
            if tx.state is TransactionState.BROKEN:
                self._channel.apply(self._stack.unwind(tx))
                if exc is None:
                    error = TransactionStateError(
                        f"{tx.describe()} cannot commit: {tx.failure}; "
                        "its work is not where you expect it, and the transaction is gone"
                    )
            elif tx.state is ACTIVE:
                error = self._end_block(tx, exc, scope)
        finally:
            if tx.owns_session:
                self.close()
        if error is not None:
            raise error

    def _commit_root(self, tx: Transaction, step: Step) -> Sequence[Callable[[], object]]:
        """Send the COMMIT of a root transaction; its callbacks run only if it committed."""
        try:
            self._channel.apply(step)
        except Exception:
            self._stack.root_ended(tx, committed=False)
            if tx.owns_session:
                self.close()
            raise
        return self._stack.root_ended(tx, committed=True)

    def _rollback(self, tx: Transaction) -> None:
        try:
            self._channel.apply(self._stack.rollback(tx))
        finally:
            if tx.owns_session:
                self.close()

    def _end_block(
        self, tx: Transaction, exc: BaseException | None, scope: Scope | None
    ) -> TransactionStateError | None:
        top = self._stack.top
        in_order = self.lane.innermost is tx and scope is not None and scope.transaction is tx
        if in_order and (
            top is tx
            or top is None
            or top.lane is self.lane
            or tx.kind is TransactionKind.VIRTUAL
            # another worker's transaction above: end() waits until it has ended
            or (self._channel.gate is not None and top.thread not in (None, worker_ident()))
        ):
            self.end(tx, commit=exc is None)
            return None
        above = top if in_order else self.transaction
        above_name = above.describe() if above is not None and above is not tx else "a block opened inside it"
        open_blocks = []
        t = top
        while t is not None and t is not tx:
            open_blocks.append(t)
            t = t.below  # type: ignore[assignment]  # the stack holds Transactions
        self._rollback(tx)
        for t in open_blocks:
            if t.entered and t.block_token is not None and t.session is self:
                t.forced = True
                t.failure = f"{t.describe()} was rolled back when the block of {tx.describe()} ended"
        return TransactionStateError(
            f"the block of {tx.describe()} ended while {above_name} was still open; both were rolled "
            "back; leave inner blocks (or end inner transactions) before outer ones"
        )


def _fire(callbacks: Sequence[Callable[[], object]]) -> None:
    first: BaseException | None = None
    for callback in callbacks:
        try:
            result = callback()
            if inspect.isawaitable(result):
                # An async callback, registered through the asyncio API: awaited on the caller's loop (outside
                # the bridge, await_ raises AsyncContextError, which names the fix).
                await_(result)
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first
