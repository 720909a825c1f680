"""Counting the application's statements and capturing its ``on_commit`` callbacks, for a block of a test.

`capture_queries` records each statement the application sends on any connection of this library (its
engines' sessions, pinned SQLAlchemy engines, the DB-API connections it hands out) while the block runs: its
SQL as written (placeholders, no parameter values) and the first line of the caller's code that led to it. The
library's own traffic (``BEGIN``, ``SAVEPOINT``, ``RELEASE``, statement savepoints, its own lookups) is never
recorded, and neither is transaction control the application asks for (``commit()``, ``rollback()``, or
statements such as the ``SAVEPOINT`` of SQLAlchemy's ``begin_nested()``): the count is the same inside or
outside a transaction block. `assert_num_queries` fails when the count differs.

`capture_on_commit` collects the ``on_commit`` callbacks of the top-level commits made while the block runs,
instead of running them at the commit; with ``execute=True`` each runs once when the block ends.

The plugin's fixtures (``db_assert_num_queries``, ``db_capture_queries``, ``db_capture_on_commit``) hand these
out; they work in sync and ``async def`` tests alike (a plain ``with``; ``async with`` awaits async callbacks).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, overload

from .core import AsyncEngine, Engine
from .core.hooks import COMMIT_CAPTURES, STATEMENT_OBSERVERS
from .errors import ConfigurationError, QueryCountError, TxScopeError
from .places import Place, caller_place, describe_place

__all__ = [
    "OnCommitCapture",
    "Query",
    "QueryCapture",
    "assert_num_queries",
    "capture_on_commit",
    "capture_queries",
]

# Transaction control the application sends as SQL text: not counted, as the library's own is not.
_CONTROL = re.compile(r"\s*(SAVEPOINT|RELEASE|ROLLBACK|COMMIT|BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
_SITE = re.compile(r"(.*):([0-9]+ in .*)")
_ENGINE_FORMS = (
    "a pytest_txscope Engine or AsyncEngine, or a SQLAlchemy Engine or AsyncEngine pinned to the test's "
    "sandbox (listed in txscope_engines)"
)


class Query:
    """One statement the application sent: its SQL (as written, without parameter values) and where."""

    __slots__ = ("_place", "_session", "sql")

    def __init__(self, sql: str, place: Place | None, session: Any) -> None:
        self.sql = sql
        """The statement's text, placeholders as the code wrote them."""
        self._place = place
        self._session = session

    @property
    def site(self) -> str:
        """``file:line in function``: the first line in the caller's code (outside this library, SQLAlchemy
        and the drivers) that led to the statement; the file relative to the current directory."""
        return _short(describe_place(self._place))

    def __repr__(self) -> str:
        return f"<Query {self.sql!r} at {self.site}>"


