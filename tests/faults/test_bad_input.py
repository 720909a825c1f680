"""Bad input: every mistake in the configuration gets ONE clear message naming the cause and the fix.

A mistake pytest-txscope can see when pytest starts is a usage error: one ``ERROR: ...`` line, exit code 4,
no test run. One it sees when the database is set up (a schema file that fails halfway, an import path that
does not import, a server that cannot be reached, a database name that is not a test database's) is reported
once, in the first test that needs the database, without a traceback, and the run stops there: every later test
would fail the same way. Nothing half-built is left behind as if it were valid, on any backend (MariaDB runs DDL
outside transactions). Each case asserts the exact line the user sees and that no traceback was printed.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from pytest_txscope import ConfigurationError, DatabaseURL, Engine, Sandbox
from pytest_txscope.provision import drop, drop_templates

from ..backends import Backend, password_url, sibling_url

KEYS = (
    "txscope_url, txscope_schema, txscope_engines, txscope_reuse_db, txscope_check_leaks, txscope_block, "
    "txscope_allow_databases, txscope_statement_savepoints, txscope_thread_timeout, txscope_env, txscope_threads, "
    "txscope_connect, txscope_databases, txscope_database_schemas, txscope_lock_timeout"
)
STOPPED = "*! stopping: pytest-txscope could not set up the database; see the error above !*"
STOPPED_ENGINES = (
    "*! stopping: pytest-txscope could not set up the application's engines; see the error above !*"
)
# Two tests need the database, one does not: after a setup failure in the first, none of them runs.
TESTS = """
def test_1_needs_the_database(db_session):
    pass

def test_2_needs_it_too(db_session):
    pass

def test_3_needs_nothing():
    pass
"""


def clean_output(result: pytest.RunResult) -> str:
    """The run's whole output, after checking that it holds no traceback and at most one error block."""
    text = result.stdout.str() + "\n" + result.stderr.str()
    assert "Traceback" not in text, text
    assert "_ _ _ _" not in text, text  # the separator between the frames of a traceback
    assert "During handling of the above exception" not in text, text
    assert text.count("ERROR at setup") + text.count("ERROR at teardown") <= 1, text
    return text


def usage_error(result: pytest.RunResult, line: str) -> None:
    """The run stopped before any test with exactly one ``ERROR:`` line, ``line`` (an fnmatch pattern)."""
    clean_output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [entry for entry in result.errlines if entry.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    result.stderr.fnmatch_lines([line])


def stopped_at_setup(result: pytest.RunResult, line: str, banner: str = STOPPED) -> None:
    """The first test that needed the database reported ``line`` (its only line), and the run stopped."""
    clean_output(result)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*_ ERROR at setup of test_1_needs_the_database _*", line], consecutive=True)
    result.stdout.fnmatch_lines(
        ["*short test summary*", "ERROR test_x.py::test_1_needs_the_database - *", banner]
    )


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_x=TESTS)
    return pytester


def ini(pytester: pytest.Pytester, *lines: str) -> None:
    pytester.makefile(".ini", pytest="\n".join(["[pytest]", "addopts = -p no:randomly", *lines]) + "\n")


