"""The plugin, run as users run it: a real pytest on a small generated project, on every backend."""

from __future__ import annotations

import pytest

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), total INTEGER);
INSERT INTO users (id, name) VALUES (1, 'seed');
"""

APP = '''
"""The application under test: its own engine, its own commits."""
import os
from pytest_txscope import Engine

engine = Engine.from_url(os.environ["APP_DB_URL"]) if os.environ.get("APP_DB_URL") else None


def add_user(uid, name, fail=False):
    with engine as tx:
        tx.execute("INSERT INTO users (id, name) VALUES (:id, :name)", {"id": uid, "name": name})
        if fail:
            raise RuntimeError("app failed")


def count_users():
    with engine.session() as s:
        return s.fetchscalar("SELECT count(*) FROM users")
'''

# Checks, from a separate engine on a separate connection, that only the seed data is in the database.
OUTSIDE_CHECK = """

def test_zz_nothing_survived(db_engine):
    from pytest_txscope import Engine
    outside = Engine.from_url(db_engine.url)
    with outside.session() as s:
        assert s.fetchall("SELECT id, name FROM users ORDER BY id") == [(1, "seed")]
        assert s.fetchscalar("SELECT count(*) FROM orders") == 0
    outside.dispose()
"""


def plugin_url(backend: Backend) -> str | None:
    """The database the generated projects use: the embedded default for SQLite, a database of its own else."""
    if backend.family == "sqlite":
        return None
    return sibling_url(backend, "plugin").partition("?")[0]


@pytest.fixture
def project(pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with a schema file, an app module with its own engine, and the plugin configured."""
    url = plugin_url(backend)
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makepyfile(app=APP)
    ini = [
        "[pytest]",
        "txscope_schema = schema.sql",
        "txscope_engines = app:engine",
        "addopts = -p no:randomly",
    ]
    if url:
        ini.append(f"txscope_url = {url}")
    pytester.makefile(".ini", pytest="\n".join(ini))
    # The app's engine points at the same database the plugin builds (for SQLite: set by a conftest hook).
    if url:
        monkeypatch.setenv("APP_DB_URL", url)
    else:
        pytester.makeconftest(
            """
import os, pytest

@pytest.fixture(scope="session", autouse=True)
def _app_url(db_engine):
    import app
    from pytest_txscope import Engine
    app.engine = Engine.from_url(db_engine.url)
"""
        )
    return pytester


def test_fixtures_isolate_tests_and_nothing_survives(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_flow="""
import pytest
import app

def test_1_writes_through_everything(db_session, db_sandbox):
    db_session.execute("INSERT INTO users (id, name) VALUES (2, 'test')")
    app.add_user(3, "app")                               # the app commits: a savepoint release
    with pytest.raises(RuntimeError):
        app.add_user(4, "undone", fail=True)             # the app rolls back: to its savepoint
    raw = db_sandbox.connection()                        # a raw DB-API connection
    cur = raw.cursor()
    cur.execute("INSERT INTO orders (id, user_id, total) VALUES (1, 2, 10)")
    raw.commit()
    assert app.count_users() == 3
    assert db_session.fetchall("SELECT id FROM users ORDER BY id") == [(1,), (2,), (3,)]

def test_2_sees_only_the_seed(db_session):
    assert db_session.fetchall("SELECT id, name FROM users") == [(1, "seed")]
    db_session.execute("INSERT INTO users (id, name) VALUES (2, 'test')")   # no unique clash

@pytest.mark.txscope
def test_3_marker_sandboxes_the_app_without_fixtures():
    app.add_user(5, "marked")
    assert app.count_users() == 2
"""
        + OUTSIDE_CHECK
    )
    result = project.runpytest("-v")
    result.assert_outcomes(passed=4)