class QueryCapture(Sequence[Query]):
    """The statements the application sent during a `capture_queries` block (a sequence of `Query`), so
    far while the block runs. ``sqls`` lists their texts."""

    def __init__(self, engine: Any = None) -> None:
        self._sessions = _sessions_filter(engine)  # first: it refuses what is not an engine
        self._scope = "" if engine is None else f" on {_describe(engine)}"
        self._all: list[Query] = []

    def _observe(self, sql: str, lane: Any) -> None:
        session = lane.owner
        if _CONTROL.match(sql) is not None:  # SQLAlchemy's begin_nested() sends SAVEPOINT & co. as statements
            return
        if _has_sqlalchemy() and _sqlalchemy().connecting(session):  # set-up of a new connection (SET NAMES)
            return
        # Whether it is the engine's is told now, while the connection is live: a pool that closes connections
        # on return (SQLAlchemy's NullPool, aiosqlite's default before 2.0.38) leaves none to ask afterwards.
        if self._sessions is not None and not self._sessions()(session):
            return
        self._all.append(Query(sql, caller_place(inspect.currentframe()), session))

    @property
    def queries(self) -> list[Query]:
        """The statements recorded (on the engine given, if one was)."""
        return list(self._all)

    @property
    def sqls(self) -> list[str]:
        """The texts of the statements recorded."""
        return [query.sql for query in self.queries]

    @overload
    def __getitem__(self, index: int) -> Query: ...
    @overload
    def __getitem__(self, index: slice) -> list[Query]: ...
    def __getitem__(self, index: int | slice) -> Query | list[Query]:
        return self.queries[index]

    def __len__(self) -> int:
        return len(self.queries)

    def __iter__(self) -> Iterator[Query]:
        return iter(self.queries)

    def __enter__(self) -> QueryCapture:
        STATEMENT_OBSERVERS.append(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        STATEMENT_OBSERVERS.remove(self._observe)

    def lines(self) -> list[str]:
        """One line per statement, for messages: ``SELECT ... (at test_app.py:12 in view)``."""
        return [f"{_one_line(query.sql)} (at {query.site})" for query in self.queries]


def capture_queries(*, engine: Any = None) -> QueryCapture:
    """A context manager recording the application's statements (see the module); ``engine`` narrows it to
    one engine's. Raises `ConfigurationError` for an ``engine`` that is none of those it accepts."""
    return QueryCapture(engine)


class _NumQueries:
    def __init__(self, num: int, engine: Any) -> None:
        if type(num) is not int or num < 0:
            raise ConfigurationError(
                f"num={num!r} is not valid; give the number of statements expected, an int of 0 or more"
            )
        self.num = num
        self.capture = QueryCapture(engine)

    def __enter__(self) -> QueryCapture:
        return self.capture.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        __tracebackhide__ = True  # pytest: the test's 'with' line and the message say it all
        self.capture.__exit__()
        if kind is None and len(self.capture) != self.num:
            raise QueryCountError(self.num, self.capture.lines(), self.capture._scope)


def assert_num_queries(num: int, *, engine: Any = None) -> _NumQueries:
    """A context manager that raises `QueryCountError` (an ``AssertionError``) at the end of its block when
    the application sent another number of statements than ``num`` (on ``engine``, if given), listing them.
    It gives the `QueryCapture` for further checks: ``with assert_num_queries(2) as queries:``."""
    return _NumQueries(num, engine)


class OnCommitCapture(list[Callable[[], object]]):
    """The ``on_commit`` callbacks collected during a `capture_on_commit` block, in the order they were
    registered (a list); with ``execute=True`` each is run once when the block ends without an exception."""

    def __init__(self, *, execute: bool = False) -> None:
        if execute is not True and execute is not False:
            raise ConfigurationError(f"execute={execute!r} is not valid; use execute=True or execute=False")
        super().__init__()
        self.execute = execute

    def __enter__(self) -> OnCommitCapture:
        COMMIT_CAPTURES.append(self.extend)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        COMMIT_CAPTURES.remove(self.extend)
        if kind is None and self.execute:
            first: Exception | None = None
            for callback in list(self):  # each runs, even after one raised; the first error is raised after
                try:
                    result = callback()
                    if inspect.isawaitable(result):
                        _not_awaitable(result)
                except Exception as error:
                    first = first or error
            if first is not None:
                raise first

    async def __aenter__(self) -> OnCommitCapture:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        COMMIT_CAPTURES.remove(self.extend)
        if kind is None and self.execute:
            first: Exception | None = None
            for callback in list(self):  # as __exit__, awaiting what a coroutine function returned
                try:
                    result = callback()
                    if inspect.isawaitable(result):
                        await result
                except Exception as error:
                    first = first or error
            if first is not None:
                raise first


def capture_on_commit(*, execute: bool = False) -> OnCommitCapture:
    """A context manager collecting the ``on_commit`` callbacks of the top-level commits made in its block
    (see `OnCommitCapture`); a rolled-back transaction adds none."""
    return OnCommitCapture(execute=execute)


# ------------------------------------------------------------------------------------------------ helpers
def _not_awaitable(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()  # never awaited: no "coroutine was never awaited" warning on top of the error
    raise TxScopeError(
        "an on_commit callback is a coroutine function, which a plain 'with' block cannot await; write "
        "'async with db_capture_on_commit(execute=True)' in the async test"
    )


def _sessions_filter(engine: Any) -> Callable[[], Callable[[Any], bool]] | None:
    """What tells, when asked, whether a recorded statement's session belongs to ``engine``; None for all."""
    if engine is None:
        return None
    if isinstance(engine, AsyncEngine):
        engine = engine.sync_engine
    if isinstance(engine, Engine):
        ours = engine

        def of_engine() -> Callable[[Any], bool]:
            # A DB-API connection handed to a pinned SQLAlchemy engine has a session of the sandbox's engine:
            # its statements are that SQLAlchemy engine's, not ours.
            taken = (
                {id(c.session) for c in _sqlalchemy().served_connections()} if _has_sqlalchemy() else set()
            )
            return lambda session: session.engine is ours and id(session) not in taken

        return of_engine
    if _has_sqlalchemy() and _sqlalchemy().is_sqlalchemy_engine(engine):
        sa = _sqlalchemy()
        if sa.pinned_connections(engine) is None:
            raise ConfigurationError(
                f"engine={sa.describe_engine(engine)} is not pinned to the test's sandbox, so none of its "
                "statements pass the sandbox; list it in txscope_engines, or pass another engine"
            )

        def of_sa_engine() -> Callable[[Any], bool]:
            sessions = {id(c.session) for c in sa.pinned_connections(engine) or ()}
            return lambda session: id(session) in sessions

        return of_sa_engine
    raise ConfigurationError(
        f"engine= got {type(engine).__name__}, which is not an engine; pass {_ENGINE_FORMS}"
    )


def _describe(engine: Any) -> str:
    """The engine, safe to print (the password masked)."""
    if isinstance(engine, AsyncEngine):
        return f"AsyncEngine({engine.sync_engine.target})"
    if isinstance(engine, Engine):
        return f"Engine({engine.target})"
    return str(_sqlalchemy().describe_engine(engine))


def _has_sqlalchemy() -> bool:
    return "sqlalchemy" in sys.modules  # an engine of SQLAlchemy's exists only once it was imported


def _sqlalchemy() -> Any:
    from . import sqlalchemy

    return sqlalchemy


def _one_line(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _short(site: str) -> str:
    """``file:line in function`` with the file relative to the current directory when it is below it."""
    match = _SITE.fullmatch(site)
    if match is None or not os.path.isabs(match[1]):
        return site
    relative = os.path.relpath(match[1])
    return site if relative.startswith("..") else f"{relative}:{match[2]}"