# -------------------------------------------------------------------------------- seen at start-up
@pytest.mark.parametrize(
    ("lines", "args", "env", "message"),
    [
        pytest.param(
            [],
            ["--txscope-url=postgres://u:pw@host:port/app_test"],
            None,
            "ERROR: --txscope-url: malformed database URL postgres://u:***@host:port/app_test: Port could not be "
            "cast to integer value as 'port'; write it like postgresql://user:password@localhost:5432/dbname",
            id="cli-url-malformed",
        ),
        pytest.param(
            [],
            ["--txscope-url", "  postgress://u:pw@h/db_test "],
            None,
            "ERROR: --txscope-url: unknown database URL scheme 'postgress' in postgress://u:***@h/db_test; use one "
            "of: sqlite://, sqlite3://, postgresql://, postgres://, mysql://, mariadb://",
            id="cli-url-unknown-scheme",
        ),
        pytest.param(
            ["txscope_url = localhost/app_test"],
            [],
            None,
            "ERROR: txscope_url: malformed database URL localhost/app_test: it has no scheme; write it like "
            "sqlite:///relative.db, sqlite:////absolute/path.db or sqlite:///:memory:, "
            "postgresql://user:password@localhost:5432/dbname, mysql://user:password@localhost:3306/dbname",
            id="ini-url-no-scheme",
        ),
        pytest.param(
            [],
            [],
            "mysql://u:p@ss/word@h/app_test",
            "ERROR: TXSCOPE_URL: malformed database URL mysql://u:***@h/app_test: its password has a '/', '?', '#' "
            "or '@' that is not percent-encoded; write it like mysql://user:p%40ss%2Fword@localhost:3306/dbname "
            "(for the password p@ss/word)",
            id="env-url-unencoded-password",
        ),
        pytest.param(
            [],
            [],
            "sqlite://data/app_test.db",
            "ERROR: TXSCOPE_URL: malformed database URL sqlite://data/app_test.db: the host part must be empty for "
            "SQLite; write it like sqlite:///relative.db, sqlite:////absolute/path.db or sqlite:///:memory:",
            id="env-sqlite-two-slashes",
        ),
        pytest.param(
            ["txscope_ur1 = postgresql://u@h/app_test"],
            [],
            None,
            f"ERROR: unknown ini key 'txscope_ur1' (pytest.ini): pytest-txscope has no such setting; did you mean "
            f"txscope_url? (its keys: {KEYS})",
            id="ini-key-misspelt",
        ),
        pytest.param(
            ["TXSCOPE_REUSE_DB = true"],
            [],
            None,
            f"ERROR: unknown ini key 'TXSCOPE_REUSE_DB' (pytest.ini): pytest-txscope has no such setting; did you "
            f"mean txscope_reuse_db? (its keys: {KEYS})",
            id="ini-key-upper-case",
        ),
        pytest.param(
            ["txscope_driver = app_test"],
            [],
            None,
            f"ERROR: unknown ini key 'txscope_driver' (pytest.ini): pytest-txscope has no such setting; remove it "
            f"or use one of its keys (its keys: {KEYS})",
            id="ini-key-unknown",
        ),
        pytest.param(
            [],
            ["-o", "txscope_chek_leaks=true"],
            None,
            f"ERROR: unknown ini key 'txscope_chek_leaks' (-o): pytest-txscope has no such setting; did you mean "
            f"txscope_check_leaks? (its keys: {KEYS})",
            id="override-key-misspelt",
        ),
        pytest.param(
            ["txscope_reuse_db = maybe"],
            [],
            None,
            "ERROR: txscope_reuse_db = 'maybe' is not a boolean; use true or false",
            id="reuse-db-not-a-boolean",
        ),
        pytest.param(
            ["txscope_check_leaks = 2"],
            [],
            None,
            "ERROR: txscope_check_leaks = '2' is not a boolean; use true or false",
            id="check-leaks-not-a-boolean",
        ),
        pytest.param(
            [],
            ["-o", "txscope_block=enabled"],
            None,
            "ERROR: txscope_block = 'enabled' is not a boolean; use true or false",
            id="block-not-a-boolean",
        ),
        pytest.param(
            ["txscope_statement_savepoints = sometimes"],
            [],
            None,
            "ERROR: txscope_statement_savepoints = 'sometimes' is not valid; use one of: auto, on, off",
            id="statement-savepoints-ini",
        ),
        pytest.param(
            [],
            ["--txscope-statement-savepoints=sometimes"],
            None,
            "*: error: argument --txscope-statement-savepoints: invalid choice: 'sometimes' (choose from *auto*, "
            "*on*, *off*)",
            id="statement-savepoints-cli",
        ),
        pytest.param(
            [],
            ["--txscope-reuse-db=yes"],
            None,
            "*: error: argument --txscope-reuse-db: ignored explicit argument 'yes'",
            id="reuse-db-flag-with-a-value",
        ),
        *(
            pytest.param(
                [f"txscope_thread_timeout = {value}"],
                [],
                None,
                f"ERROR: txscope_thread_timeout = '{value}' is not valid; use a number of seconds greater than 0",
                id=f"thread-timeout-{value}",
            )
            for value in ("abc", "0", "-1", "inf", "nan", "1e300")
        ),
        *(
            pytest.param(
                [f"txscope_lock_timeout = {value}"],
                [],
                None,
                f"ERROR: txscope_lock_timeout = '{value}' is not valid; use a number of seconds, 0 or more",
                id=f"lock-timeout-{value}",
            )
            for value in ("soon", "-0.5", "inf", "nan", "1e300")
        ),
        pytest.param(
            ["txscope_schema = schema.sql.txt"],
            [],
            None,
            "ERROR: txscope_schema entry 'schema.sql.txt' is neither a file (looked for */schema.sql.txt) nor an "
            "import path; use an SQL file (path/to/schema.sql, relative to the ini file), an import path "
            "(package.module:attribute) or alembic migrations (alembic:path/to/alembic.ini)",
            id="schema-missing-file",
        ),
        pytest.param(
            ["txscope_engines = app.db.engine"],
            [],
            None,
            "ERROR: txscope_engines entry 'app.db.engine' is not an import path; write it as "
            "package.module:attribute",
            id="engines-not-an-import-path",
        ),
    ],
)
def test_start_up_mistakes_are_one_usage_error(
    project: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[str],
    args: list[str],
    env: str | None,
    message: str,
) -> None:
    ini(project, *lines)
    if env is not None:
        monkeypatch.setenv("TXSCOPE_URL", env)
    usage_error(project.runpytest(*args), message)


