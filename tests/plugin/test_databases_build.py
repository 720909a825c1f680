"""The other databases (``txscope_databases``) with a schema (``txscope_database_schemas``) are provisioned as the
run's own: built from their lines in order, one copy per pytest-xdist worker (``<name>_gw0``) that the
application reaches through ``txscope_env``'s ``{reports.sqlalchemy_url}``, dropped at the end of the run unless
``--txscope-reuse-db`` keeps them for the next run. Their databases are checked from outside (the server's list
of databases, the SQLite files) after each run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_txscope import DatabaseURL

from ..backends import Backend, sibling_url
from .test_suites import remove_all, server_databases

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql", exact=True)

APP = """
import os
from sqlalchemy import create_engine

reports = create_engine(os.environ["APP_REPORTS_URL"])
"""

TESTS = """
import os

import pytest
from sqlalchemy import text

import app


@pytest.mark.txscope(databases=["default", "reports"])
@pytest.mark.parametrize("i", range(4))
def test_reports(db_sandboxes, i):
    with app.reports.begin() as connection:
        connection.execute(text("INSERT INTO daily (total) VALUES (7)"))
    rows = db_sandboxes["reports"].session().fetchscalar("SELECT count(*) FROM daily")
    assert rows == int(os.environ["EXPECTED_ROWS"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "-")
    names = [os.path.basename(u.database) for u in (db_sandboxes["reports"].engine.url, app.reports.url)]
    with open(os.environ["SEEN_LOG"], "a") as log:
        log.write(f"{worker} {names[0]} {names[1]}\\n")
"""


def reports_url(backend: Backend, tmp_path: Path) -> str:
    """The ``reports`` database of the generated project: not created beforehand (the plugin creates it)."""
    if backend.family == "sqlite":
        return f"sqlite:///{tmp_path / 'reports_test.db'}"
    url = sibling_url(backend, "reports")
    remove_all(url)
    return url


def make_project(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    reports: str,
    schema: list[str],
) -> None:
    pytester.makepyfile(app=APP, test_app=TESTS)
    pytester.makefile(".sql", main="CREATE TABLE items (id INTEGER PRIMARY KEY)")
    pytester.makefile(".sql", reports="CREATE TABLE daily (total INTEGER)")
    pytester.makefile(".sql", reports_seed="INSERT INTO daily (total) VALUES (5)")
    monkeypatch.setenv("SEEN_LOG", str(tmp_path / "seen.log"))
    lines = [
        "[pytest]",
        f"txscope_url = sqlite:///{tmp_path / 'main_test.db'}",
        "txscope_schema = main.sql",
        "txscope_databases =",
        f"    reports = {reports}",
        "txscope_database_schemas =",
        *(f"    {line}" for line in schema),
        "txscope_engines = app:reports",
        "txscope_env = APP_REPORTS_URL={reports.sqlalchemy_url}",
        "addopts = -p no:randomly",
    ]
    pytester.makefile(".ini", pytest="\n".join(lines))


def seen(tmp_path: Path) -> set[str]:
    """What the tests of the last run saw (worker, the sandbox's database, the app's engine's); log reset."""
    log = tmp_path / "seen.log"
    lines = set(log.read_text().splitlines())
    log.unlink()
    return lines


def left_behind(backend: Backend, reports: str, tmp_path: Path) -> list[str]:
    """The ``reports`` databases on the server (itself, workers' copies, templates), or its SQLite files."""
    if backend.family == "sqlite":
        return sorted(p.name for p in tmp_path.glob("reports_test*"))
    return server_databases(backend, DatabaseURL.parse(reports).database)


def add_row(backend: Backend, url: str) -> None:
    peer = Backend(backend.name, url).peer()
    try:
        peer.execute("INSERT INTO daily (total) VALUES (9)")
    finally:
        peer.close()


SCHEMA = ["reports = reports.sql", "reports = reports_seed.sql"]


def test_each_xdist_worker_gets_its_copy_and_the_run_drops_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: Backend, tmp_path: Path
) -> None:
    reports = reports_url(backend, tmp_path)
    make_project(pytester, monkeypatch, tmp_path, reports, SCHEMA)
    monkeypatch.setenv("EXPECTED_ROWS", "2")  # the seed row (the second line ran after the first) and ours
    try:
        result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2")
        result.assert_outcomes(passed=4)
        result.stdout.fnmatch_lines(
            [
                f"txscope_databases: reports = {reports}",
                "txscope env: set by each pytest-xdist worker to its own database (<name>_gw0, ...)",
            ]
        )
        name = Path(DatabaseURL.parse(reports).database).name
        copies = [re.sub(r"(\.db)?$", rf"_{w}\1", name, count=1) for w in ("gw0", "gw1")]
        assert seen(tmp_path) == {f"gw0 {copies[0]} {copies[0]}", f"gw1 {copies[1]} {copies[1]}"}
        assert left_behind(backend, reports, tmp_path) == []
    finally:
        if backend.family != "sqlite":
            remove_all(reports)


def test_reuse_keeps_the_database_and_the_next_run_uses_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: Backend, tmp_path: Path
) -> None:
    reports = reports_url(backend, tmp_path)
    make_project(pytester, monkeypatch, tmp_path, reports, SCHEMA)
    name = Path(DatabaseURL.parse(reports).database).name
    kept = [name] if backend.family != "sqlite" else [name, f"{name}.txscope-key"]
    try:
        monkeypatch.setenv("EXPECTED_ROWS", "2")
        pytester.runpytest_subprocess("--txscope-reuse-db").assert_outcomes(passed=4)
        assert [d for d in left_behind(backend, reports, tmp_path) if "_tpl_" not in d] == kept
        add_row(backend, reports)  # committed from outside: a run that rebuilt the database would not see it
        monkeypatch.setenv("EXPECTED_ROWS", "3")
        pytester.runpytest_subprocess("--txscope-reuse-db").assert_outcomes(passed=4)
        assert [d for d in left_behind(backend, reports, tmp_path) if "_tpl_" not in d] == kept
        monkeypatch.setenv("EXPECTED_ROWS", "2")  # without reuse: built afresh, dropped afterwards
        pytester.runpytest_subprocess().assert_outcomes(passed=4)
        assert seen(tmp_path) == {f"- {name} {name}"}
        assert left_behind(backend, reports, tmp_path) == []
    finally:
        if backend.family != "sqlite":
            remove_all(reports)