def test_on_commit_fires_at_the_apps_commit(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_callbacks="""
import app

def test_callbacks(db_sandbox):
    fired = []
    with app.engine as tx:
        tx.execute("INSERT INTO users (id, name) VALUES (7, 'x')")
        tx.on_commit(lambda: fired.append("sent"))
        with app.engine as inner:
            inner.on_commit(lambda: fired.append("inner"))
        assert fired == []
    assert fired == ["sent", "inner"]
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=2)


def test_header_shows_the_target_with_the_password_masked(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    pytester.makepyfile(test_nothing="def test_x():\n    pass\n")
    if backend.family == "sqlite":
        result = pytester.runpytest()
        result.stdout.fnmatch_lines(
            [
                "txscope: embedded SQLite in pytest's temporary directory [sqlite, from default]; rollback per "
                "test, statement savepoints off"
            ]
        )
        return
    url = plugin_url(backend)
    assert url is not None
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.split("@", 1)
    secret_url = f"{scheme}://{userinfo.split(':')[0]}:Sup3r-Secret@{host}"
    result = pytester.runpytest(f"--txscope-url={secret_url}", "--txscope-reuse-db")
    shown = f"{scheme}://{userinfo.split(':')[0]}:***@{host}"
    savepoints = "on" if backend.family == "postgresql" else "off"
    result.stdout.fnmatch_lines(
        [
            f"txscope: {shown} [{backend.family}, from --txscope-url]; rollback per test, statement savepoints "
            f"{savepoints}, reuse-db"
        ]
    )
    assert "Sup3r-Secret" not in result.stdout.str() + result.stderr.str()


def test_misspelt_marker_argument(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_marker="""
import pytest

@pytest.mark.txscope(comit=True)
def test_typo():
    pass

@pytest.mark.txscope(commit="yes")
def test_wrong_type():
    pass
"""
    )
    result = project.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_marker.py::test_typo: @pytest.mark.txscope got an unexpected keyword argument 'comit'; valid "
            "arguments: commit=False, threads='shared' or 'strict', databases=[[]'default', ...], "
            "reset_sequences=False",
            "*test_marker.py::test_wrong_type: commit must be True or False, not 'yes'; valid arguments: "
            "commit=False, threads='shared' or 'strict', databases=[[]'default', ...], "
            "reset_sequences=False",
        ]
    )


def test_commit_true_runs_with_real_commits_and_is_cleaned(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_commit="""
import pytest
import app
from pytest_txscope import Engine

@pytest.mark.txscope(commit=True)
def test_really_commits(db_engine):
    app.add_user(8, "committed")
    with db_engine as tx:
        tx.execute("UPDATE users SET name = 'changed' WHERE id = 1")
    outside = Engine.from_url(db_engine.url)
    with outside.session() as s:   # visible from another connection: really committed
        assert s.fetchall("SELECT id, name FROM users ORDER BY id") == [(1, "changed"), (8, "committed")]
    outside.dispose()
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=2)


def test_commit_true_with_a_sandbox_fixture_is_an_error(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_commit_fixture="""
import pytest

@pytest.mark.txscope(commit=True)
def test_confused(db_session):
    pass
"""
    )
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.txscope(commit=True) runs the test without a sandbox; do not request db_sandbox or "
            "db_session in it (use db_engine)"
        ]
    )


def test_blocking_names_the_fix(project: pytest.Pytester) -> None:
    project.makefile(".ini", pytest=(project.path / "pytest.ini").read_text() + "\ntxscope_block = true\n")
    project.makepyfile(
        test_block="""
import app

def test_forgot_the_sandbox():
    app.add_user(9, "blocked")

def test_asked_for_it(db_session):
    app.add_user(9, "fine")
"""
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_txscope.errors.DatabaseAccessError: test_block.py::test_forgot_the_sandbox used <Engine *>, "
            "but it asked for no database sandbox and txscope_block is on; request the db_session or db_sandbox "
            "fixture, or mark it @pytest.mark.txscope (or @pytest.mark.txscope(commit=True) for real commits)"
        ]
    )


def test_leak_check_names_the_test_and_tables(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_leak="""
import pytest
from pytest_txscope import Engine

def test_leaks_through_an_unregistered_engine(db_engine):
    rogue = Engine.from_url(db_engine.url)    # not in txscope_engines: not pinned
    with rogue as tx:
        tx.execute("INSERT INTO users (id, name) VALUES (10, 'leaked')")
    rogue.dispose()

def test_next_is_fine(db_session):
    pass
"""
    )
    result = project.runpytest("--txscope-check-leaks")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_leak.py::test_leaks_through_an_unregistered_engine left rows behind: users (+1 rows) (compared "
            "with the start of the run); write through db_session / the sandboxed engines, or mark the test "
            "@pytest.mark.txscope"
        ]
    )


def test_a_raw_commit_escaping_the_sandbox_is_reported_and_cleaned(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_escape="""
import pytest
from pytest_txscope import ImplicitCommitError

def test_commits_behind_the_sandbox(db_session):
    # COMMIT as text on db_session goes to the server (a cursor of db_sandbox.connection() maps it to commit())
    db_session.execute("INSERT INTO users (id, name) VALUES (11, 'escaped')")
    with pytest.raises(ImplicitCommitError):
        db_session.execute("COMMIT")

def test_next_starts_clean(db_session):
    assert db_session.fetchall("SELECT id FROM users") == [(1,)]
"""
        + OUTSIDE_CHECK
    )
    result = project.runpytest()
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_txscope.errors.SandboxEscapeError: the test's outer transaction was ended before the "
            "sandbox rolled it back (the server ended the transaction while running 'COMMIT'); what was "
            "committed then is in the database now.*"
        ]
    )