@pytest.mark.parametrize(
    ("scheme", "driver", "display", "extra"),
    [("postgresql", "psycopg", "PostgreSQL", "postgresql"), ("mariadb", "pymysql", "MySQL/MariaDB", "mysql")],
)
def test_missing_driver_is_a_usage_error(
    project: pytest.Pytester, scheme: str, driver: str, display: str, extra: str
) -> None:
    # The driver is made unimportable before the plugin configures itself, by the real import machinery: the
    # conftest runs first, and `sys.modules[name] = None` is how Python marks a module that must not import.
    project.makeconftest(f"import sys\nsys.modules[{driver!r}] = None\n")
    ini(project, f"txscope_url = {scheme}://app:pw@localhost/app_test")
    usage_error(
        project.runpytest(),
        f"ERROR: txscope_url: the {display} backend needs the {driver!r} driver, which is not installed; "
        f"install it with: pip install 'pytest-txscope[{extra}]'",
    )


@pytest.mark.skipif(pytest.version_tuple < (9, 2), reason="typed ini values need pytest 9.2")
def test_native_toml_values_are_taken_and_wrong_ones_named(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(
        "[tool.pytest]\naddopts = ['-p', 'no:randomly']\ntxscope_reuse_db = true\ntxscope_check_leaks = false\n"
        "txscope_thread_timeout = 2.5\n"
    )
    result = project.runpytest()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["txscope: embedded SQLite * statement savepoints off, reuse-db"])
    project.makepyprojecttoml("[tool.pytest]\ntxscope_reuse_db = 'maybe'\n")
    usage_error(project.runpytest(), "ERROR: txscope_reuse_db = 'maybe' is not a boolean; use true or false")
    project.makepyprojecttoml("[tool.pytest]\ntxscope_thread_timeout = true\n")
    usage_error(
        project.runpytest(),
        "ERROR: */pyproject.toml: config option 'txscope_thread_timeout' expects one of *, got bool: True",
    )
    project.makepyprojecttoml("[tool.pytest.ini_options]\ntxscope_shema = ['schema.sql']\n")
    usage_error(
        project.runpytest(),
        f"ERROR: unknown ini key 'txscope_shema' (pyproject.toml): pytest-txscope has no such setting; did you "
        f"mean txscope_schema? (its keys: {KEYS})",
    )


def test_other_plugins_keys_are_left_to_pytest(project: pytest.Pytester) -> None:
    # Only keys that look like ours are refused: anything else is pytest's business (a warning, or an error
    # under --strict-config), and a txscope_* key another plugin registered is that plugin's.
    project.makeconftest("def pytest_addoption(parser):\n    parser.addini('txscope_extra', 'a neighbour')\n")
    ini(project, "timeout = 30", "xfail_strict = true", "txscope_extra = 1")
    result = project.runpytest()
    # Not a count of warnings: depending on how the package is installed, an in-process run can add pytest's
    # own "cannot be rewritten" warning about the plugin module, which says nothing about ini keys.
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*PytestConfigWarning: Unknown config option: timeout"])
    assert "Unknown config option: xfail_strict" not in result.stdout.str()  # pytest's own key
    # The neighbour plugin's key: neither refused nor warned about.
    assert "txscope_extra" not in result.stdout.str()


