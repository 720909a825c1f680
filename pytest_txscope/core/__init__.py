"""The core: transactions over DB-API connections, without pytest and without any integration.

Layers, each importing only those below it: `machine` (the transaction state machine, no I/O) ->
`transaction` (what code calls on a transaction) -> `context` (the current session per thread and task) ->
`channel` (the sync I/O layer) -> `session` -> `engine` -> `blocks`. The asyncio API's twins (`aio`: transactions and
sessions, above `session`; `aio_engine`, above `engine`) run the sync modules through the greenlet bridge.
"""

from __future__ import annotations

from .aio import AsyncCursor, AsyncSession, AsyncTransaction, current_async_session
from .aio_engine import AsyncEngine
from .blocks import TransactionBlock, ensure_transaction, transaction
from .channel import Channel, Gate
from .engine import Engine, SessionProvider
from .session import Session, current_session
from .states import Policy, TransactionKind, TransactionState
from .transaction import Transaction

__all__ = [
    "AsyncCursor",
    "AsyncEngine",
    "AsyncSession",
    "AsyncTransaction",
    "Channel",
    "Engine",
    "Gate",
    "Policy",
    "Session",
    "SessionProvider",
    "Transaction",
    "TransactionBlock",
    "TransactionKind",
    "TransactionState",
    "current_async_session",
    "current_session",
    "ensure_transaction",
    "transaction",
]
