"""Migrations as the schema: ``txscope_schema = alembic:db/alembic.ini`` runs ``alembic upgrade head`` on the
database the plugin builds (each xdist worker's, PostgreSQL's template), through the driver the URL names, and a
new revision changes the schema key, so that a reused database is built again.

The alembic project is tests/plugin/alembic_example (two revisions), copied into each generated project as
``db/``. The runs are subprocesses, as users run them (xdist workers, separate runs for reuse).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_txscope import DatabaseURL
from pytest_txscope.provision import worker_url

from ..backends import Backend, password_url
from ..faults.test_bad_input import clean_output, stopped_at_setup, usage_error
from .test_suites import database_name, remove_all, server_databases, suites_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

EXAMPLE = Path(__file__).with_name("alembic_example")

TESTS = """
def test_{n}_migrated(db_session):
    assert db_session.fetchall("SELECT version_num FROM alembic_version") == [("{head}",)]
    assert db_session.fetchall("SELECT name FROM authors WHERE id = 1") == [("seed",)]  # 0002 wrote it
    db_session.execute("INSERT INTO books (id, author_id, isbn) VALUES (1, 1, 'isbn-1')")
"""

THIRD = '''"""a note on books

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade():
    op.add_column("books", sa.Column("note", sa.String(20), server_default="none"))
'''

BROKEN = '''"""broken

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade():
    op.execute("INSERT INTO nowhere (id) VALUES (1)")
'''

URL_ONLY_ENV = """
from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.get_main_option("sqlalchemy.url")
with create_engine(url, poolclass=pool.NullPool).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


def make_project(pytester: pytest.Pytester, url: str | None, tests: int = 4, head: str = "0002") -> None:
    shutil.copytree(EXAMPLE, pytester.path / "db", dirs_exist_ok=True)
    lines = ["[pytest]", "txscope_schema = alembic:db/alembic.ini", "addopts = -p txscope -p xdist"]
    pytester.makefile(".ini", pytest="\n".join([*lines, *([f"txscope_url = {url}"] if url else [])]))
    pytester.makepyfile(test_migrated="".join(TESTS.format(n=n, head=head) for n in range(tests)))


def add_revision(pytester: pytest.Pytester, name: str, text: str) -> None:
    (pytester.path / "db" / "migrations" / "versions" / name).write_text(text)


def query(backend: Backend, url: DatabaseURL, sql: str) -> list[tuple[object, ...]]:
    """What ``sql`` returns on ``url``'s database, through a connection of the driver's own (autocommit)."""
    peer = Backend(backend.name, url.revealed()).peer()
    try:
        return peer.fetchall(sql) if sql.startswith("SELECT") else peer.execute(sql) or []
    finally:
        peer.close()


@pytest.fixture(autouse=True)
def _no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    # The generated projects load only the plugins they name (-p txscope -p xdist): faster processes.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def project_url(pytester: pytest.Pytester, backend: Backend) -> Iterator[str]:
    """A database URL of the test's own on ``backend`` (SQLite: a file in the project), removed afterwards with
    its workers' databases and templates."""
    url = suites_url(backend, database_name(backend, "migrate"), sqlite_dir=pytester.path / "data")
    assert url is not None
    yield url
    remove_all(url)


def test_migrations_build_every_worker_database_and_a_new_revision_rebuilds_a_reused_one(
    pytester: pytest.Pytester, backend: Backend, project_url: str
) -> None:
    make_project(pytester, project_url)
    workers = [worker_url(DatabaseURL.parse(project_url), w) for w in ("gw0", "gw1")]
    pytester.runpytest_subprocess("-n", "2", "--txscope-reuse-db").assert_outcomes(passed=4)
    for worker in workers:  # built by the migrations, then each test rolled back: only the seed row
        assert query(backend, worker, "SELECT version_num FROM alembic_version") == [("0002",)]
        assert query(backend, worker, "SELECT count(*) FROM books") == [(0,)]
        # A mark that only a rebuild removes.
        query(backend, worker, "INSERT INTO authors (id, name) VALUES (50, 'kept')")

    pytester.runpytest_subprocess("-n", "2", "--txscope-reuse-db").assert_outcomes(passed=4)
    for worker in workers:  # reused as they were: the mark is still there
        assert query(backend, worker, "SELECT name FROM authors WHERE id = 50") == [("kept",)]

    make_project(pytester, project_url, head="0003")
    pytester.makepyfile(
        test_note="""
        def test_note(db_session):
            db_session.execute("INSERT INTO books (id, author_id, isbn) VALUES (1, 1, 'isbn-1')")
            assert db_session.fetchall("SELECT note FROM books") == [("none",)]
        """
    )
    add_revision(pytester, "0003_note.py", THIRD)
    pytester.runpytest_subprocess("-n", "2", "--txscope-reuse-db").assert_outcomes(passed=5)
    for worker in workers:  # the new revision changed the key: built again, the mark gone
        assert query(backend, worker, "SELECT version_num FROM alembic_version") == [("0003",)]
        assert query(backend, worker, "SELECT count(*) FROM authors WHERE id = 50") == [(0,)]


