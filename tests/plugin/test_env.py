"""``txscope_env``: the application's settings, read at import, name the test database (each xdist worker's
own); what a user sees when a fixture of theirs connects before the plugin built the database."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from pytest_txscope import DatabaseURL
from pytest_txscope.plugin_env import DIR_VARIABLE

from ..backends import TXSCOPE_TEST_PASSWORD, Backend, password_url, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql", exact=True)

SCHEMA = "CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL);\n"
VARIABLES = ("APP_URL", "APP_DB", "APP_DSN")
ENV_LINES = [
    "txscope_env =",
    "    APP_URL={url}",
    "    APP_DB={database}",
    "    APP_DSN=host={host} port={port} user={user} dbname={database}",
]
# The application's settings, read when the conftest is imported; a log line per process (xdist worker).
CONFTEST = """
import os

AT_IMPORT = {name: os.environ.get(name) for name in ("APP_URL", "APP_DB", "APP_DSN")}
with open("imports.log", "a") as log:
    log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {AT_IMPORT['APP_DB']}\\n")
"""
TESTS = """
import os

import conftest
from pytest_txscope import DatabaseURL


def test_settings_read_at_import_name_the_test_database(db_engine):
    assert conftest.AT_IMPORT == {name: os.environ[name] for name in conftest.AT_IMPORT}
    assert DatabaseURL.parse(os.environ["APP_URL"]) == db_engine.url
    assert os.environ["APP_DB"] == db_engine.url.database


def test_the_app_reaches_the_database_through_the_variable(db_session):
    from pytest_txscope import Engine

    db_session.execute("INSERT INTO users (id, name) VALUES (1, 'ada')")
    app = Engine.from_url(os.environ["APP_URL"])
    with app.session() as s:  # the sandbox pins db_engine only: another connection, committed data only
        assert s.fetchscalar("SELECT count(*) FROM users") == 0
    app.dispose()
"""


def project_url(backend: Backend, stem: str) -> str | None:
    """The generated project's database: the embedded default for SQLite, one of its own on a server."""
    if backend.family == "sqlite":
        return None
    return sibling_url(backend, stem).partition("?")[0]


def make_project(
    pytester: pytest.Pytester, url: str | None, *extra: str, addopts: str = "-p no:randomly"
) -> None:
    pytester.makefile(".sql", schema=SCHEMA)
    ini = ["[pytest]", "txscope_schema = schema.sql", f"addopts = {addopts}", *extra]
    if url:
        ini.append(f"txscope_url = {url}")
    pytester.makefile(".ini", pytest="\n".join(ini))


def expected_header(backend: Backend, url: str | None) -> list[str]:
    if url is None:
        database = f"{tempfile.gettempdir()}/pytest-txscope-*/txscope_test.db"
        return [
            f"txscope: embedded SQLite in {database} [[]sqlite, from default[]]; rollback per test, statement "
            "savepoints off",
            f"txscope env: APP_URL=sqlite:///{database}?journal_mode=wal",
            f"txscope env: APP_DB={database}",
            f"txscope env: APP_DSN=host= port= user= dbname={database}",
        ]
    parsed = DatabaseURL.parse(url)
    return [
        f"txscope env: APP_URL={url}",
        f"txscope env: APP_DB={parsed.database}",
        f"txscope env: APP_DSN=host={parsed.host} port={parsed.port} user={parsed.user} dbname={parsed.database}",
    ]


def test_variables_are_set_before_the_conftest_is_imported_and_put_back_after(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = project_url(backend, "env")
    make_project(pytester, url, *ENV_LINES)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_app=TESTS)
    monkeypatch.setenv("APP_DB", "the user's own value")
    result = pytester.runpytest()  # in this process: what it sets must not outlive it
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(expected_header(backend, url), consecutive=True)
    assert os.environ["APP_DB"] == "the user's own value"
    assert [name for name in (*VARIABLES, DIR_VARIABLE) if name in os.environ] == ["APP_DB"]
    if url is None:  # the embedded default's folder is the run's own, removed with it
        folder = re.search(r"embedded SQLite in (\S+)/txscope_test\.db", result.stdout.str())
        assert folder is not None
        assert not Path(folder.group(1)).exists()


