"""psycopg2's face of the sandbox connection: its ``cursor()`` (``name``, ``cursor_factory``, ``withhold``,
``scrollable``; ``connect(cursor_factory=)`` honoured), autocommit mode, ``set_session``,
``set_isolation_level`` and ``isolation_level`` (levels cannot apply inside the sandbox's transaction: one
warning), ``reset()`` made safe, and its errors."""

from __future__ import annotations

from typing import Any

from ..dbapi import SandboxConnection, SandboxCursor, driver_error
from ..errors import TransactionStateError

__all__ = ["Psycopg2Connection"]

# psycopg2.extensions.ISOLATION_LEVEL_*: 0 is autocommit.
_LEVELS = {1: "READ COMMITTED", 2: "REPEATABLE READ", 3: "SERIALIZABLE", 4: "READ UNCOMMITTED"}
_IDLE, _INTRANS, _INERROR = 0, 2, 3  # psycopg2.extensions.TRANSACTION_STATUS_*


class Psycopg2Connection(SandboxConnection):
    """The sandbox connection as psycopg2's ``connection``."""

    closed_error_spec = ("psycopg2", "InterfaceError", "connection already closed")
    begin_commits_first = False
    autocommit_is_bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory: Any = self.connect_kwargs.get("cursor_factory")
        """The default cursor class (psycopg2's ``connect(cursor_factory=)``); None: the driver's."""
        self._settings: dict[str, Any] = {}

    def cursor(
        self,
        name: str | None = None,
        cursor_factory: Any = None,
        withhold: bool = False,
        scrollable: bool | None = None,
    ) -> SandboxCursor:
        """A cursor on the sandbox connection: a server-side (named) one with ``name``."""
        self._check()
        factory = cursor_factory or self.cursor_factory
        # psycopg2 refuses a named cursor without hold on a connection in autocommit mode, which the sandbox's
        # real connection is (it sends BEGIN itself). WITH HOLD changes nothing here: a held cursor outlives
        # only a COMMIT, and the sandbox's transaction never commits (its rollback removes the cursor).
        hold = withhold or name is not None

        def make(raw: Any) -> Any:
            return raw.cursor(name, cursor_factory=factory, withhold=hold, scrollable=scrollable)

        return SandboxCursor(self, make=make)

    def in_transaction_switch(self, setting: str) -> None:
        """psycopg2 refuses session changes while a transaction is open."""
        raise driver_error("psycopg2", "ProgrammingError", TransactionStateError)(
            "set_session cannot be used inside a transaction (sandbox connection: commit or roll back first)"
        )

    def set_session(
        self,
        isolation_level: Any = None,
        readonly: bool | None = None,
        deferrable: bool | None = None,
        autocommit: bool | None = None,
    ) -> None:
        """psycopg2's ``set_session``: autocommit switches the mode; the others cannot apply inside the sandbox's
        transaction (one warning each)."""
        self._check()
        if self._app_transaction() is not None:
            self.in_transaction_switch("session")
        if autocommit is not None:
            self.switch_autocommit(autocommit)
        for name, value, asked in (
            ("isolation_level", isolation_level, _level(isolation_level)),
            ("readonly", readonly, "READ ONLY" if readonly else None),
            ("deferrable", deferrable, "DEFERRABLE" if deferrable else None),
        ):
            if value is not None:
                self._settings[name] = value
                self.ask_isolation(asked, f"set_session({name}={value!r})")

    def set_isolation_level(self, level: Any) -> None:
        """psycopg2's legacy setter: rolls back the open transaction first, as psycopg2 does; level 0
        (``ISOLATION_LEVEL_AUTOCOMMIT``) switches autocommit mode on, the others off."""
        self._check()
        tx = self._app_transaction()
        if tx is not None:
            tx.rollback()
        self.switch_autocommit(level == 0)
        if level != 0:
            self._settings["isolation_level"] = level
            self.ask_isolation(_level(level), f"set_isolation_level({level!r})")

    @property
    def isolation_level(self) -> Any:
        """psycopg2's attribute (None: the server's default)."""
        return self._settings.get("isolation_level")

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self.set_session(isolation_level=value)

    @property
    def readonly(self) -> bool | None:
        """psycopg2's attribute; True cannot apply inside the sandbox's transaction (one warning)."""
        return self._settings.get("readonly")

    @readonly.setter
    def readonly(self, value: bool | None) -> None:
        self.set_session(readonly=value)

    @property
    def deferrable(self) -> bool | None:
        """psycopg2's attribute; True cannot apply inside the sandbox's transaction (one warning)."""
        return self._settings.get("deferrable")

    @deferrable.setter
    def deferrable(self, value: bool | None) -> None:
        self.set_session(deferrable=value)

    def get_transaction_status(self) -> int:
        """As psycopg2 reports it for this connection: IDLE with no transaction of the application open."""
        self._check()
        tx = self._app_transaction()
        if tx is None:
            return _IDLE
        return _INERROR if self.session.channel.failed() else _INTRANS

    def reset(self) -> None:
        """psycopg2's ``reset()``, made safe: the open transaction is rolled back and the settings are the
        defaults again; the real connection is not reset (that would end the sandbox's transaction)."""
        self._check()
        tx = self._app_transaction()
        if tx is not None:
            tx.rollback()
        self.switch_autocommit(False)
        self._settings.clear()


def _level(level: Any) -> str | None:
    """A psycopg2 isolation level (an ``ISOLATION_LEVEL_*`` number or a name) as SQL spells it."""
    if level is None:
        return None
    if isinstance(level, int):
        return _LEVELS.get(level, "DEFAULT")
    return str(level)
