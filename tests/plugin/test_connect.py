"""Apps that call their driver's own ``connect()`` (no engine anywhere), sandboxed by ``txscope_connect`` alone.

Each generated project runs in a subprocess: interception replaces the drivers' module functions for the run,
which must not touch this process's drivers.
"""

from __future__ import annotations

import pytest

from ..backends import Backend, sibling_url

# ------------------------------------------------------------------------------------ a flaskr-like app
FLASKR_SCHEMA = """
CREATE TABLE user (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT UNIQUE NOT NULL, password TEXT NOT NULL);
CREATE TABLE post (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  author_id INTEGER NOT NULL,
  created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  FOREIGN KEY (author_id) REFERENCES user (id)
);
INSERT INTO user (username, password) VALUES ('test', 'pbkdf2:sha256:50000$TCI4GzcX$0de171a4f4dac32e33');
INSERT INTO post (title, body, author_id, created) VALUES ('test title', 'test\\nbody', 1, '2018-01-01 00:00:00');
"""

# As the Flask tutorial's flaskr/db.py and flaskr/blog.py do it, without Flask: a connection per request.
FLASKR_APP = """
import sqlite3

config = {"DATABASE": None}  # the app's settings: the tests point DATABASE at the test database


def get_db():
    db = sqlite3.connect(config["DATABASE"], detect_types=sqlite3.PARSE_DECLTYPES)
    db.row_factory = sqlite3.Row
    return db


def create(title, body, author_id=1):
    db = get_db()
    db.execute("INSERT INTO post (title, body, author_id) VALUES (?, ?, ?)", (title, body, author_id))
    db.commit()
    db.close()


def index():
    db = get_db()
    posts = db.execute(
        "SELECT p.id, title, body, created, author_id, username"
        " FROM post p JOIN user u ON p.author_id = u.id ORDER BY created DESC"
    ).fetchall()
    db.close()
    return [f"{post['title']} by {post['username']} on {post['created'].strftime('%Y-%m-%d')}" for post in posts]
"""

FLASKR_CONFTEST = """
import pytest
import flaskr


@pytest.fixture(scope="session", autouse=True)
def _app_settings(db_engine):
    # The test database is the plugin's (one per xdist worker): its path is db_engine.url.database.
    flaskr.config["DATABASE"] = db_engine.url.database
"""

FLASKR_TESTS = """
import datetime
import sqlite3

import pytest
import flaskr


def test_index_shows_the_seed_post(db_sandbox):
    assert flaskr.index() == ["test title by test on 2018-01-01"]


@pytest.mark.parametrize("n", range(4))
def test_create_is_rolled_back(db_session, n):
    flaskr.create("created", "body")
    assert db_session.fetchscalar("SELECT count(*) FROM post") == 2  # the app's commit, in the test's transaction
    db = flaskr.get_db()
    row = db.execute("SELECT created FROM post WHERE title = 'created'").fetchone()
    assert isinstance(row["created"], datetime.datetime)
    assert flaskr.index()[1] == "test title by test on 2018-01-01"


@pytest.mark.txscope
def test_marker_alone():
    flaskr.create("marked", "body")
    assert len(flaskr.index()) == 2


def test_outside_any_sandbox_nothing_was_committed(db_engine):
    real = sqlite3.connect(db_engine.url.database)  # no sandbox: the driver's own connection
    assert type(real) is sqlite3.Connection
    assert real.execute("SELECT count(*) FROM post").fetchone() == (1,)
    real.close()
"""


