"""psycopg's ``AsyncConnection`` face of the sandbox connection, over the psycopg face
(`pytest_txscope.facades.psycopg`).

What SQLAlchemy's psycopg async adapter and psycopg users call: ``cursor()`` (a named one is server-side),
``execute()``, ``commit()``, ``rollback()``, ``close()``, ``set_autocommit()``, ``set_isolation_level()``,
``set_read_only()``, ``set_deferrable()`` and ``transaction()`` as coroutines; ``autocommit``, ``info``,
``adapters``, ``closed``, ``broken`` read as psycopg's; notice handlers are taken off the sandbox's connection
again when the face closes (it outlives the test).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from .aio_base import AsyncCursorFace, AsyncFace, in_turn
from .psycopg import PsycopgConnection

__all__ = ["AioPsycopgConnection", "AioPsycopgCursor"]


class AioPsycopgCursor(AsyncCursorFace):
    """psycopg's ``AsyncCursor`` over the sandbox connection's cursor."""

    def _close(self) -> None:
        # psycopg's synchronous close, which SQLAlchemy's adapter calls on its client cursors.
        self.sync_cursor.close()


class AioPsycopgConnection(AsyncFace):
    """The sandbox connection as a ``psycopg.AsyncConnection``."""

    cursor_class = AioPsycopgCursor

    def __init__(self, connection: PsycopgConnection) -> None:
        super().__init__(connection)
        self._psycopg = connection
        self._handlers: list[Callable[..., Any]] = []

    async def set_autocommit(self, value: bool) -> None:
        """Autocommit mode of the sandbox connection (each statement straight into the sandbox's transaction)."""
        await in_turn(self._psycopg.switch_autocommit, value)

    @property
    def autocommit(self) -> bool:
        """Whether autocommit mode is on (set it with `set_autocommit`, as on psycopg's async connection)."""
        return bool(self._psycopg.autocommit)

    async def set_isolation_level(self, value: Any) -> None:
        """Cannot apply inside the sandbox's transaction: one `SandboxIsolationWarning` for another level."""
        self._psycopg.isolation_level = value

    async def set_read_only(self, value: bool | None) -> None:
        """Cannot apply inside the sandbox's transaction (one warning for True)."""
        self._psycopg.read_only = value

    async def set_deferrable(self, value: bool | None) -> None:
        """Cannot apply inside the sandbox's transaction (one warning for True)."""
        self._psycopg.deferrable = value

    @property
    def isolation_level(self) -> Any:
        """psycopg's setting (None: the server's default)."""
        return self._psycopg.isolation_level

    @property
    def read_only(self) -> bool | None:
        """psycopg's setting."""
        return self._psycopg.read_only

    @property
    def deferrable(self) -> bool | None:
        """psycopg's setting."""
        return self._psycopg.deferrable

    @contextlib.asynccontextmanager
    async def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> AsyncIterator[Any]:
        """psycopg's ``async with conn.transaction():`` (see the sync face's ``transaction()``)."""
        with self._psycopg.transaction(savepoint_name, force_rollback) as tx:
            yield tx

    def add_notice_handler(self, callback: Callable[..., Any]) -> None:
        """Added on the sandbox's connection until this face closes (SQLAlchemy adds one per connection)."""
        self._psycopg.session.connection.add_notice_handler(callback)
        self._handlers.append(callback)

    def remove_notice_handler(self, callback: Callable[..., Any]) -> None:
        """Remove a handler added through this face."""
        self._psycopg.session.connection.remove_notice_handler(callback)
        self._handlers.remove(callback)

    async def close(self) -> None:
        """Discard what is uncommitted, and take this face's notice handlers off the sandbox's connection."""
        handlers, self._handlers = self._handlers, []
        for callback in handlers:
            with contextlib.suppress(ValueError):
                self._psycopg.session.connection.remove_notice_handler(callback)
        await in_turn(self._psycopg.close)
