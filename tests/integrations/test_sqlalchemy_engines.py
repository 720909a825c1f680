"""SQLAlchemy engines that cannot be pinned, or were not: each gets one clear error, and nothing they write
survives a sandboxed test.

- an application engine aimed at another database than the test database (only the backend was compared);
- an engine that is not in ``txscope_engines`` but connects to the test database during a sandboxed test (its
  writes were committed for real, without a word);
- asyncio engines that were not pinned (their commits were real);
- drivers pytest-txscope does not drive.

The projects are those of `tests/integrations/test_sqlalchemy.py`: an application module ``models`` with an
engine made at import time, pinned through ``txscope_engines``; a conftest rebinds that engine where a test
needs another one. The last generated test checks from an unpinned engine that nothing survived.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator

import pytest

from pytest_txscope import DatabaseURL, EngineMismatchError
from pytest_txscope.sqlalchemy_checks import check_pinnable, same_database

from ..backends import Backend
from .test_sqlalchemy import HEAD, OUTSIDE_CHECK, drop_project_databases, sa_project

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

STOPPED_ENGINES = (
    "*! stopping: pytest-txscope could not set up the application's engines; see the error above !*"
)


@pytest.fixture(scope="module", autouse=True)
def _drop_databases_at_the_end() -> Iterator[None]:
    yield
    drop_project_databases()


def rebind(backend: Backend, code: str) -> str:
    """A conftest whose session fixture runs ``code`` (with ``db_engine``, ``models``, ``create_engine`` and
    ``sqlalchemy_url`` at hand) before the first sandboxed test: where an application makes its engines."""
    needs = "db_engine, _app_engine_on_the_test_database" if backend.family == "sqlite" else "db_engine"
    body = "\n".join(f"    {line}" for line in code.strip().splitlines())
    return f"""import pytest


@pytest.fixture(scope="session", autouse=True)
def _app_engines_made_here({needs}):
    from sqlalchemy import create_engine
    from pytest_txscope.sqlalchemy import sqlalchemy_url
    import models

{body}
"""


def other_database(backend: Backend) -> str:
    """Code for a ``DatabaseURL`` of another database on the test database's server (or directory)."""
    if backend.family == "sqlite":
        return "db_engine.url.with_database(db_engine.url.database.replace('txscope_test', 'other'))"
    return "db_engine.url.with_database(db_engine.url.database + '_other')"


def async_url(backend: Backend) -> str:
    """Code for the test database's URL through an asyncio driver (the test extra installs each)."""
    if backend.family == "mysql":
        assert importlib.util.find_spec("aiomysql"), "the test extra installs aiomysql"
        return "sqlalchemy_url(db_engine.url).set(drivername='mysql+aiomysql')"
    if backend.family == "sqlite":
        assert importlib.util.find_spec("aiosqlite"), "the test extra installs aiosqlite"
        return "sqlalchemy_url(db_engine.url).set(drivername='sqlite+aiosqlite')"
    return "sqlalchemy_url(db_engine.url).set(drivername='postgresql+psycopg_async')"


def stopped_at_setup(result: pytest.RunResult, *lines: str) -> None:
    """The first sandboxed test reported ``lines`` at its set-up, without a traceback, and the run stopped."""
    text = result.stdout.str()
    assert "Traceback" not in text, text
    assert "_ _ _ _" not in text, text  # the separator between a traceback's frames
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*_ ERROR at setup of test_1_sandboxed _*", *lines], consecutive=True)
    result.stdout.fnmatch_lines([STOPPED_ENGINES])


SANDBOXED = """
def test_1_sandboxed(db_session):
    pass


def test_2_sandboxed(db_session):
    pass
"""