# ------------------------------------------------------------------------- seen when the database is set up
@pytest.mark.parametrize(
    ("app", "line"),
    [
        pytest.param(
            None,
            "pytest_txscope.errors.ImportPathError: txscope_engines entry 'app:engine' cannot be imported: "
            "ModuleNotFoundError: No module named 'app'; check the module's name, and that its folder is on "
            "sys.path (pytest's pythonpath ini key)",
            id="module-missing",
        ),
        pytest.param(
            "import os\n\nengine = os.environ['APP_DATABASE_URL']\n",
            "pytest_txscope.errors.ImportPathError: txscope_engines entry 'app:engine' cannot be imported: "
            "KeyError: 'APP_DATABASE_URL' (raised at */app.py:3); fix that error in the module: it happens when "
            "the module is imported, before any test",
            id="module-raises",
        ),
        pytest.param(
            "def make_engine(:\n    pass\n",
            "pytest_txscope.errors.ImportPathError: txscope_engines entry 'app:engine' cannot be imported: "
            "SyntaxError: invalid syntax (raised at */app.py:1); fix that error in the module: it happens when the "
            "module is imported, before any test",
            id="module-syntax-error",
        ),
        pytest.param(
            "ENGINE = None\n",
            "pytest_txscope.errors.ImportPathError: txscope_engines entry 'app:engine' cannot be imported: "
            "<module 'app' from '*app.py'> has no attribute 'engine'; write it as package.module:attribute",
            id="attribute-missing",
        ),
        pytest.param(
            "engine = 'sqlite:///app_test.db'\n",
            "pytest_txscope.errors.ImportPathError: txscope_engines entry 'app:engine' is a str, not an engine "
            "of pytest_txscope or SQLAlchemy (sync or async); point it at the application's engine object",
            id="not-an-engine",
        ),
    ],
)
def test_engines_that_do_not_import_stop_the_run(
    project: pytest.Pytester, app: str | None, line: str
) -> None:
    if app is not None:
        project.makepyfile(app=app)
    ini(project, "txscope_engines = app:engine")
    stopped_at_setup(project.runpytest(), line, STOPPED_ENGINES)


def test_schema_function_that_is_not_callable_stops_the_run(project: pytest.Pytester) -> None:
    project.makepyfile(app="SCHEMA = 'CREATE TABLE t (id INTEGER)'\n")
    ini(project, "txscope_schema = app:SCHEMA")
    stopped_at_setup(
        project.runpytest(),
        "pytest_txscope.errors.ImportPathError: txscope_schema entry 'app:SCHEMA' is a str, not a callable; "
        "point it at a function that takes the engine and builds the schema",
    )


def test_schema_function_that_raises_shows_its_own_traceback_once(project: pytest.Pytester) -> None:
    # The user's own code failing: its traceback is what they need, shown once, and the run stops.
    project.makepyfile(app="def build(engine):\n    raise LookupError('no seed data for tenant 7')\n")
    ini(project, "txscope_schema = app:build")
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*raise LookupError('no seed data for tenant 7')", "E       LookupError: *", STOPPED]
    )
    assert result.stdout.str().count("ERROR at setup") == 1


@pytest.mark.backends("postgresql", "mysql")
def test_unsafe_database_name_stops_the_run_before_anything_is_dropped(
    project: pytest.Pytester, backend: Backend
) -> None:
    raw = password_url(backend).rsplit("/", 1)[0] + "/txscope_app"  # no 'test' word part
    url = DatabaseURL.parse(raw)
    project.makefile(".sql", schema="CREATE TABLE t (id INTEGER);")
    ini(project, "txscope_schema = schema.sql", f"txscope_url = {raw}")
    stopped_at_setup(
        project.runpytest(),
        f"pytest_txscope.errors.UnsafeDatabaseError: refusing to create database 'txscope_app' ({url}): its name "
        "does not look like a test database (no 'test' word part); rename it (e.g. txscope_app_test) or allow it "
        "with txscope_allow_databases = txscope_app",
    )


