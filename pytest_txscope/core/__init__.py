"""The core: transactions over DB-API connections, without pytest and without any integration.

Layers, each importing only those below it: `machine` (the transaction state machine, no I/O) ->
`transaction` (what code calls on a transaction) -> `context` (the current session per thread and task) ->
`channel` (the sync I/O layer) -> `session` -> `engine` -> `blocks`.
"""

from __future__ import annotations

from .blocks import TransactionBlock, ensure_transaction, transaction
from .channel import Channel, Gate
from .engine import Engine, SessionProvider
from .session import Session, current_session
from .states import Policy, TransactionKind, TransactionState
from .transaction import Transaction

__all__ = [
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
    "current_session",
    "ensure_transaction",
    "transaction",
]