def test_raw_connection_autocommit_mode_stays_in_the_sandbox(project: pytest.Pytester) -> None:
    # Autocommit mode is supported (it was refused before): each statement is "committed" into the sandbox's
    # transaction, commit() does nothing, and the next test sees nothing. Two-phase commit stays refused.
    project.makepyfile(
        test_autocommit="""
import pytest
from pytest_txscope import SandboxRefusedError

def test_autocommit(db_sandbox, db_session):
    raw = db_sandbox.connection()
    raw.autocommit = True
    raw.cursor().execute("INSERT INTO users (id, name) VALUES (2, 'a')")
    raw.commit()
    raw.rollback()  # nothing to roll back: the statement was committed (into the sandbox)
    assert db_session.fetchscalar("SELECT count(*) FROM users") == 2
    with pytest.raises(SandboxRefusedError, match="two-phase commit"):
        raw.tpc_begin("x")

def test_nothing_left(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM users") == 1
"""
    )
    project.runpytest().assert_outcomes(passed=2)


@pytest.mark.backends("postgresql")
def test_failed_statement_does_not_poison_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_poison="""
import pytest

def test_after_an_expected_error(db_session):
    with pytest.raises(Exception, match="duplicate key"):
        db_session.execute("INSERT INTO users (id, name) VALUES (2, 'seed')")
    db_session.execute("INSERT INTO users (id, name) VALUES (2, 'fine')")
    assert db_session.fetchscalar("SELECT count(*) FROM users") == 2
"""
    )
    project.runpytest().assert_outcomes(passed=1)
    result = project.runpytest("--txscope-statement-savepoints=off")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*InFailedSqlTransaction*"])


def test_module_scoped_data_is_shared_then_rolled_back(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_scope="""
import pytest
from pytest_txscope import Sandbox

@pytest.fixture(scope="module")
def catalog(db_engine):
    with Sandbox(db_engine) as module_sandbox:
        module_sandbox.session().execute("INSERT INTO users (id, name) VALUES (20, 'catalog')")
        yield

def test_a(catalog, db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM users") == 2
    db_session.execute("INSERT INTO users (id, name) VALUES (21, 'a')")

def test_b(catalog, db_session):
    assert db_session.fetchall("SELECT id FROM users ORDER BY id") == [(1,), (20,)]
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("txscope_block = maybe", "ERROR: txscope_block = 'maybe' is not a boolean; use true or false"),
        (
            "txscope_statement_savepoints = sometimes",
            "ERROR: txscope_statement_savepoints = 'sometimes' is not valid; use one of: auto, on, off",
        ),
        (
            "txscope_schema = missing.sql",
            "ERROR: txscope_schema entry 'missing.sql' is neither a file (looked for */missing.sql) nor an import "
            "path; use an SQL file (path/to/schema.sql, relative to the ini file), an import path "
            "(package.module:attribute) or alembic migrations (alembic:path/to/alembic.ini)",
        ),
        (
            "txscope_engines = app.engine",
            "ERROR: txscope_engines entry 'app.engine' is not an import path; write it as package.module:attribute",
        ),
        (
            "txscope_url = postgresql://u:Hidden-pw@h:port/db_test",
            "ERROR: txscope_url: malformed database URL postgresql://u:***@h:port/db_test: Port could not be cast "
            "to integer value as 'port'; write it like postgresql://user:password@localhost:5432/dbname",
        ),
    ],
)
@pytest.mark.backends("sqlite-file")
def test_bad_configuration_is_a_usage_error(
    pytester: pytest.Pytester, backend: Backend, ini: str, message: str
) -> None:
    pytester.makefile(".ini", pytest=f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Hidden-pw" not in result.stderr.str() + result.stdout.str()


# Import paths that do not import, and schemas that fail halfway: tests/faults/test_bad_input.py.


@pytest.mark.backends("sqlite-file")  # loading does not depend on the backend
def test_plugin_loads_with_autoload_disabled_and_can_be_disabled(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_x="def test_x(db_session):\n    assert db_session.fetchscalar('SELECT 1') == 1\n"
    )
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.runpytest_subprocess("-p", "txscope").assert_outcomes(passed=1)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    result = pytester.runpytest_subprocess("-p", "no:txscope")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'db_session' not found*"])


@pytest.mark.backends("sqlite-file")  # the listing does not depend on the backend
def test_fixtures_have_docstrings_in_fixtures_listing(pytester: pytest.Pytester, backend: Backend) -> None:
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "db_engine [[]session scope[]] -- *",
            "    The configured `pytest_txscope.Engine` (session scope), its database ready with ``txscope_schema``.",
            "db_sandbox -- *",
            "    The test's rollback scope (function scope): a `Sandbox` on ``db_engine``.",
            "db_session -- *",
            "    A `pytest_txscope.Session` inside the test's sandbox (function scope).",
        ]
    )
    assert "_txscope_" not in result.stdout.str()  # the plugin's private fixtures stay out of the listing
