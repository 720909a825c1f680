"""The cursor of the sandbox's DB-API connection (`pytest_txscope.dbapi.SandboxConnection`).

Its statements, and every other driver call that sends SQL (psycopg's ``copy()`` and ``stream()``, ``callproc()``,
``scroll()``, ``nextset()``, psycopg2's ``copy_*``), run after the sandbox's pending BEGIN / SAVEPOINT, watched as
statements are; the driver's own cursor does the rest (``fetchone()``, ``rowcount``, ``description`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from .core import Channel, Session
from .dbapi_support import CONTROL_HEADS, SENDING, match_control, may_write

__all__ = ["SandboxCursor", "StatementOwner"]

_T = TypeVar("_T")


class StatementOwner(Protocol):
    """What a `SandboxCursor` needs of its connection (`SandboxConnection` implements it)."""

    wrote: bool

    @property
    def protecting(self) -> bool:
        """Whether each statement runs in a savepoint of its own."""

    @property
    def session(self) -> Session:
        """The guest session behind the connection."""

    def statement_channel(self) -> Channel:
        """Check the connection is usable, open its transaction if none is, and return the channel."""

    def control_text(self, sql: str, match: Any) -> bool:
        """Handle transaction control sent as text; False to send it to the server as it is."""

    def send(self, channel: Channel, sql: str, send: Callable[[], _T]) -> _T:
        """Run a driver call that sends ``sql`` as a statement of the connection."""

    def send_protected(self, channel: Channel, sql: str, send: Callable[[], _T]) -> _T:
        """The same, inside a statement savepoint."""


class SandboxCursor:
    """A cursor whose statements run inside the sandbox (the driver's cursor does the rest)."""

    def __init__(
        self,
        connection: StatementOwner,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        make: Callable[[Any], Any] | None = None,
    ) -> None:
        self._connection = connection
        given = dict(kwargs or {})
        # How to make the driver's cursor on a connection: its cursor() with the given arguments by default.
        self._make = make or (lambda raw: raw.cursor(*args, **given))
        # The driver's cursor is made when first needed: the first statement of a sandbox may find its connection
        # dead and replace it (see Channel.flush), and sqlite3 refuses even a cursor on a closed connection.
        self._raw: Any = None
        self._cursor: Any = None

    def _current(self, raw: Any) -> Any:
        """The driver's cursor on ``raw``, made now if there is none on it yet."""
        if raw is not self._raw:
            self._raw = raw
            self._cursor = self._make(raw)
            self.adopt(self._cursor)
        return self._cursor

    def adopt(self, cursor: Any) -> None:
        """Hook for a driver's face: set up the driver's cursor just made for this one (nothing here)."""

    def execute(self, sql: Any, params: Any = None, **kwargs: Any) -> SandboxCursor:
        """Run a statement (driver's parameter style and keywords) inside the connection's transaction."""
        connection = self._connection
        if type(sql) is str:
            head = sql[:3]
            if head in CONTROL_HEADS or head < "!":  # a cheap look first: the full match only for candidates
                control = match_control(sql)
                if control is not None and connection.control_text(sql, control):
                    return self
            channel = connection.statement_channel()
            if not connection.wrote and may_write(sql):
                connection.wrote = True
            text = sql
        else:  # psycopg's sql.Composed, bytes: sent as they are
            channel = connection.statement_channel()
            connection.wrote = True
            text = repr(sql)
        if kwargs:
            args = () if params is None else (params,)
            send = lambda: self._current(channel.connection).execute(sql, *args, **kwargs)  # noqa: E731
        elif params is None:
            send = lambda: self._current(channel.connection).execute(sql)  # noqa: E731
        else:
            send = lambda: self._current(channel.connection).execute(sql, params)  # noqa: E731
        if connection.protecting:
            connection.send_protected(channel, text, send)
        else:
            channel.checked(text, send, connection.session.lane)
        return self

    def executemany(self, sql: Any, seq_of_params: Sequence[Any], **kwargs: Any) -> SandboxCursor:
        """Run a statement once per parameter set (driver's keywords, e.g. psycopg's ``returning=``)."""
        connection = self._connection
        channel = connection.statement_channel()
        text = sql if type(sql) is str else repr(sql)
        if not connection.wrote and may_write(text):
            connection.wrote = True
        connection.send(
            channel, text, lambda: self._current(channel.connection).executemany(sql, seq_of_params, **kwargs)
        )
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self._current(self._connection.session.connection))

    def __enter__(self) -> SandboxCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the driver's cursor; quietly when its connection is gone (nothing is left to free)."""
        if self._cursor is not None:
            try:
                self._cursor.close()
            except Exception:
                if self._connection.session.dialect.is_alive(self._raw):
                    raise

    def _sending(self, name: str) -> Callable[..., Any]:
        """The driver's ``name`` method (copy, stream, callproc ...), called after the sandbox's pending BEGIN /
        SAVEPOINT went out, watched as a statement is."""

        def call(*args: Any, **kwargs: Any) -> Any:
            connection = self._connection
            channel = connection.statement_channel()
            connection.wrote = True
            method = getattr(self._current(channel.connection), name)
            return connection.send(channel, f"{name}()", lambda: method(*args, **kwargs))

        return call

    def __getattr__(self, name: str) -> Any:
        if name in SENDING:
            return self._sending(name)
        # fetchone, fetchall, rowcount, description, lastrowid ...: the driver's own cursor answers.
        return getattr(self._current(self._connection.session.connection), name)
