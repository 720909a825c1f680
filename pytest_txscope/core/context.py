"""Which session and transaction are current: one immutable chain of scopes per thread and per asyncio task.

The chain lives in a `contextvars.ContextVar`. Every block that makes a session or transaction current
sets a new `Scope` whose ``parent`` is the previous one and keeps the token; leaving the block resets the
token. A new thread starts with an empty context (no current session); an asyncio task starts with a copy of the
context it was created in, so tasks never see sessions that *other* tasks open.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .transaction import Transaction

__all__ = [
    "Scope",
    "current_scope",
    "find_opened_by",
    "find_session",
    "is_current",
    "push_scope",
    "reset_scope",
    "restore_scope",
]


class _Scoped(Protocol):
    @property
    def closed(self) -> bool: ...

    @property
    def engine(self) -> object: ...


S = TypeVar("S", bound=_Scoped)


@dataclass(frozen=True)
class Scope:
    """One entry of the current-session chain: a session, the transaction a block opened (if any), and the
    object (engine or session) whose own ``with`` statement opened it, if any."""

    session: _Scoped
    transaction: Transaction | None
    parent: Scope | None
    opened_by: object | None = None


_current: ContextVar[Scope | None] = ContextVar("pytest_txscope.current", default=None)


def current_scope() -> Scope | None:
    """The innermost scope of this thread or task, or None."""
    return _current.get()


def push_scope(
    session: _Scoped, transaction: Transaction | None, opened_by: object | None = None
) -> Token[Scope | None]:
    """Make ``session`` (and ``transaction``) current; return the token that undoes it."""
    return _current.set(Scope(session, transaction, _current.get(), opened_by))


def reset_scope(token: Token[Scope | None]) -> None:
    """Undo `push_scope`."""
    _current.reset(token)


def restore_scope(scope: Scope | None) -> None:
    """Make ``scope`` current again, dropping every scope pushed above it: blocks that were entered and never
    left (the plugin, when a test ends)."""
    _current.set(scope)


def find_opened_by(owner: object) -> Scope | None:
    """The innermost scope whose block was opened by ``with owner:`` (an engine or a session)."""
    scope = _current.get()
    while scope is not None:
        if scope.opened_by is owner:
            return scope
        scope = scope.parent
    return None


def is_current(session: object) -> bool:
    """Whether a block made ``session`` current in this thread or task."""
    scope = _current.get()
    while scope is not None:
        if scope.session is session:
            return True
        scope = scope.parent
    return False


def find_session(kind: type[S], engine: object = None) -> S | None:
    """The innermost open session of class ``kind`` in this thread or task (of ``engine``, if given)."""
    scope = _current.get()
    while scope is not None:
        session = scope.session
        if isinstance(session, kind) and not session.closed and (engine is None or session.engine is engine):
            return session
        scope = scope.parent
    return None
