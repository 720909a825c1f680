"""The plugin's fixtures for counting statements and capturing ``on_commit`` callbacks in a block of a test
(`pytest_txscope.capture` does the work; these turn a bad argument into one line, without a traceback)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pytest

from .capture import OnCommitCapture, QueryCapture, assert_num_queries, capture_on_commit, capture_queries
from .errors import ConfigurationError
from .url import mask_password

__all__ = ["db_assert_num_queries", "db_capture_on_commit", "db_capture_queries"]

_T = TypeVar("_T")
_FUNCTION = re.compile(r"^[a-z_]+\(\) ")


def _checked(fixture: str, make: Callable[..., _T], valid: str) -> Callable[..., _T]:
    """``make`` as the fixture hands it out: a bad argument fails the test with one line, no traceback."""

    def checked(*args: Any, **kwargs: Any) -> _T:
        __tracebackhide__ = True
        try:
            return make(*args, **kwargs)
        except (ConfigurationError, TypeError) as exc:
            # Python names the function behind the fixture ("capture_queries() got an unexpected ..."): cut.
            problem = _FUNCTION.sub("", mask_password(str(exc)), count=1)
        _refuse(fixture, problem, valid)  # outside the except: no "during handling" chain in the report

    return checked


def _refuse(fixture: str, problem: str, valid: str) -> NoReturn:
    __tracebackhide__ = True
    # Reported in the test's own words, without our frames (as the plugin's other refusals); a URL in an
    # engine's description has its password masked already, masked again in case.
    pytest.fail(f"{fixture}: {problem}; valid arguments: {valid}", pytrace=False)


@pytest.fixture
def db_assert_num_queries() -> Callable[..., Any]:
    """Check how many statements the code in a block sends (function scope)::

        def test_list(db_assert_num_queries):
            with db_assert_num_queries(2):
                app.list_orders()

    The block fails with ``expected 2 queries, 3 were sent:`` and one numbered line per statement (its SQL and
    the line of your code that led to it) when the count differs. Counted: the application's statements on
    every engine and connection of the sandbox (pytest-txscope engines, pinned SQLAlchemy engines, DB-API
    connections); never BEGIN, SAVEPOINT, RELEASE or other transaction control. ``engine=`` narrows it to one
    engine; ``as queries`` gives the captured statements. Works in ``async def`` tests too (a plain ``with``).
    """
    return _checked("db_assert_num_queries", assert_num_queries, "num (an int), engine=None")


@pytest.fixture
def db_capture_queries() -> Callable[..., QueryCapture]:
    """Capture the statements the code in a block sends, for your own assertions (function scope)::

        def test_list(db_capture_queries):
            with db_capture_queries() as queries:
                app.list_orders()
            assert all(q.sql.startswith("SELECT") for q in queries)

    The same statements ``db_assert_num_queries`` counts, each a `pytest_txscope.capture.Query` (``.sql``,
    ``.site``); ``queries.sqls`` lists the texts; ``engine=`` narrows it to one engine.
    """
    return _checked("db_capture_queries", capture_queries, "engine=None")


@pytest.fixture
def db_capture_on_commit() -> Callable[..., OnCommitCapture]:
    """Collect the ``on_commit`` callbacks of the application's top-level commits in a block (function scope)::

        def test_signup(db_capture_on_commit):
            with db_capture_on_commit() as callbacks:
                app.sign_up("ada")  # its commit schedules a mail
            assert len(callbacks) == 1

    Without ``execute=True`` the callbacks are only collected (they do not run at the commit); with it each
    runs once when the block ends. A rolled-back transaction adds none. ``async with`` awaits coroutine
    callbacks in ``async def`` tests.
    """
    return _checked("db_capture_on_commit", capture_on_commit, "execute=False or execute=True")
