"""psycopg 3's face of the sandbox connection: its cursor and ``execute`` keywords, ``row_factory`` and
``cursor_factory`` (from ``connect()`` or set later), autocommit mode, ``isolation_level`` / ``read_only`` /
``deferrable`` (which cannot apply inside the sandbox's transaction: one warning), and its errors."""

from __future__ import annotations

from typing import Any

from ..dbapi import SandboxConnection, SandboxCursor, driver_error
from ..errors import SandboxRefusedError, TransactionStateError

__all__ = ["PsycopgConnection"]


class PsycopgConnection(SandboxConnection):
    """The sandbox connection as psycopg's ``Connection``."""

    closed_error_spec = ("psycopg", "OperationalError", "the connection is closed")
    begin_commits_first = False
    autocommit_is_bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row_factory: Any = self.connect_kwargs.get("row_factory")
        """The cursors' row factory (psycopg's ``connect(row_factory=)``); None: the driver's tuples."""
        self.cursor_factory: Any = self.connect_kwargs.get("cursor_factory")
        """The class of client cursors (psycopg's ``connect(cursor_factory=)``); None: the driver's."""
        self._settings: dict[str, Any] = {}

    def cursor(
        self,
        name: str = "",
        *,
        binary: bool = False,
        row_factory: Any = None,
        scrollable: bool | None = None,
        withhold: bool = False,
    ) -> SandboxCursor:
        """A cursor on the sandbox connection: a server-side one with ``name``, as psycopg's ``cursor()``."""
        self._check()
        rows = row_factory or self.row_factory
        factory = self.cursor_factory
        if name:

            def make(raw: Any) -> Any:
                return raw.cursor(
                    name, binary=binary, row_factory=rows, scrollable=scrollable, withhold=withhold
                )
        elif factory is not None:

            def make(raw: Any) -> Any:
                cursor = factory(raw, row_factory=rows or raw.row_factory)
                if binary:
                    cursor.format = 1  # psycopg.pq.Format.BINARY
                return cursor
        else:

            def make(raw: Any) -> Any:
                return raw.cursor(binary=binary, row_factory=rows)

        return SandboxCursor(self, make=make)

    def execute(  # type: ignore[override]  # psycopg's own signature (its keywords, not any)
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool = False
    ) -> SandboxCursor:
        """psycopg's shortcut: a new cursor, executed."""
        cursor = self.cursor(binary=True) if binary else self.cursor()
        if prepare is None:
            return cursor.execute(query, params)
        return cursor.execute(query, params, prepare=prepare)

    def pipeline(self) -> Any:
        """Refused: statements queued in a pipeline reach the server before the sandbox can watch them."""
        raise SandboxRefusedError(
            "psycopg's pipeline mode",
            "its statements are sent in batches the sandbox cannot watch; run them one by one",
        )

    def in_transaction_switch(self, setting: str) -> None:
        """psycopg refuses to change a setting while a transaction is open."""
        raise driver_error("psycopg", "ProgrammingError", TransactionStateError)(
            f"can't change {setting!r} now: connection in transaction status INTRANS (sandbox connection: "
            "commit or roll back the transaction first)"
        )

    def _setting(self, name: str, value: Any, asked: object) -> None:
        self._check()
        if self._app_transaction() is not None:
            self.in_transaction_switch(name)
        self._settings[name] = value
        self.ask_isolation(asked, f"conn.{name} = {value!r}")

    @property
    def isolation_level(self) -> Any:
        """psycopg's setting (None: the server's default); setting another level than the sandbox's
        transaction runs at gives one `SandboxIsolationWarning`."""
        return self._settings.get("isolation_level")

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._setting("isolation_level", value, value)

    def set_isolation_level(self, value: Any) -> None:
        """psycopg's setter method."""
        self.isolation_level = value

    @property
    def read_only(self) -> bool | None:
        """psycopg's setting; True cannot apply inside the sandbox's transaction (one warning)."""
        return self._settings.get("read_only")

    @read_only.setter
    def read_only(self, value: bool | None) -> None:
        self._setting("read_only", value, "READ ONLY" if value else None)

    def set_read_only(self, value: bool | None) -> None:
        """psycopg's setter method."""
        self.read_only = value

    @property
    def deferrable(self) -> bool | None:
        """psycopg's setting; True cannot apply inside the sandbox's transaction (one warning)."""
        return self._settings.get("deferrable")

    @deferrable.setter
    def deferrable(self, value: bool | None) -> None:
        self._setting("deferrable", value, "DEFERRABLE" if value else None)

    def set_deferrable(self, value: bool | None) -> None:
        """psycopg's setter method."""
        self.deferrable = value