def test_an_env_py_that_reads_only_sqlalchemy_url_gets_the_test_database(
    pytester: pytest.Pytester, backend: Backend, project_url: str
) -> None:
    # With the password user: the URL handed to env.py holds the password, and nothing may print it.
    url = DatabaseURL.parse(project_url)
    secret = DatabaseURL.parse(password_url(backend)) if backend.family != "sqlite" else url
    target = (
        f"{secret.revealed().rsplit('/', 1)[0]}/{url.database}" if backend.family != "sqlite" else project_url
    )
    make_project(pytester, target, tests=2)
    (pytester.path / "db" / "migrations" / "env.py").write_text(URL_ONLY_ENV)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    assert not (pytester.path / "db" / "app.db").exists()  # the ini's own sqlalchemy.url was not used


def test_a_failing_migration_names_its_revision_and_the_error_and_leaves_nothing_built(
    pytester: pytest.Pytester, backend: Backend, project_url: str
) -> None:
    make_project(pytester, project_url, tests=0)
    pytester.makepyfile(test_x="def test_1_needs_the_database(db_session):\n    pass\n")
    add_revision(pytester, "0003_broken.py", BROKEN)
    result = pytester.runpytest_subprocess()
    error = {
        "sqlite": "OperationalError: no such table: nowhere",
        "postgresql": 'UndefinedTable: relation "nowhere" does not exist',
        "mysql": "ProgrammingError: (1146, \"Table '*.nowhere' doesn't exist\")",
    }[backend.family]
    stopped_at_setup(
        result,
        "pytest_txscope.errors.MigrationError: txscope_schema entry 'alembic:db/alembic.ini': revision "
        f"0003 (0003_broken.py: broken) failed: {error}; fix the migration (the database being built was "
        "dropped, and is built again on the next run)",
    )
    name = DatabaseURL.parse(project_url).database
    if backend.family == "sqlite":
        assert list((pytester.path / "data").glob("*")) == []
    else:
        assert server_databases(backend, name) == []


@pytest.mark.backends("sqlite-file")
@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            "missing",
            "ERROR: txscope_schema entry 'alembic:db/alembic.ini': the alembic configuration file */db/alembic.ini "
            "does not exist",
            id="ini-not-found",
        ),
        pytest.param(
            "no-location",
            "ERROR: txscope_schema entry 'alembic:db/alembic.ini': */db/alembic.ini has no script_location in its "
            "[[]alembic] section; set it to the folder of the migration scripts (script_location = "
            "%(here)s/migrations)",
            id="script-location-missing",
        ),
        pytest.param(
            "bad-location",
            "ERROR: txscope_schema entry 'alembic:db/alembic.ini': script_location = */db/elsewhere in "
            "*/db/alembic.ini is not a folder; point it at the folder that holds env.py and versions/",
            id="script-location-not-a-folder",
        ),
        pytest.param(
            "no-alembic",
            "ERROR: txscope_schema entry 'alembic:db/alembic.ini': alembic is not installed (*); install it: "
            "pip install 'pytest-txscope[[]alembic]'",
            id="alembic-not-installed",
        ),
    ],
)
def test_configuration_mistakes_are_one_usage_error(
    pytester: pytest.Pytester, backend: Backend, change: str, message: str
) -> None:
    make_project(pytester, None, tests=1)
    ini = pytester.path / "db" / "alembic.ini"
    text = ini.read_text()
    if change == "missing":
        ini.unlink()
    elif change == "no-location":
        ini.write_text(text.replace("script_location = %(here)s/migrations\n", ""))
    elif change == "bad-location":
        ini.write_text(text.replace("%(here)s/migrations", "%(here)s/elsewhere"))
    else:  # how Python marks a module that must not import: as if alembic were not installed
        pytester.makeconftest("import sys\nsys.modules['alembic'] = None\n")
    usage_error(pytester.runpytest_subprocess(), message)


@pytest.mark.backends("sqlite-file")
def test_the_embedded_default_is_migrated_and_logging_is_left_as_it_was(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    # env.py calls logging.config.fileConfig, which turns off every logger its file does not name: the
    # application's logger must still log in the tests after the database was built.
    make_project(pytester, None, tests=1)
    pytester.makepyfile(
        test_logs="""
        import logging

        def test_app_logs(db_session, caplog):
            logging.getLogger("shop.orders").warning("still logging")
            assert [r.getMessage() for r in caplog.records] == ["still logging"]
        """
    )
    pytester.makeconftest("import logging\nlogging.getLogger('shop.orders')\n")  # exists before the build
    result = pytester.runpytest_subprocess()
    clean_output(result)
    result.assert_outcomes(passed=2)