def test_a_schema_that_fails_names_the_lines_and_leaves_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: Backend, tmp_path: Path
) -> None:
    reports = reports_url(backend, tmp_path)
    make_project(pytester, monkeypatch, tmp_path, reports, ["reports = reports.sql", "reports = broken.sql"])
    pytester.makefile(".sql", broken="CREATE TABLE broken (total INTEGER")
    try:
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            [
                "pytest-txscope could not build the database 'reports' (txscope_databases line "
                f"'reports = {reports}'; txscope_database_schemas: 'reports.sql', 'broken.sql'): "
                f"pytest_txscope.errors.ScriptError: {pytester.path / 'broken.sql'}, line 1: statement 1 of 1 "
                "failed: 'CREATE TABLE broken (total INTEGER': * nothing of the script was kept",
                "*! stopping: pytest-txscope could not build the database 'reports'; see the error above !*",
            ]
        )
        assert left_behind(backend, reports, tmp_path) == []
    finally:
        if backend.family != "sqlite":
            remove_all(reports)


BAD_LINES = {
    "unknown-name": (
        "nope = reports.sql",
        "ERROR: txscope_database_schemas line 'nope = reports.sql' names the database 'nope', which "
        "txscope_databases does not configure (configured: reports); add the line 'nope = <its URL>' to "
        "txscope_databases, or correct the name",
    ),
    "no-name": (
        "reports.sql",
        "ERROR: txscope_database_schemas line 'reports.sql' is not NAME = ENTRY (a database of txscope_databases, "
        "and an SQL file (path/to/schema.sql, relative to the ini file), an import path (package.module:attribute) "
        "or alembic migrations (alembic:path/to/alembic.ini)); write it as: reports = path/to/reports.sql",
    ),
    "default": (
        "default = reports.sql",
        "ERROR: txscope_database_schemas line 'default = reports.sql': the default database's schema is "
        "txscope_schema; move 'reports.sql' there",
    ),
    "no-such-file": (
        "reports = missing.sql",
        "ERROR: txscope_database_schemas line 'reports = missing.sql': 'missing.sql' is neither a file (looked "
        "for {path}/missing.sql) nor an import path; use an SQL file (path/to/schema.sql, relative to the ini "
        "file), an import path (package.module:attribute) or alembic migrations (alembic:path/to/alembic.ini)",
    ),
}


@pytest.mark.backends("sqlite-file", exact=True)
@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_schema_line_is_one_clear_error(pytester: pytest.Pytester, backend: Backend, case: str) -> None:
    line, expected = BAD_LINES[case]
    pytester.chdir()
    pytester.makefile(".sql", reports="CREATE TABLE daily (total INTEGER)")
    ini = [
        "[pytest]",
        "txscope_url = sqlite:///main_test.db",
        "txscope_databases =",
        "    reports = sqlite:///reports_test.db",
        "txscope_database_schemas =",
        f"    {line}",
    ]
    pytester.makefile(".ini", pytest="\n".join(ini))
    pytester.makepyfile(test_x="def test_x(db_session):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert [e for e in result.errlines if e.startswith("ERROR:")] == [
        expected.format(path=pytester.path.resolve())
    ]


@pytest.mark.backends("sqlite-file", exact=True)
def test_an_engine_on_the_configured_name_is_refused_under_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: Backend, tmp_path: Path
) -> None:
    # The app's engine built from the ini's URL, not from txscope_env: each worker's sandbox is on its copy.
    reports = reports_url(backend, tmp_path)
    make_project(pytester, monkeypatch, tmp_path, reports, SCHEMA)
    monkeypatch.setenv("EXPECTED_ROWS", "2")
    (pytester.path / "app.py").write_text(APP.replace('os.environ["APP_REPORTS_URL"]', repr(reports)))
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2")
    result.stdout.fnmatch_lines(
        [
            "*pytest_txscope.errors.EngineMismatchError: txscope_engines: "
            f"Engine({reports}) is aimed at the database of the txscope_databases line 'reports = {reports}', but "
            f"this pytest-xdist worker runs on its copy ({tmp_path}/reports_test_gw[01].db), built from "
            "txscope_database_schemas; build the engine's URL from txscope_env's {reports.sqlalchemy_url} (for "
            "example the line 'APP_REPORTS_URL={reports.sqlalchemy_url}')"
        ]
    )
    assert left_behind(backend, reports, tmp_path) == []
