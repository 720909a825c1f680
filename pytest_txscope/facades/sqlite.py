"""The sqlite3 face of the sandbox connection: what code written for ``sqlite3.connect()`` expects of it.

``row_factory`` (copied to each new cursor, as sqlite3 does), ``text_factory``, ``detect_types`` with the
converters of ``sqlite3.converters`` (see `pytest_txscope.facades.sqlite_types`), ``factory=``,
``isolation_level=None`` and Python 3.12's ``autocommit``, ``in_transaction``, ``total_changes``, the
functions and callbacks registered on the connection (removed again when the face closes: the real connection
outlives the test), ``iterdump()`` and ``backup()``; a closed face raises `sqlite3.ProgrammingError`.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..core import Session
from ..dbapi import SandboxConnection, SandboxCursor
from ..errors import SandboxRefusedError, TransactionStateError
from .sqlite_types import RawText, RowPlan, plan_rows

__all__ = ["ClosedDatabaseError", "SQLiteConnection", "SQLiteCursor"]


class ClosedDatabaseError(TransactionStateError, sqlite3.ProgrammingError):
    """A closed sqlite3 face was used: sqlite3's own error class, and the library's."""


class SQLiteCursor(SandboxCursor):
    """A sqlite3 cursor on the sandbox connection: its ``row_factory`` starts as the connection's."""

    def __init__(self, connection: SQLiteConnection, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(connection, args, kwargs)
        self._face = connection
        self._row_factory: Any = connection.row_factory
        self._driver: sqlite3.Cursor | None = None
        self._plan: RowPlan | None = None  # set while the face converts the rows of the last statement

    def adopt(self, cursor: Any) -> None:
        """Give the driver's cursor this cursor's ``row_factory`` (sqlite3 applies it in C)."""
        self._driver = cursor
        cursor.row_factory = self._row_factory

    @property
    def row_factory(self) -> Any:
        """sqlite3's per-cursor row factory (the connection's when the cursor was made)."""
        return self._row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        self._row_factory = value
        if self._driver is not None and self._plan is None:
            self._driver.row_factory = value

    def execute(self, sql: Any, params: Any = None, **kwargs: Any) -> SQLiteCursor:
        """Run one statement as sqlite3 would on a connection opened with the face's arguments."""
        face = self._face
        if face.converting:
            with face.raw_text():
                super().execute(sql, params, **kwargs)
            assert self._driver is not None
            self._driver.row_factory = None  # applied here, after the conversion
            self._plan = plan_rows(
                face.session.connection, sql, self._driver.description, face.detect_types, face.text_factory
            )
        else:
            super().execute(sql, params, **kwargs)
            if self._plan is not None:
                self._plan = None
                assert self._driver is not None
                self._driver.row_factory = self._row_factory
        return self

    def executemany(self, sql: Any, seq_of_params: Sequence[Any], **kwargs: Any) -> SQLiteCursor:
        """Run one statement once per parameter set (no rows: nothing to convert)."""
        self._plan = None
        super().executemany(sql, seq_of_params, **kwargs)
        if self._driver is not None:
            self._driver.row_factory = self._row_factory
        return self

    def executescript(self, script: str) -> SQLiteCursor:
        """sqlite3's cursor shortcut: the connection's ``executescript``."""
        self._face.executescript(script)
        return self

    @property
    def description(self) -> Any:
        """The driver's description; with ``PARSE_COLNAMES``, names without their ``[type]``, as sqlite3 shows."""
        plan = self._plan
        if plan is None:
            return self._current(self._face.session.connection).description
        return tuple((name, None, None, None, None, None, None) for name in plan.names)

    def _made(self, row: Sequence[Any]) -> Any:
        assert self._plan is not None
        values = self._plan.convert(row)
        if self._row_factory is None:
            return values
        return self._row_factory(self._plan.described or self._driver, values)

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._plan is None:
            return self._current(self._face.session.connection).fetchone()
        with self._face.raw_text():
            assert self._driver is not None
            row = self._driver.fetchone()
        return None if row is None else self._made(row)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """The next ``size`` rows (``arraysize`` by default)."""
        driver = self._current(self._face.session.connection)
        size = driver.arraysize if size is None else size
        if self._plan is None:
            rows: list[Any] = driver.fetchmany(size)
            return rows
        with self._face.raw_text():
            raw = driver.fetchmany(size)
        return [self._made(row) for row in raw]

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        driver = self._current(self._face.session.connection)
        if self._plan is None:
            rows: list[Any] = driver.fetchall()
            return rows
        with self._face.raw_text():
            raw = driver.fetchall()
        return [self._made(row) for row in raw]

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row


class SQLiteConnection(SandboxConnection):
    """The sandbox connection as a ``sqlite3.Connection`` opened with the app's ``connect()`` arguments.

    A ``factory=`` class (a ``sqlite3.Connection`` subclass) lends its own methods and properties to the face,
    which is not an instance of it: its ``__init__`` is not run (it would open a second connection), and
    ``super()`` calls inside its methods fail. ``connect(isolation_level=None)`` (or ``autocommit=True`` on
    Python 3.12), or setting it later, is the sandbox connection's autocommit mode: each statement runs in the
    sandbox's transaction with no savepoint of the app's, as committed at once; ``BEGIN``/``COMMIT``/``ROLLBACK``
    sent as statements open and end the app's transaction, as on every sandbox connection.
    """

    cursor_class = SQLiteCursor

    def __new__(
        cls,
        session: Session,
        check_thread: Callable[[], None] | None = None,
        *,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> SQLiteConnection:
        factory = (connect_kwargs or {}).get("factory")
        face = cls if factory in (None, sqlite3.Connection) else _face_of(cls, factory)
        return super().__new__(face)

    def __init__(
        self,
        session: Session,
        check_thread: Callable[[], None] | None = None,
        *,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(session, check_thread, connect_kwargs=connect_kwargs)
        given = self.connect_kwargs
        self.row_factory: Any = None
        """Rows as tuples (None), or a callable ``(cursor, row)``; new cursors start with it."""
        self.text_factory: Any = str
        """What TEXT values become (``str``, ``bytes``, or a callable taking bytes)."""
        self.detect_types: int = int(given.get("detect_types", 0))
        """``sqlite3.PARSE_DECLTYPES`` and/or ``PARSE_COLNAMES``, as given to ``connect()``."""
        self._isolation: str | None = given.get("isolation_level", "DEFERRED")
        self._autocommit_setting: Any = given.get(
            "autocommit", getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)
        )
        try:
            self._changes_before = int(session.connection.total_changes)
        except sqlite3.Error:  # a connection found dead: the first statement replaces it, counting from 0
            self._changes_before = 0
        self._undo: list[Callable[[], object]] = []
        self._kept = 0  # the first registrations in `_undo` are the connection's set-up (see `mark_set_up`)
        self.follow_settings()

    # ------------------------------------------------------------------------------------------ rows
    @property
    def converting(self) -> bool:
        """Whether rows are converted here rather than by sqlite3 (``detect_types`` or a ``text_factory``)."""
        return bool(self.detect_types) or self.text_factory is not str

    @contextlib.contextmanager
    def raw_text(self) -> Iterator[None]:
        """While rows are fetched for conversion with another ``text_factory`` than ``str``: TEXT comes as
        `RawText` bytes, told apart from BLOBs, and goes through the face's factory."""
        if self.text_factory is str:
            yield
            return
        real = self.session.connection
        previous = real.text_factory
        real.text_factory = RawText
        try:
            yield
        finally:
            real.text_factory = previous

    # ---------------------------------------------------------------------------------- transactions
    def closed_error(self) -> Exception:
        """sqlite3's ``ProgrammingError`` (and `TransactionStateError`), with what to do."""
        return ClosedDatabaseError(
            "Cannot operate on a closed database. (this sandbox connection is closed: the code closed it, or "
            "the test it was handed out in ended; connect again, once per test or request, rather than keeping "
            "a connection across tests)"
        )

    @property  # type: ignore[override]  # sqlite3's is a setting, not the shared refusing one
    def isolation_level(self) -> str | None:
        """sqlite3's setting; None is autocommit mode (see the class)."""
        return self._isolation

    @isolation_level.setter
    def isolation_level(self, value: object) -> None:
        if value is not None and str(value).upper() not in ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'")
        self._isolation = None if value is None else str(value)
        self.follow_settings()

    def control_text(self, sql: str, match: re.Match[str]) -> bool:
        """As the shared connection, with SQLite's own errors: ``BEGIN`` inside a transaction, ``COMMIT`` or
        ``ROLLBACK`` outside one."""
        kind = match.lastgroup
        if kind == "begin" and self.in_transaction:
            raise sqlite3.OperationalError("cannot start a transaction within a transaction")
        if kind in ("commit", "rollback") and not self.in_transaction:
            raise sqlite3.OperationalError(f"cannot {kind} - no transaction is active")
        return super().control_text(sql, match)

    def follow_settings(self) -> None:
        """Enter or leave autocommit mode as sqlite3 would for ``isolation_level`` and 3.12's ``autocommit``
        (switching with a transaction open commits it first, as sqlite3 does)."""
        setting = self._autocommit_setting
        self.switch_autocommit(setting is True or (setting is not False and self._isolation is None))

    if sys.version_info >= (3, 12):

        @property  # type: ignore[override]  # Python 3.12's attribute, with its three values
        def autocommit(self) -> Any:
            """``sqlite3.LEGACY_TRANSACTION_CONTROL`` (as given to ``connect()``), True or False."""
            return self._autocommit_setting

        @autocommit.setter
        def autocommit(self, value: Any) -> None:
            self._autocommit_setting = value
            self.follow_settings()

    @property
    def in_transaction(self) -> bool:
        """Whether the app's transaction is open (in legacy mode, once a statement may have written)."""
        tx = self.session.transaction
        if tx is None or not tx.is_active or self.closed or (tx.implicit and self.autocommit_mode):
            return False
        return not tx.implicit or self.wrote or self._autocommit_setting is False

    @property
    def total_changes(self) -> int:
        """Rows changed since this connection was opened (by any code on the sandbox's connection)."""
        return max(0, int(self.session.connection.total_changes) - self._changes_before)

    def close(self) -> None:
        """Discard what is uncommitted, and remove the functions and callbacks the code registered."""
        self._remove_since(0)
        super().close()

    def mark_set_up(self) -> None:
        """The functions registered so far (SQLAlchemy's ``regexp`` at connect) stay across `rebind`."""
        self._kept = len(self._undo)

    def forget_since_set_up(self) -> None:
        """Remove the functions and callbacks registered after `mark_set_up` (an earlier test's)."""
        self._remove_since(self._kept)

    def _remove_since(self, start: int) -> None:
        undo, self._undo = self._undo[start:], self._undo[:start]
        for remove in reversed(undo):
            with contextlib.suppress(sqlite3.Error):
                remove()

    # ---------------------------------------------------------------- registered on the real connection
    def _register(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], undo: tuple[Any, ...]
    ) -> None:
        if self.closed:
            raise self.closed_error()
        real = self.session.connection
        getattr(real, method)(*args, **kwargs)
        self._undo.append(lambda: getattr(real, method)(*undo))

    def create_function(self, name: str, narg: int, func: Any, **kwargs: Any) -> None:
        """Registered on the sandbox's connection until this face closes (or its test ends)."""
        self._register("create_function", (name, narg, func), kwargs, (name, narg, None))

    def create_aggregate(self, name: str, n_arg: int, aggregate_class: Any) -> None:
        """Registered until this face closes (or its test ends)."""
        self._register("create_aggregate", (name, n_arg, aggregate_class), {}, (name, n_arg, None))

    def create_window_function(self, name: str, num_params: int, aggregate_class: Any) -> None:
        """Registered until this face closes (or its test ends)."""
        self._register(
            "create_window_function", (name, num_params, aggregate_class), {}, (name, num_params, None)
        )

    def create_collation(self, name: str, callable: Any) -> None:  # sqlite3's own name
        """Registered until this face closes (or its test ends)."""
        self._register("create_collation", (name, callable), {}, (name, None))

    def set_authorizer(self, authorizer_callback: Any) -> None:
        """Set on the sandbox's connection until this face closes (or its test ends)."""
        self._register("set_authorizer", (authorizer_callback,), {}, (None,))

    def set_progress_handler(self, progress_handler: Any, n: int) -> None:
        """Set until this face closes (or its test ends)."""
        self._register("set_progress_handler", (progress_handler, n), {}, (None, 0))

    def set_trace_callback(self, trace_callback: Any) -> None:
        """Set until this face closes (or its test ends); it sees the sandbox's SAVEPOINTs too."""
        self._register("set_trace_callback", (trace_callback,), {}, (None,))

    def iterdump(self) -> Iterator[str]:
        """The database as SQL, as this test sees it (it only reads)."""
        if self.closed:
            raise self.closed_error()
        dump: Iterator[str] = self.session.connection.iterdump()
        return dump

    def backup(self, target: Any, **kwargs: Any) -> None:
        """Copy the database as this test sees it into ``target`` (an empty ``sqlite3.Connection``), as SQL.

        SQLite's page copy cannot read a database that its own connection is writing (it waits for ever), so
        the copy is ``iterdump()`` run on ``target``; ``pages``, ``progress`` and ``sleep`` have nothing to do.
        Copying into a sandbox connection is refused: it would overwrite the test database outside its
        transaction.
        """
        if isinstance(target, SandboxConnection):
            raise SandboxRefusedError(
                "backup() into a sandbox connection",
                "it would overwrite the test database outside its transaction",
            )
        if kwargs.get("name", "main") != "main":
            raise sqlite3.OperationalError(f"unknown database {kwargs['name']}")
        target.executescript("\n".join(self.iterdump()))


_FACTORY_FACES: dict[tuple[type, type], type[SQLiteConnection]] = {}


def _face_of(base: type[SQLiteConnection], factory: Any) -> type[SQLiteConnection]:
    """A face class carrying the Python methods and properties of a ``sqlite3.Connection`` subclass."""
    if not (isinstance(factory, type) and issubclass(factory, sqlite3.Connection)):
        raise TypeError(f"factory must be a subclass of sqlite3.Connection, not {factory!r}")
    face = _FACTORY_FACES.get((base, factory))
    if face is None:
        lent: dict[str, Any] = {}
        for klass in reversed(factory.__mro__[: factory.__mro__.index(sqlite3.Connection)]):
            lent.update((k, v) for k, v in vars(klass).items() if not k.startswith("__"))
        lent["__doc__"] = f"The sandbox's sqlite3 face with the methods of {factory.__qualname__}."
        face = _FACTORY_FACES[base, factory] = type(f"Sandbox{factory.__name__}", (base,), lent)
    return face