def test_each_xdist_worker_gets_its_own_database_in_the_variables(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = project_url(backend, "envx")
    # Only the plugins the project names (-p), loaded from the command line: before the first conftest too.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    make_project(pytester, url, *ENV_LINES, addopts="-p txscope -p xdist")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_app=TESTS
        + "\n\ndef test_third(db_session):\n    pass\n\n\ndef test_fourth(db_session):\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-n", "2", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*[[]gw0[]]*PASSED*"])
    result.stdout.fnmatch_lines(["*[[]gw1[]]*PASSED*"])
    result.stdout.fnmatch_lines(
        [
            *expected_header(backend, url)[-3:],
            "txscope env: set by each pytest-xdist worker to its own database *",
        ],
        consecutive=True,
    )
    seen = dict(line.split(" ", 1) for line in (pytester.path / "imports.log").read_text().splitlines())
    if url is None:
        folder = seen["-"].rpartition("/")[0]
        assert seen == {
            "-": f"{folder}/txscope_test.db",
            "gw0": f"{folder}/gw0/txscope_test_gw0.db",
            "gw1": f"{folder}/gw1/txscope_test_gw1.db",
        }
        assert not Path(folder).exists()
    else:
        name = DatabaseURL.parse(url).database
        assert seen == {"-": name, "gw0": f"{name}_gw0", "gw1": f"{name}_gw1"}


PASSWORD_TESTS = """
import os

from pytest_txscope import DatabaseURL, Engine
from pytest_txscope.sqlalchemy import sqlalchemy_url


def test_the_variables_carry_the_password(db_engine):
    assert DatabaseURL.parse(os.environ["PW_URL"]) == db_engine.url
    assert os.environ["PW"] == db_engine.url.password
    assert os.environ["SA_URL"] == sqlalchemy_url(db_engine.url).render_as_string(hide_password=False)
    app = Engine.from_url(os.environ["PW_URL"])
    with app.session() as s:
        assert s.fetchscalar("SELECT count(*) FROM users") == 0
    app.dispose()
"""


@pytest.mark.backends("postgresql", "mysql")  # every driver: the SQLAlchemy spelling names it
def test_the_password_reaches_the_app_and_never_the_output(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    secret = DatabaseURL.parse(password_url(backend))
    name = DatabaseURL.parse(sibling_url(backend, "envpw")).database
    url = secret.with_database(name)
    make_project(
        pytester,
        url.revealed(),
        "txscope_env =",
        "    PW_URL={url}",
        "    PW={password}",
        "    SA_URL={sqlalchemy_url}",
    )
    pytester.makepyfile(test_app=PASSWORD_TESTS)
    result = pytester.runpytest()  # tests/password_scan.py fails the test if the output shows the password
    result.assert_outcomes(passed=1)
    driver = {"postgresql": "psycopg", "postgresql-psycopg2": "psycopg2", "mysql": "pymysql"}.get(
        backend.name, "mysqldb"
    )
    result.stdout.fnmatch_lines(
        [
            f"txscope env: PW_URL={url}",
            "txscope env: PW=***",
            f"txscope env: SA_URL={url.backend}+{driver}://{url.user}:***@{url.host}:{url.port}/{name}",
        ],
        consecutive=True,
    )
    assert TXSCOPE_TEST_PASSWORD not in result.stdout.str() + result.stderr.str()


FIELDS = "{url}, {sqlalchemy_url}, {sqlalchemy_async_url}, {database}, {host}, {port}, {user}, {password}"
NAMED = ", and {reports.url} & co. for a txscope_databases database"
FORM = (
    f"each entry is NAME=text with {{field}} parts, e.g. DATABASE_URL={{url}}; the fields are {FIELDS}{NAMED}"
)


@pytest.mark.parametrize(
    ("lines", "args", "message"),
    [
        pytest.param(
            ["DATABASE_URL={uri}"],
            [],
            f"txscope_env line 'DATABASE_URL={{uri}}': unknown field {{uri}}; {FORM}",
        ),
        pytest.param(
            ["DATABASE_URL"], [], f"txscope_env line 'DATABASE_URL': it has no '='; {FORM}", id="no-equals"
        ),
        pytest.param(
            ["database-url={url}"],
            [],
            f"txscope_env line 'database-url={{url}}': 'database-url' is not a variable name (letters, digits "
            f"and _, not starting with a digit); {FORM}",
            id="not-an-identifier",
        ),
        pytest.param(
            ["DSN=host={host"],
            [],
            f"txscope_env line 'DSN=host={{host}}': a '{{' or '}}' is not part of a field (write {{{{ or }}}} for a "
            f"brace of its own); {FORM}".replace("{host}'", "{host'"),
            id="unclosed-brace",
        ),
        pytest.param(
            ["PORT={port:05d}"],
            [],
            f"txscope_env line 'PORT={{port:05d}}': write the field as {{port}}, without a format or a "
            f"conversion; {FORM}",
            id="format-spec",
        ),
        pytest.param(
            ["DATABASE_URL={url}", "DATABASE_URL={sqlalchemy_url}"],
            [],
            f"txscope_env line 'DATABASE_URL={{sqlalchemy_url}}': DATABASE_URL is set twice; keep one line for "
            f"it; {FORM}",
            id="twice",
        ),
        pytest.param(
            ["DATABASE_URL={url}"],
            ["--txscope-env", "URL=postgresql://app:Sup3r-Secret@db/{database}{nope}"],
            f"--txscope-env 'URL=postgresql://app:***@db/{{database}}{{nope}}': unknown field {{nope}}; {FORM}",
            id="option-password-masked",
        ),
        pytest.param(
            ["REPORTS_URL={reports.uri}"],
            [],
            f"txscope_env line 'REPORTS_URL={{reports.uri}}': unknown field {{reports.uri}}; {FORM}",
            id="named-unknown-field",
        ),
        pytest.param(
            ["REPORTS_URL={nope.url}"],
            [],
            "txscope_env line 'REPORTS_URL={nope.url}': {nope.url} names 'nope', which txscope_databases does not "
            f"configure (configured: reports); {FORM}",
            id="named-unknown-database",
        ),
    ],
)
def test_a_bad_entry_is_one_usage_error_naming_the_line_and_the_fields(
    pytester: pytest.Pytester, lines: list[str], args: list[str], message: str
) -> None:
    ini = ["[pytest]", "txscope_databases = reports = sqlite:///reports_test.db", "txscope_env ="]
    pytester.makefile(".ini", pytest="\n".join([*ini, *(f"    {x}" for x in lines)]))
    pytester.makeconftest("raise AssertionError('the conftest was imported')")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.strip()] == [f"ERROR: {message}"]
    assert "Sup3r-Secret" not in result.stdout.str() + result.stderr.str()


# A session fixture left over from a suite written before pytest-txscope: it connects to the database itself.
APP_CONFTEST = """
import os
import pytest
from pytest_txscope import Engine

@pytest.fixture(scope="session")
def app():
    engine = Engine.from_url(os.environ["APP_URL"])
    with engine.session() as s:
        s.fetchscalar("SELECT count(*) FROM users")
    yield engine
    engine.dispose()
"""


@pytest.mark.backends("postgresql", "mysql", exact=True)
def test_a_session_fixture_listed_first_finds_the_database_built(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = project_url(backend, "envfix")
    assert url is not None
    make_project(pytester, url)
    monkeypatch.setenv("APP_URL", url)
    pytester.makeconftest(APP_CONFTEST)
    pytester.makepyfile(test_app="def test_app_then_db(app, db_session):\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.backends("postgresql", "mysql", exact=True)
def test_a_fixture_that_connects_before_the_database_is_built_is_told_why(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = project_url(backend, "envfix")
    assert url is not None
    make_project(pytester, url)
    monkeypatch.setenv("APP_URL", url)
    pytester.makeconftest(APP_CONFTEST)
    pytester.makepyfile(test_app="def test_app_only(app):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    name = DatabaseURL.parse(url).database
    result.stdout.fnmatch_lines(
        [
            f"E *pytest-txscope: the test database '{name}' did not exist yet: the plugin builds it in its "
            "db_engine fixture, which had not run when this failed. Request db_engine in the fixture that "
            "connected (def app(db_engine): ...); with the ini key txscope_env set, the plugin builds it before "
            "every test's fixtures"
        ]
    )
    # With txscope_env, the plugin builds the database before every test's fixtures.
    make_project(pytester, url, "txscope_env =", "    APP_URL={url}")
    monkeypatch.delenv("APP_URL")
    pytester.runpytest().assert_outcomes(passed=1)


ASYNC_TESTS = """
import os

from pytest_txscope.sqlalchemy import sqlalchemy_async_url


def test_the_async_url_names_the_twin(db_engine):
    assert os.environ["ASYNC_URL"] == sqlalchemy_async_url(db_engine.url).render_as_string(hide_password=False)
"""


def test_the_sqlalchemy_async_url_names_the_async_twin_of_the_driver(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    url = project_url(backend, "envaio")
    make_project(pytester, url, "txscope_env =", "    ASYNC_URL={sqlalchemy_async_url}")
    pytester.makepyfile(test_app=ASYNC_TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    twin = {
        "sqlite": "sqlite+aiosqlite:///",
        "postgresql": "postgresql+psycopg://",
        "mysql": "mysql+aiomysql://",
    }
    result.stdout.fnmatch_lines([f"txscope env: ASYNC_URL={twin[backend.family]}*"])


@pytest.mark.backends("postgresql-psycopg2", "mysql-mysqldb", exact=True)
def test_the_sqlalchemy_async_url_of_a_driver_with_no_async_twin_is_refused(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    url = project_url(backend, "envaio")
    assert url is not None
    make_project(pytester, url, "txscope_env =", "    ASYNC_URL={sqlalchemy_async_url}")
    pytester.makepyfile(test_app="def test_never_runs():\n    pass\n")
    result = pytester.runpytest()
    shown = DatabaseURL.parse(url)
    driver, twin = ("psycopg2", "psycopg") if backend.family == "postgresql" else ("mysqldb", "pymysql")
    spelled = {"psycopg": "postgresql+psycopg", "pymysql": "mysql+aiomysql"}[twin]
    result.stderr.fnmatch_lines(
        [
            "ERROR: txscope_env line 'ASYNC_URL={sqlalchemy_async_url}': the test database "
            f"{shown} is reached through {driver}, which has no asyncio twin that pytest-txscope pins; make "
            f"the test database's URL {shown.backend}+{twin}:// to serve {spelled}:// engines; each entry is "
            "NAME=text with {field} parts, e.g. DATABASE_URL={url}; the fields are " + FIELDS + NAMED
        ]
    )
