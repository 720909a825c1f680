"""Several databases in one test (``txscope_databases``): each configured database gets a sandbox in the tests
that opt in to it, the application's engines go to the sandbox of their own database (matched by URL), and an
engine on a database the test did not opt in to is refused before it sends anything.

Each generated project has a default database (``txscope_url``) with an ``items`` table and a ``reports``
database with a ``daily`` table, on the backends given; after its run, both are checked empty from outside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_txscope import DatabaseURL
from pytest_txscope.sqlalchemy import sqlalchemy_url

from ..backends import Backend, make_backend, sibling_url

APP = """
import os
from sqlalchemy import create_engine

main = create_engine(os.environ["APP_MAIN_URL"])
reports = create_engine(os.environ["APP_REPORTS_URL"])
"""

TESTS = """
import pytest
from sqlalchemy import text

import app


def count(engine, table):
    with engine.connect() as connection:
        return connection.scalar(text(f"SELECT count(*) FROM {table}"))


@pytest.mark.txscope(databases=["default", "reports"])
def test_1_both(db_sandboxes):
    with app.main.begin() as connection:
        connection.execute(text("INSERT INTO items (name) VALUES ('a')"))
    with app.reports.begin() as connection:
        connection.execute(text("INSERT INTO daily (total) VALUES (7)"))
    assert count(app.main, "items") == 1 and count(app.reports, "daily") == 1
    assert db_sandboxes["reports"].session().fetchscalar("SELECT total FROM daily") == 7
    assert db_sandboxes["default"].session().fetchscalar("SELECT count(*) FROM items") == 1


@pytest.mark.txscope(databases="__all__")
def test_2_all(db_sandboxes):
    with app.reports.begin() as connection:
        connection.execute(text("INSERT INTO daily (total) VALUES (8)"))
    assert sorted(db_sandboxes) == ["default", "reports"]
    assert count(app.reports, "daily") == 1


def test_3_default_only(db_session):
    with app.main.begin() as connection:
        connection.execute(text("INSERT INTO items (name) VALUES ('b')"))
    with app.reports.begin() as connection:
        connection.execute(text("INSERT INTO daily (total) VALUES (1)"))


def test_4_caught_all_the_same(db_session):
    try:
        with app.reports.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        pass
"""

REFUSED = (
    "E *pytest_txscope.errors.DatabaseNotAllowedError: Engine(*) connected to the database "
    "'reports' (txscope_databases), which this test did not opt in to: its work there would not be rolled "
    "back; mark the test @pytest.mark.txscope(databases=[[]'default', 'reports'])"
)


@contextlib.contextmanager
def database(name: str, tmp_path: Path, stem: str, ddl: str) -> Iterator[str]:
    """A database of this test's own on backend ``name`` holding the table ``ddl`` makes; dropped after."""
    with contextlib.ExitStack() as stack:
        backend: Backend = stack.enter_context(contextlib.contextmanager(make_backend)(name, tmp_path))
        if backend.family == "sqlite":
            url = f"sqlite:///{tmp_path / f'{stem}_test.db'}"
        else:
            url = sibling_url(backend, stem)
            _server(backend, f"DROP DATABASE IF EXISTS {_name(url)}", f"CREATE DATABASE {_name(url)}")
            stack.callback(_server, backend, f"DROP DATABASE IF EXISTS {_name(url)}")
        _peer(Backend(backend.name, url), ddl)
        yield url


def _name(url: str) -> str:
    return DatabaseURL.parse(url).database


def _server(backend: Backend, *statements: str) -> None:
    peer = backend.peer()
    try:
        for statement in statements:
            peer.execute(statement)
    finally:
        peer.close()


def _peer(backend: Backend, sql: str) -> list[tuple[object, ...]]:
    peer = backend.peer()
    try:
        if sql.startswith("SELECT"):
            return peer.fetchall(sql)
        peer.execute(sql)
        return []
    finally:
        peer.close()


def _items(name: str) -> str:
    serial = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "SERIAL PRIMARY KEY"}.get(
        name.partition("-")[0], "INTEGER PRIMARY KEY AUTO_INCREMENT"
    )
    return f"CREATE TABLE items (id {serial}, name VARCHAR(20))"


def run_project(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    default: tuple[str, str],
    reports: tuple[str, str],
    ini: tuple[str, ...] = (),
) -> pytest.RunResult:
    """Run a project on the databases ``default`` and ``reports`` (each: backend name, URL), in a subprocess:
    the interception of drivers' connect() and SQLAlchemy's pools stay out of this process."""
    for variable, (_, url) in (("APP_MAIN_URL", default), ("APP_REPORTS_URL", reports)):
        rendered = sqlalchemy_url(DatabaseURL.parse(url)).render_as_string(hide_password=False)
        monkeypatch.setenv(variable, rendered)
    pytester.makepyfile(app=APP, test_app=TESTS)
    lines = [
        "[pytest]",
        f"txscope_url = {default[1]}",
        "txscope_databases =",
        f"    reports = {reports[1]}",
        "txscope_engines =",
        "    app:main",
        "    app:reports",
        "addopts = -p no:randomly",
        *ini,
    ]
    pytester.makefile(".ini", pytest="\n".join(lines))
    return pytester.runpytest_subprocess()