@pytest.fixture
def flaskr(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the project names the plugins it loads
    pytester.makefile(".sql", schema=FLASKR_SCHEMA)
    pytester.makepyfile(flaskr=FLASKR_APP, conftest=FLASKR_CONFTEST, test_blog=FLASKR_TESTS)
    pytester.makeini(
        "[pytest]\ntxscope_schema = schema.sql\ntxscope_connect = sqlite3\naddopts = -p txscope -p xdist\n"
    )
    return pytester


def test_flaskr_app_is_sandboxed_by_the_ini_key_alone(flaskr: pytest.Pytester) -> None:
    result = flaskr.runpytest_subprocess("-v", "-p", "no:randomly")
    result.stdout.fnmatch_lines(
        [
            "test_blog.py::test_index_shows_the_seed_post PASSED*",
            "test_blog.py::test_create_is_rolled_back[[]0[]] PASSED*",
            "test_blog.py::test_create_is_rolled_back[[]1[]] PASSED*",
            "test_blog.py::test_create_is_rolled_back[[]2[]] PASSED*",
            "test_blog.py::test_create_is_rolled_back[[]3[]] PASSED*",
            "test_blog.py::test_marker_alone PASSED*",
            "test_blog.py::test_outside_any_sandbox_nothing_was_committed PASSED*",
            "*= 7 passed in *",
        ]
    )


def test_flaskr_suite_passes_in_random_order_and_under_xdist(flaskr: pytest.Pytester) -> None:
    flaskr.runpytest_subprocess("-p", "randomly", "--randomly-seed=7").assert_outcomes(passed=7)
    flaskr.runpytest_subprocess("-n", "2").assert_outcomes(passed=7)


def test_a_connection_kept_beyond_its_test_says_so(flaskr: pytest.Pytester) -> None:
    flaskr.makepyfile(
        test_kept="""
import pytest
import sqlite3
import flaskr

kept = []

def test_1_keeps_it(db_sandbox):
    kept.append(flaskr.get_db())

def test_2_uses_it(db_sandbox):
    with pytest.raises(sqlite3.ProgrammingError) as info:
        kept[0].execute("SELECT 1")
    print(info.value)
"""
    )
    result = flaskr.runpytest_subprocess("-s", "-p", "no:randomly", "test_kept.py")
    result.stdout.fnmatch_lines(
        [
            "*Cannot operate on a closed database. (this sandbox connection is closed: the code closed it, or "
            "the test it was handed out in ended; connect again, once per test or request, rather than keeping "
            "a connection across tests)"
        ]
    )
    result.assert_outcomes(passed=2)


def test_a_connection_opened_before_the_sandbox_is_reported(flaskr: pytest.Pytester) -> None:
    flaskr.makeconftest(
        "import sqlite3\n"
        + FLASKR_CONFTEST
        + "    flaskr.early = sqlite3.connect(db_engine.url.database)  # as an app that connects at start-up\n"
    )
    result = flaskr.runpytest_subprocess("-p", "no:randomly", "test_blog.py::test_index_shows_the_seed_post")
    result.stdout.fnmatch_lines(
        [
            "*ConnectedBeforeSandboxWarning: a real sqlite3 connection to the test database was opened at "
            "*conftest.py:* in _app_settings, before any sandboxed test (when a module was imported, or in a "
            "fixture): if the code keeps it, what it commits is committed for real and no test rolls it back. "
            "Connect inside the test (per request, or in a function-scoped fixture) instead",
        ]
    )
    result.assert_outcomes(passed=1, warnings=1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "sqlite",
            "ERROR: txscope_connect: 'sqlite' is not a driver whose connect() can be intercepted; use one of "
            "sqlite3, psycopg, psycopg2, pymysql, MySQLdb (import names), or auto (the test database's driver)",
        ),
        (
            "psycopg",
            "ERROR: txscope_connect: the sandbox's connection to the test database is a sqlite3 one, so a psycopg "
            "connect() cannot be given it; psycopg connects to postgresql, but the test database is embedded "
            "SQLite: set txscope_url to a postgresql URL",
        ),
    ],
)
def test_a_driver_that_cannot_be_intercepted_is_a_usage_error(
    pytester: pytest.Pytester, value: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\ntxscope_connect = {value}\naddopts = -p txscope\n")
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_the_url_must_name_the_driver_the_app_uses(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\ntxscope_url = postgresql://postgres@127.0.0.1/txscope_x_test\naddopts = -p txscope\n"
    )
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest("--txscope-connect", "psycopg2")
    result.stderr.fnmatch_lines(
        [
            "ERROR: --txscope-connect: the sandbox's connection to the test database is a psycopg one, so a "
            "psycopg2 connect() cannot be given it; write the test database's URL as postgresql+psycopg2://... "
            "(txscope_url) so that the sandbox connects with psycopg2"
        ]
    )


# ------------------------------------------------------------------------------- every driver, for real
# The app connects with its driver and the test database's parameters (set by the conftest), commits, closes.
DRIVER_APP = """
import importlib

DRIVER = None
PARAMS = {}
MARK = "?"


def connect(**changes):
    driver = importlib.import_module(DRIVER)
    return driver.connect(**{**PARAMS, **changes})


def add_note(note_id, body):
    conn = connect()
    cur = conn.cursor()
    cur.execute(f"INSERT INTO notes (id, body) VALUES ({MARK}, {MARK})", (note_id, body))
    conn.commit()
    conn.close()
"""

DRIVER_CONFTEST = """
import pytest
import app


@pytest.fixture(scope="session", autouse=True)
def _app_settings(db_engine):
    url = db_engine.url
    app.DRIVER = db_engine.dialect.driver
    app.MARK = "?" if app.DRIVER == "sqlite3" else "%s"
    if app.DRIVER == "sqlite3":
        app.PARAMS = {"database": url.database}
    elif app.DRIVER == "psycopg":
        app.PARAMS = {"conninfo": f"host={url.host} port={url.port or 5432} dbname={url.database} user={url.user}"}
    elif app.DRIVER == "psycopg2":
        app.PARAMS = {"dsn": f"postgresql://{url.user}@{url.host}:{url.port or 5432}/{url.database}"}
    elif app.DRIVER == "pymysql":
        app.PARAMS = {"host": url.host, "port": url.port or 3306, "user": url.user, "database": url.database}
    else:
        app.PARAMS = {"host": url.host, "port": url.port or 3306, "user": url.user, "db": url.database}
"""

DRIVER_TESTS = """
import pytest
import app
from pytest_txscope import Engine
from pytest_txscope.dbapi import SandboxConnection


@pytest.mark.parametrize("n", range(3))
def test_the_apps_commit_is_rolled_back(db_session, n):
    app.add_note(1, "kept until the test ends")  # the same id each time: a leaked row would clash
    assert db_session.fetchall("SELECT id, body FROM notes") == [(1, "kept until the test ends")]


def test_another_database_is_left_alone(db_sandbox, other):
    conn = app.connect(**other)
    assert not isinstance(conn, SandboxConnection)
    conn.close()


def test_no_sandbox_no_interception():
    conn = app.connect()
    assert not isinstance(conn, SandboxConnection)
    conn.close()


def test_zz_independent_connection_sees_nothing(db_engine):
    outside = Engine.from_url(db_engine.url)
    with outside.session() as s:
        assert s.fetchscalar("SELECT count(*) FROM notes") == 0
    outside.dispose()
"""

OTHER_DATABASE = {
    "sqlite": '{"database": str(tmp_path / "other.db")}',
    "postgresql": '{"conninfo": "host=127.0.0.1 dbname=postgres user=postgres"}',
    "postgresql-psycopg2": '{"dsn": "host=127.0.0.1 dbname=postgres user=postgres"}',
    "mysql": '{"database": "mysql"}',
    "mysql-mysqldb": '{"db": "mysql"}',
}


@pytest.mark.backends("sqlite-file", "postgresql", "mysql")
def test_each_drivers_connect_is_sandboxed(pytester: pytest.Pytester, backend: Backend) -> None:
    url = None if backend.family == "sqlite" else sibling_url(backend, "connect").partition("?")[0]
    pytester.makefile(
        ".sql", schema="CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(50) NOT NULL);"
    )
    other = OTHER_DATABASE["sqlite" if backend.family == "sqlite" else backend.name]
    conftest = DRIVER_CONFTEST + f"\n\n@pytest.fixture\ndef other(tmp_path):\n    return {other}\n"
    pytester.makepyfile(app=DRIVER_APP, conftest=conftest, test_notes=DRIVER_TESTS)
    ini = ["[pytest]", "txscope_schema = schema.sql", "txscope_connect = auto", "addopts = -p no:randomly"]
    if url:
        ini.append(f"txscope_url = {url}")
    pytester.makeini("\n".join(ini))
    result = pytester.runpytest_subprocess("-v")
    result.stdout.fnmatch_lines(
        [
            "test_notes.py::test_the_apps_commit_is_rolled_back[[]0[]] PASSED*",
            "test_notes.py::test_the_apps_commit_is_rolled_back[[]1[]] PASSED*",
            "test_notes.py::test_the_apps_commit_is_rolled_back[[]2[]] PASSED*",
            "test_notes.py::test_another_database_is_left_alone PASSED*",
            "test_notes.py::test_no_sandbox_no_interception PASSED*",
            "test_notes.py::test_zz_independent_connection_sees_nothing PASSED*",
        ]
    )
    result.assert_outcomes(passed=6)


def test_intercepted_connections_count_their_statements(flaskr: pytest.Pytester) -> None:
    # Query counts (docs/queries.md) see the app's own sqlite3 connections; its commit() is not a statement.
    flaskr.makepyfile(
        test_counts="""
import flaskr

def test_counts(db_assert_num_queries, db_sandbox):
    with db_assert_num_queries(2) as queries:
        flaskr.create("counted", "body")
        assert len(flaskr.index()) == 2
    assert [q.site.split(":")[0] for q in queries] == ["flaskr.py", "flaskr.py"]
"""
    )
    flaskr.runpytest_subprocess("-p", "no:randomly", "test_counts.py").assert_outcomes(passed=1)