# ------------------------------------------------------------------------------------ another database
def test_an_engine_on_another_database_is_refused(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: pinned to the test database's connection all the same (only the backend was compared), so the
    # application's "other database" silently was the test database.
    code = f"models.engine = create_engine(sqlalchemy_url({other_database(backend)}))"
    project = sa_project(pytester, backend, monkeypatch, conftest=rebind(backend, code))
    project.makepyfile(test_app=SANDBOXED)
    result = project.runpytest()
    stopped_at_setup(
        result,
        "pytest_txscope.errors.EngineMismatchError: txscope_engines: Engine(*other*) is aimed at "
        "another database than the test database *; pinning would run its work in the test database without a "
        "word, and no txscope_databases line names its database; if the application uses a second database, add "
        "the ini line 'txscope_databases = *other = *other*' and opt tests in with "
        "@pytest.mark.txscope(databases=[[]'default', '*other']); else point the engine at the test database "
        "(build its "
        "URL from the same setting as txscope_url, or from pytest_txscope.sqlalchemy.sqlalchemy_url(db_engine.url) "
        "in a session-scoped fixture that runs before the first sandboxed test), or leave it out of "
        "txscope_engines",
    )


# ------------------------------------------------------------------------------------ another driver
# The engine's driver when the test database is reached through the other one. (SQLAlchemy's plain postgresql://
# is psycopg2 before 2.1 and psycopg from 2.1 on, its plain mysql:// mysqlclient: the drivers are spelt out.)
OTHER_DRIVER = {
    "postgresql": ("postgresql+psycopg2", "psycopg2", "psycopg"),
    "postgresql-psycopg2": ("postgresql+psycopg", "psycopg", "psycopg2"),
    "mysql": ("mysql+mysqldb", "mysqldb", "pymysql"),
    "mysql-mysqldb": ("mysql+pymysql", "pymysql", "mysqldb"),
}


@pytest.mark.backends("postgresql", "mysql")
def test_an_engine_on_another_driver_than_the_test_databases_is_refused_naming_both(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 12, first row. Before: SQLAlchemy's psycopg2 dialect (its default for postgresql:// before 2.1) was
    # handed the sandbox's psycopg connection: "TypeError: argument 2 must be a connection, cursor or None".
    drivername, driver, test_driver = OTHER_DRIVER[backend.name]
    code = f"models.engine = create_engine(sqlalchemy_url(db_engine.url).set(drivername={drivername!r}))"
    project = sa_project(pytester, backend, monkeypatch, conftest=rebind(backend, code))
    project.makepyfile(test_app=SANDBOXED)
    result = project.runpytest()
    stopped_at_setup(
        result,
        f"pytest_txscope.errors.EngineMismatchError: txscope_engines: Engine(*) uses the {driver} driver but "
        f"the test database is reached through {test_driver} (*); name the same driver in both URLs, e.g. "
        f"{backend.family}+{driver}:// for the test database",
    )


def test_another_spelling_of_the_test_database_is_accepted(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same database, written otherwise: localhost for 127.0.0.1 with the default port spelt out, or a
    # relative path to the same SQLite file.
    if backend.family == "sqlite":
        code = """
import os
url = sqlalchemy_url(db_engine.url)
models.engine = create_engine(url.set(database=os.path.relpath(url.database)))
"""
    else:
        port = 5432 if backend.family == "postgresql" else 3306
        code = f"""
url = sqlalchemy_url(db_engine.url)
assert url.host == "127.0.0.1" and url.port in (None, {port}), url
models.engine = create_engine(url.set(host="localhost", port={port}))
"""
    project = sa_project(pytester, backend, monkeypatch, conftest=rebind(backend, code))
    project.makepyfile(
        test_app=HEAD
        + """

def test_pinned(db_session):
    with models.engine.begin() as conn:
        conn.execute(insert(Author.__table__).values(name="pinned"))
    assert sql_names(db_session) == ["pinned", "seed"]
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=2)


@pytest.mark.backends("postgresql", "mysql")
def test_the_user_is_not_compared(backend: Backend) -> None:
    # A pinned engine runs on the test database's connection, as its user: the application's own user would
    # only have changed what it may do.
    test = DatabaseURL.parse(backend.url)
    assert same_database(dataclasses.replace(test, user="someone_else"), test)
    assert not same_database(dataclasses.replace(test, port=1), test)


@pytest.mark.backends("postgresql", "mysql")
def test_an_xdist_worker_matches_its_own_database_only(backend: Backend) -> None:
    # Under pytest-xdist the test database is the worker's (<name>_gw3): an engine aimed at it is pinned, one
    # aimed at the configured name is refused with the reason.
    import sqlalchemy as sa

    from pytest_txscope.provision import worker_url
    from pytest_txscope.sqlalchemy import sqlalchemy_url

    worker = worker_url(DatabaseURL.parse(backend.url).with_database("shop_test"), "gw3")
    on_worker = sa.create_engine(sqlalchemy_url(worker))
    on_base = sa.create_engine(sqlalchemy_url(worker.with_database("shop_test")))
    driver = on_worker.dialect.driver
    check_pinnable(on_worker, worker, driver, "gw3")
    with pytest.raises(
        EngineMismatchError, match=r"each worker runs on a database of its own \(here shop_test_gw3\)"
    ):
        check_pinnable(on_base, worker, driver, "gw3")


# ------------------------------------------------------------------------------ engines nobody pinned
UNPINNED_TESTS = """

def test_writes_through_an_unpinned_engine(db_session):
    with models.reporting.begin() as conn:
        conn.execute(insert(Author.__table__).values(name="escaped"))


def test_catches_the_error(db_session):
    try:
        with Session(models.reporting) as session:
            session.add(Author(name="escaped"))
            session.commit()
    except Exception:
        pass  # an application that turns every error into a 500


def test_pinned_engines_and_their_option_engines_are_fine(db_session):
    with models.engine.execution_options(logging_token="app").begin() as conn:
        conn.execute(insert(Author.__table__).values(name="pinned"))
    assert sql_names(db_session) == ["pinned", "seed"]
"""


def test_an_unpinned_engine_on_the_test_database_is_refused(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the unpinned engine connected for real and its rows were committed, without a word.
    code = "models.reporting = create_engine(sqlalchemy_url(db_engine.url))"
    project = sa_project(pytester, backend, monkeypatch, conftest=rebind(backend, code))
    project.makepyfile(test_app=HEAD + UNPINNED_TESTS + OUTSIDE_CHECK)
    result = project.runpytest()
    result.assert_outcomes(passed=3, failed=1, errors=1)
    refused = (
        "*pytest_txscope.errors.UnpinnedEngineError: Engine(*) connected to the test database (*) at "
        "*test_app.py:{line} in {test}, but it is not pinned to the test's sandbox: what it writes would be "
        "committed for real and outlive the test; add the line 'models:reporting' to txscope_engines so that "
        "the sandbox pins it, or mark the test @pytest.mark.txscope(commit=True) if it must commit for real"
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_writes_through_an_unpinned_engine _*",
            refused.format(line=15, test="test_writes_through_an_unpinned_engine"),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_catches_the_error _*",
            refused.format(line=23, test="test_catches_the_error"),
        ]
    )


def test_an_engine_on_another_database_is_left_alone(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the test database is watched: an engine elsewhere (another service's database) is not the sandbox's.
    code = "models.reporting = create_engine('sqlite://')"
    project = sa_project(pytester, backend, monkeypatch, conftest=rebind(backend, code))
    project.makepyfile(
        test_app=HEAD
        + """

def test_elsewhere(db_session):
    from sqlalchemy import text

    with models.reporting.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=2)


# ------------------------------------------------------------------------------------ asyncio engines
@pytest.mark.backends(
    "sqlite-file", "postgresql", "mysql", exact=True
)  # psycopg2, mysqlclient: no async twin
@pytest.mark.parametrize("entry", ["models:aengine", "models:aengine.sync_engine"])
def test_an_async_engine_in_txscope_engines_is_pinned(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    # Before: refused with EngineMismatchError ("pytest-txscope cannot pin asyncio engines yet"); earlier, its
    # sync_engine failed every set-up with a raw MissingGreenlet from SQLAlchemy.
    code = f"""
from sqlalchemy.ext.asyncio import create_async_engine
models.aengine = create_async_engine({async_url(backend)})
"""
    project = sa_project(pytester, backend, monkeypatch, conftest=rebind(backend, code))
    project.makepyfile(
        test_app=HEAD
        + """
import asyncio


def test_async_write(db_session):
    async def write():
        async with models.aengine.begin() as conn:
            await conn.execute(insert(Author.__table__).values(name="pinned"))

    asyncio.run(write())
    assert sql_names(db_session) == ["pinned", "seed"]
"""
        + OUTSIDE_CHECK
    )
    project.runpytest("-o", f"txscope_engines={entry}").assert_outcomes(passed=2)


def test_an_unpinned_async_engine_is_refused(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: committed for real, without a word.
    code = f"""
from sqlalchemy.ext.asyncio import create_async_engine
models.aengine = create_async_engine({async_url(backend)})
"""
    project = sa_project(pytester, backend, monkeypatch, conftest=rebind(backend, code))
    project.makepyfile(
        test_app=HEAD
        + """
import asyncio


def test_async_write(db_session):
    async def write():
        try:
            async with models.aengine.begin() as conn:
                await conn.execute(insert(Author.__table__).values(name="escaped"))
        finally:
            # On the loop that opened its connections: disposing from another loop leaves aiomysql's
            # sockets unclosed until they are collected, in some later test.
            await models.aengine.dispose()

    asyncio.run(write())
"""
        + OUTSIDE_CHECK
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*pytest_txscope.errors.UnpinnedEngineError: AsyncEngine(*+*) connected to the test database (*) at "
            "*test_app.py:* in write, but it is not pinned to the test's sandbox: what it writes would be "
            "committed for real and outlive the test; add the line 'models:aengine' to txscope_engines so that "
            "the sandbox pins it, or mark the test @pytest.mark.txscope(commit=True) if it must commit for real"
        ]
    )


# ----------------------------------------------------------------------------------- unknown drivers
@pytest.mark.backends("postgresql")
def test_an_engine_on_a_driver_pytest_txscope_does_not_drive(backend: Backend) -> None:
    import psycopg2
    import sqlalchemy as sa

    test = DatabaseURL.parse(backend.url)
    # pg8000 need not be installed: the engine is refused before it connects, on its URL alone.
    app = sa.create_engine("postgresql+pg8000://u:secret@h/db_test?password=secret", module=psycopg2)
    with pytest.raises(EngineMismatchError) as info:
        check_pinnable(app, test, "psycopg", None)
    assert str(info.value) == (
        "txscope_engines: Engine(postgresql+pg8000://u:***@h/db_test?password=***) uses the pg8000 driver, "
        "which pytest-txscope cannot pin (its sandbox connections are made with one of: postgresql+psycopg://, "
        f"postgresql+psycopg2://); create the engine on one of those, the same as the test database's "
        f"({test.scheme}://)"
    )


MISSING_DRIVER_APP = """
import sys
from sqlalchemy import create_engine

{hide}
engine = create_engine("{url}")
"""


@pytest.mark.backends("sqlite-file")  # the plugin's embedded database: the engine never gets to connect
@pytest.mark.parametrize(
    ("url", "hide", "fix"),
    [
        (
            "postgresql+pg8000://app@localhost/shop_test",
            "",
            "the application's engine names a driver that is not installed (pg8000), and that pytest-txscope "
            "cannot pin engines on anyway; use one it can, installed with pip install 'pytest-txscope[<extra>]': "
            "sqlite3 ([sqlite]), psycopg ([postgresql]), psycopg2 ([psycopg2]), asyncpg ([asyncpg]), "
            "PyMySQL ([mysql]), mysqlclient ([mysqlclient])",
        ),
        (
            "postgresql+psycopg2://app@localhost/shop_test",
            "sys.modules['psycopg2'] = None  # as if it were not installed",
            "the application's engine names a driver that is not installed; install it with: "
            "pip install 'pytest-txscope[psycopg2]'",
        ),
    ],
    ids=["unknown", "not-installed"],
)
def test_an_engine_whose_driver_is_missing(
    pytester: pytest.Pytester, backend: Backend, url: str, hide: str, fix: str
) -> None:
    # Before: "fix that error in the module: it happens when the module is imported", about the missing driver.
    pytester.makepyfile(shop=MISSING_DRIVER_APP.format(url=url, hide=hide))
    pytester.makefile(".ini", pytest="[pytest]\naddopts = -p no:randomly\ntxscope_engines = shop:engine\n")
    pytester.makepyfile(test_app=SANDBOXED)
    result = pytester.runpytest_subprocess()  # hiding psycopg2 must not reach this process
    stopped_at_setup(
        result,
        "pytest_txscope.errors.ImportPathError: txscope_engines entry 'shop:engine' cannot be imported: "
        f"ModuleNotFoundError: * (raised at *shop.py:5); {fix.replace('[', '[[]')}",  # fnmatch: [ is a class
    )


@pytest.mark.backends("sqlite-file")  # no database is reached: pytest stops at start-up
def test_a_test_database_url_on_a_driver_pytest_txscope_does_not_drive(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    pytester.makepyfile(test_app=SANDBOXED)
    result = pytester.runpytest(
        "-p", "no:randomly", "-o", "txscope_url=postgresql+pg8000://u:secret@h/db_test"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: txscope_url: unknown driver 'pg8000' in database URL postgresql+pg8000://u:***@h/db_test; for "
            "this database use one of: postgresql+psycopg://, postgresql+psycopg2://, postgresql+asyncpg://, "
            "postgresql+psycopg_async:// "
            "(the first is the default, also used when the scheme names no driver)"
        ]
    )
    assert "secret" not in result.stdout.str() + result.stderr.str()