def check_run(result: pytest.RunResult, default: tuple[str, str], reports: tuple[str, str]) -> None:
    # The refusal caught by the code under test fails the test at its teardown all the same.
    result.assert_outcomes(passed=3, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*_ ERROR at teardown of test_4_*", REFUSED, "*_ test_3_default_only _*", REFUSED]
    )
    for (name, url), table in ((default, "items"), (reports, "daily")):
        assert _peer(Backend(name, url), f"SELECT count(*) FROM {table}") == [(0,)], (name, table)


@pytest.mark.backends("sqlite-file", "postgresql", "mysql", exact=True)
def test_two_databases_on_one_backend(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: Backend, tmp_path: Path
) -> None:
    with (
        database(backend.name, tmp_path, "main", _items(backend.name)) as main_url,
        database(backend.name, tmp_path, "reports", "CREATE TABLE daily (total INTEGER)") as reports_url,
    ):
        default, reports = (backend.name, main_url), (backend.name, reports_url)
        check_run(run_project(pytester, monkeypatch, default, reports), default, reports)


MIXES = [("postgresql", "sqlite-file"), ("sqlite-file", "mysql"), ("mysql", "postgresql")]


@pytest.mark.parametrize(("main", "other"), MIXES, ids=[f"{a}+{b}" for a, b in MIXES])
def test_databases_on_different_backends(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, main: str, other: str
) -> None:
    with (
        database(main, tmp_path, "main", _items(main)) as main_url,
        database(other, tmp_path, "reports", "CREATE TABLE daily (total INTEGER)") as reports_url,
    ):
        default, reports = (main, main_url), (other, reports_url)
        check_run(run_project(pytester, monkeypatch, default, reports), default, reports)