@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.parametrize("schema", [False, True], ids=["no-schema", "schema"])
def test_unreachable_server_stops_the_run(project: pytest.Pytester, backend: Backend, schema: bool) -> None:
    parsed = DatabaseURL.parse(password_url(backend))
    raw = (
        f"{parsed.scheme}://{parsed.user}:{parsed.password}@127.0.0.1:1/app_test"  # nothing listens on port 1
    )
    url = DatabaseURL.parse(raw)
    lines = [f"txscope_url = {raw}"]
    if schema:
        project.makefile(".sql", schema="CREATE TABLE t (id INTEGER);")
        lines.append("txscope_schema = schema.sql")
    ini(project, *lines)
    shown = url.with_database("postgres" if backend.family == "postgresql" else "") if schema else url
    # asyncpg, not a DB-API driver, raises the socket's own error rather than an OperationalError.
    refused = "ConnectionRefusedError" if "asyncpg" in backend.name else "OperationalError"
    stopped_at_setup(
        project.runpytest(),
        f"pytest_txscope.errors.BackendUnavailableError: cannot connect to {shown}: {refused}: *; check "
        "that the server is running and the URL (host, port, user, database) is right",
    )


@pytest.mark.backends("postgresql", "mysql")
def test_database_that_does_not_exist_stops_the_run(project: pytest.Pytester, backend: Backend) -> None:
    raw = sibling_url(backend, "nosuchdb")  # without txscope_schema the plugin uses the database as it is
    ini(project, f"txscope_url = {raw}")
    missing = "InvalidCatalogNameError" if "asyncpg" in backend.name else "OperationalError"
    stopped_at_setup(
        project.runpytest(),
        f"pytest_txscope.errors.BackendUnavailableError: cannot connect to {DatabaseURL.parse(raw)}: "
        f"{missing}: *nosuchdb*; check that the server is running and the URL (host, port, user, database) "
        "is right",
    )


# --------------------------------------------------------------------------- a schema that fails halfway
BROKEN = "CREATE TABLE first_part (id INTEGER PRIMARY KEY);\n\nCREATE TABL second_part (id INTEGER);\n"
FIXED = "CREATE TABLE first_part (id INTEGER PRIMARY KEY);\n\nCREATE TABLE second_part (id INTEGER);\n"
COMPLETE = """
def test_1_needs_the_database(db_session):
    assert db_session.fetchall("SELECT * FROM second_part") == []
"""
KILLING_SCHEMA = """
import os
from pathlib import Path

def build(engine):
    engine.executescript("CREATE TABLE first_part (id INTEGER PRIMARY KEY)")   # committed on every backend
    if os.environ.get("TXSCOPE_KILL_BUILD"):
        os._exit(17)                                   # the run dies here: no cleanup, no finally
    engine.executescript("CREATE TABLE second_part (id INTEGER)")
    with open(Path(__file__).with_name("builds.log"), "a") as log:
        log.write("built\\n")
"""


def half_url(backend: Backend, pytester: pytest.Pytester, name: str) -> str:
    if backend.family == "sqlite":
        return f"sqlite:///{pytester.path / (name + '_test.db')}"
    return sibling_url(backend, name).partition("?")[0]


def leftovers(backend: Backend, url: str) -> list[str]:
    """What exists of ``url``'s database: itself and its templates (SQLite: its file and key file)."""
    parsed = DatabaseURL.parse(url)
    if backend.family == "sqlite":
        path = Path(parsed.database)
        return sorted(p.name for p in path.parent.glob(path.name + "*"))
    peer = backend.peer()
    try:
        sql = "SELECT datname FROM pg_database" if backend.family == "postgresql" else "SHOW DATABASES"
        names = [str(row[0]) for row in peer.fetchall(sql)]
    finally:
        peer.close()
    return sorted(n for n in names if re.fullmatch(rf"{re.escape(parsed.database)}(_tpl_.*)?", n))


def drop_all(url: str) -> None:
    parsed = DatabaseURL.parse(url)
    drop(parsed, allow=())
    drop_templates(parsed, allow=())


