"""The asyncio API in one import path: ``from pytest_txscope.aio import AsyncEngine, transaction``.

The same names are exported from ``pytest_txscope`` (`current_session` here is the async twin,
``pytest_txscope.current_async_session``). `transaction` and `ensure_transaction` are the sync core's blocks,
which work with ``async with`` too.
"""

from __future__ import annotations

from .core import (
    AsyncCursor,
    AsyncEngine,
    AsyncSession,
    AsyncTransaction,
    ensure_transaction,
    transaction,
)
from .core import current_async_session as current_session

__all__ = [
    "AsyncCursor",
    "AsyncEngine",
    "AsyncSession",
    "AsyncTransaction",
    "current_session",
    "ensure_transaction",
    "transaction",
]