# ------------------------------------------------------------------------------------------- bad input
SECRET = (
    "postgresql://app:Sekr1t-pw-txscope@localhost/reports_test"  # tests/password_scan.py fails on it shown
)
BAD_LINES = {
    "no-equals": (
        [f"reports {SECRET}"],
        "ERROR: txscope_databases line 'reports postgresql://app:***@localhost/reports_test' is not NAME = URL "
        "(a name made of letters, digits and underscores); write it as: "
        "reports = postgresql://user@localhost/reports_test",
    ),
    "url-only": (
        [f"{SECRET}?sslmode=require"],
        "ERROR: txscope_databases line 'postgresql://app:***@localhost/reports_test?sslmode=require' is not "
        "NAME = URL *",
    ),
    "default": (
        ["default = sqlite:///other_test.db"],
        "ERROR: txscope_databases: the name 'default' is taken by txscope_url; give the database another name",
    ),
    "twice": (
        [f"reports = {SECRET}", "reports = sqlite:///other_test.db"],
        "ERROR: txscope_databases: the name 'reports' is used twice; give the database another name",
    ),
    "bad-url": (
        ["reports = nosuch://app:Sekr1t-pw-txscope@localhost/x"],
        "ERROR: txscope_databases: reports: *nosuch://app:***@localhost/x*",
    ),
    "same-as-default": (
        ["reports = sqlite:///main_test.db"],
        "ERROR: txscope_databases: reports (sqlite:///main_test.db) is the same database as 'default'; a database "
        "is sandboxed once per test: remove the line, or point it at another database",
    ),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_line_is_one_clear_error(pytester: pytest.Pytester, case: str) -> None:
    lines, expected = BAD_LINES[case]
    pytester.chdir()
    ini = [
        "[pytest]",
        "txscope_url = sqlite:///main_test.db",
        "txscope_databases =",
        *(f"    {x}" for x in lines),
    ]
    pytester.makefile(".ini", pytest="\n".join(ini))
    pytester.makepyfile(test_x="def test_x(db_session):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text, text
    assert "Sekr1t" not in text, text
    assert [e for e in result.errlines if e.startswith("ERROR:")] == [result.errlines[0]], result.errlines
    result.stderr.fnmatch_lines([expected.replace("[", "[[]")])


BAD_MARKERS = {
    '["nope"]': "*test_x.py::test_x: databases=[[]...] names 'nope', which is not configured (configured: "
    "default, reports); add the ini line 'txscope_databases = nope = <its URL>', or correct the name; valid "
    "arguments: commit=False, threads='shared' or 'strict', databases=[[]'default', ...], reset_sequences=False",
    '"reports"': "*test_x.py::test_x: databases must be a list of database names or \"__all__\", not 'reports'; "
    "valid arguments: *",
    '["reports"], commit=True': "*test_x.py::test_x: commit=True runs on the default database only; leave out "
    "databases=[[]...]; valid arguments: *",
}


@pytest.mark.parametrize("arguments", BAD_MARKERS)
def test_a_bad_databases_argument_is_one_clear_error(pytester: pytest.Pytester, arguments: str) -> None:
    pytester.chdir()
    ini = [
        "[pytest]",
        "txscope_url = sqlite:///main_test.db",
        "txscope_databases =",
        f"    reports = {SECRET}",
    ]
    pytester.makefile(".ini", pytest="\n".join(ini))
    pytester.makepyfile(
        test_x=f"import pytest\n\n@pytest.mark.txscope(databases={arguments})\ndef test_x():\n    pass\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert "Traceback" not in result.stdout.str()
    assert "_ _ _ _" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["txscope_databases: reports = postgresql://app:***@localhost/reports_test", BAD_MARKERS[arguments]]
    )


# ------------------------------------------------------------- pytest-txscope engines and drivers' connect()
RAW_APP = """
import os
import sqlite3

from pytest_txscope import Engine

engine = Engine.from_url(os.environ["APP_REPORTS_URL"])


def add_raw(total):
    connection = sqlite3.connect(os.environ["APP_REPORTS_FILE"])
    connection.execute("INSERT INTO daily (total) VALUES (?)", (total,))
    connection.commit()
    connection.close()


def add(total):
    with engine as tx:
        tx.execute("INSERT INTO daily (total) VALUES (:t)", {"t": total})
"""

RAW_TESTS = """
import pytest

import app


@pytest.mark.txscope(databases=["default", "reports"])
def test_1_both(db_sandboxes):
    app.add_raw(1)
    app.add(2)
    assert db_sandboxes["reports"].session().fetchscalar("SELECT count(*) FROM daily") == 2


def test_2_default_only(db_session):
    app.add(3)
"""


def test_engines_and_connects_go_to_their_own_database(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reports = tmp_path / "reports_test.db"
    _peer(Backend("sqlite-file", f"sqlite:///{reports}"), "CREATE TABLE daily (total INTEGER)")
    monkeypatch.setenv("APP_REPORTS_URL", f"sqlite:///{reports}")
    monkeypatch.setenv("APP_REPORTS_FILE", str(reports))
    pytester.makepyfile(app=RAW_APP, test_app=RAW_TESTS)
    ini = [
        "[pytest]",
        f"txscope_url = sqlite:///{tmp_path / 'main_test.db'}",
        "txscope_databases =",
        f"    reports = sqlite:///{reports}",
        "txscope_engines = app:engine",
        "txscope_connect = auto",
        "addopts = -p no:randomly",
    ]
    pytester.makefile(".ini", pytest="\n".join(ini))
    result = pytester.runpytest_subprocess()
    result.stdout.fnmatch_lines(
        ["txscope: sqlite:///*main_test.db *", f"txscope_databases: reports = sqlite:///{reports}"]
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([REFUSED.replace("Engine(*)", f"Engine(sqlite:///{reports})")])
    assert _peer(Backend("sqlite-file", f"sqlite:///{reports}"), "SELECT count(*) FROM daily") == [(0,)]


LEAKY_TESTS = """
import sqlite3
import os

import pytest


@pytest.mark.txscope(databases=["default", "reports"])
def test_1_opts_in(db_sandboxes):
    db_sandboxes["reports"].session().execute("INSERT INTO daily (total) VALUES (1)")


def test_2_commits_behind_the_sandbox(db_session):
    connection = sqlite3.connect(os.environ["APP_REPORTS_FILE"])
    connection.execute("INSERT INTO daily (total) VALUES (2)")
    connection.commit()
    connection.close()


def test_3_clean(db_session):
    pass
"""


def test_the_leak_check_counts_each_database(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reports = tmp_path / "reports_test.db"
    _peer(Backend("sqlite-file", f"sqlite:///{reports}"), "CREATE TABLE daily (total INTEGER)")
    monkeypatch.setenv("APP_REPORTS_FILE", str(reports))
    pytester.makepyfile(test_app=LEAKY_TESTS)
    ini = [
        "[pytest]",
        f"txscope_url = sqlite:///{tmp_path / 'main_test.db'}",
        "txscope_databases =",
        f"    reports = sqlite:///{reports}",
        "txscope_check_leaks = true",
        "addopts = -p no:randomly",
    ]
    pytester.makefile(".ini", pytest="\n".join(ini))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "test_app.py::test_2_commits_behind_the_sandbox left rows behind in the database 'reports': daily "
            "(+1 rows) (compared with the start of the run); write through db_session / the sandboxed engines, "
            "or mark the test @pytest.mark.txscope"
        ]
    )
