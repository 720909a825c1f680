"""The DB-API face of a sandbox connection whose driver is asyncpg (`pytest_txscope.dialects.AsyncpgDialect`).

asyncpg has no DB-API of its own, so code reaches an asyncpg sandbox through SQLAlchemy's asyncpg dialect or
`pytest_txscope.Sandbox.connection()`; what this face adds to the shared one is asyncpg's error for a closed
connection, and psycopg's rule that autocommit cannot be switched inside a transaction (PostgreSQL's, as
asyncpg's ``transaction()`` objects cannot be switched either)."""

from __future__ import annotations

from ..dbapi import SandboxConnection
from ..dbapi_support import driver_error
from ..errors import TransactionStateError

__all__ = ["AsyncpgConnection"]


class AsyncpgConnection(SandboxConnection):
    """The sandbox connection over asyncpg, with asyncpg's errors."""

    closed_error_spec = ("asyncpg", "InterfaceError", "connection is closed")
    begin_commits_first = False
    autocommit_is_bool = True

    def in_transaction_switch(self, setting: str) -> None:
        """Refused with asyncpg's InterfaceError, as psycopg refuses it: the transaction stays open."""
        raise driver_error("asyncpg", "InterfaceError", TransactionStateError)(
            f"cannot change {setting!r} inside a transaction (sandbox connection: commit or roll back the "
            "transaction first)"
        )