@pytest.mark.backends("sqlite-file", "postgresql", "mysql")
def test_schema_failing_halfway_stops_the_run_and_leaves_nothing(
    project: pytest.Pytester, backend: Backend
) -> None:
    url = half_url(backend, project, "half")
    project.makefile(".sql", schema=BROKEN)
    ini(project, "txscope_schema = schema.sql", f"txscope_url = {url}", "txscope_reuse_db = true")
    try:
        kept = "statement 1 was committed (MySQL/MariaDB commits DDL as it runs)"
        stopped_at_setup(
            project.runpytest(),
            f"pytest_txscope.errors.ScriptError: {project.path / 'schema.sql'}, line 3: statement 2 of 2 failed: "
            f"'CREATE TABL second_part (id INTEGER)': *; "
            + (kept if backend.family == "mysql" else "nothing of the script was kept"),
        )
        # MariaDB committed the first CREATE TABLE: the half-built database was dropped all the same.
        assert leftovers(backend, url) == []
        project.makefile(".sql", schema=FIXED)
        project.makepyfile(test_x=COMPLETE)
        project.runpytest().assert_outcomes(passed=1)
    finally:
        drop_all(url)


@pytest.mark.backends("sqlite-file", "postgresql", "mysql")
def test_run_killed_while_building_the_schema_is_rebuilt_not_trusted(
    project: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The schema key does not change between the two runs, and reuse is on: only the key recorded after a
    # complete build tells the half-built database from a good one.
    url = half_url(backend, project, "killed")
    project.makepyfile(schema_mod=KILLING_SCHEMA, test_x=COMPLETE)
    ini(project, "txscope_schema = schema_mod:build", f"txscope_url = {url}", "txscope_reuse_db = true")
    try:
        monkeypatch.setenv("TXSCOPE_KILL_BUILD", "1")
        assert project.runpytest_subprocess().ret == 17
        assert leftovers(backend, url) != []  # what the killed run left: a database with half a schema
        monkeypatch.delenv("TXSCOPE_KILL_BUILD")
        project.runpytest_subprocess().assert_outcomes(passed=1)
        assert (project.path / "builds.log").read_text().splitlines() == ["built"]
        project.runpytest_subprocess().assert_outcomes(passed=1)  # complete now: reused, not built again
        assert (project.path / "builds.log").read_text().splitlines() == ["built"]
    finally:
        drop_all(url)


# ---------------------------------------------------------------------------------- library arguments
@pytest.mark.parametrize("value", ["5", -1, float("inf"), float("nan"), True])
def test_wrong_wait_for_a_connection(value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Engine.from_url("sqlite:///:memory:", acquire_timeout=value)
    assert str(info.value) == (
        f"acquire_timeout={value!r} is not valid; use a number of seconds >= 0 (and finite)"
    )


@pytest.mark.parametrize("value", ["30", 0, -1, float("inf")])
def test_wrong_wait_for_a_shared_sandbox(value: object) -> None:
    with Sandbox(Engine.from_url("sqlite:///:memory:")) as sandbox:
        for call in (
            sandbox.share,
            lambda timeout: sandbox.allow_thread(threading.current_thread(), timeout=timeout),
        ):
            with pytest.raises(ConfigurationError) as info:
                call(timeout=value)
            assert str(info.value) == (
                f"timeout={value!r} is not valid; use a number of seconds greater than 0 (and finite)"
            )


def test_max_connections_is_not_a_boolean() -> None:
    with pytest.raises(ConfigurationError, match=r"^max_connections=True is not valid; use None or >= 1$"):
        Engine.from_url("sqlite:///:memory:", max_connections=True)


def test_positional_marker_argument(project: pytest.Pytester) -> None:
    # Misspelt and mistyped marker arguments: tests/plugin/test_plugin.py; a positional one is refused the same way.
    ini(project)
    project.makepyfile(test_x="import pytest\n\n@pytest.mark.txscope(True)\ndef test_1(): pass\n")
    result = project.runpytest()
    clean_output(result)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "test_x.py::test_1: @pytest.mark.txscope takes 0 positional arguments but 1 was given; valid "
            "arguments: commit=False, threads='shared' or 'strict', databases=[[]'default', ...], "
            "reset_sequences=False"
        ]
    )
