"""The pytest plugin every generated benchmark suite loads (``-p benchmarks.suite_plugin``).

It reads the suite's configuration from the JSON file named by ``$TXSCOPE_BENCH_CONFIG`` (written by the
harness), gives the tests the fixtures of each strategy, the work every test does (`work_raw`, `work_tx`,
`work_app`, `work_orm`, `work_sa_app`), and records when each test starts and ends. The harness derives the
in-process time per test from those timestamps, leaving out the first test (whose setup opens the session's
connections) and the last one (whose teardown closes them), so that interpreter and plugin start-up do not
count.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import schema
from pytest_txscope import DatabaseURL, Engine

CONFIG: dict[str, Any] = json.loads(Path(os.environ["TXSCOPE_BENCH_CONFIG"]).read_text())
FAMILY: str = CONFIG["family"]
URL = DatabaseURL.parse(CONFIG["url"])
TABLES: int = CONFIG["tables"]
ROWS: int = CONFIG["rows"]
MEMORY = URL.backend == "sqlite" and URL.database == ":memory:"

# ------------------------------------------------------------------------------------------ the work
_COLUMNS = "(id, parent_id, name, score)"
PORTABLE = {
    t: f"INSERT INTO {t} {_COLUMNS} VALUES (:id, :parent_id, :name, :score)" for t in schema.tables(3)
}
JOIN = (
    "SELECT a.name, b.name, c.name FROM t0 a JOIN t1 b ON b.parent_id = a.id "
    "JOIN t2 c ON c.parent_id = b.id WHERE a.id = :id"
)
if FAMILY == "sqlite":  # sqlite3 takes :name itself
    RAW, RAW_JOIN = PORTABLE, JOIN
else:  # psycopg and PyMySQL take %(name)s
    RAW = {
        t: f"INSERT INTO {t} {_COLUMNS} VALUES (%(id)s, %(parent_id)s, %(name)s, %(score)s)"
        for t in schema.tables(3)
    }
    RAW_JOIN = JOIN.replace(":id", "%(id)s")


@functools.cache
def rows_for(i: int) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The 10 rows test ``i`` writes: a parent, 3 children and 6 grandchildren (computed before timing)."""
    base = schema.BASE_ID + 16 * i
    out: list[tuple[str, dict[str, Any]]] = [
        ("t0", {"id": base, "parent_id": None, "name": f"a{i}", "score": i})
    ]
    out += [("t1", {"id": base + j, "parent_id": base, "name": f"b{i}.{j}", "score": j}) for j in range(1, 4)]
    out += [
        ("t2", {"id": base + 3 + j, "parent_id": base + 1 + (j - 1) // 2, "name": f"c{i}.{j}", "score": j})
        for j in range(1, 7)
    ]
    return tuple(out)


def work_raw(conn: Any, i: int) -> None:
    """Write the rows with the raw driver, read them back with a join, and commit."""
    cursor = conn.cursor()
    for table, params in rows_for(i):
        cursor.execute(RAW[table], params)
    cursor.execute(RAW_JOIN, {"id": schema.BASE_ID + 16 * i})
    found = cursor.fetchall()
    cursor.close()
    conn.commit()
    assert len(found) == 6


def work_tx(session: Any, i: int) -> None:
    """Write the rows through a pytest-txscope session (``db_session``) and read them back."""
    for table, params in rows_for(i):
        session.execute(PORTABLE[table], params)
    assert len(session.fetchall(JOIN, {"id": schema.BASE_ID + 16 * i})) == 6


def work_app(session: Any, i: int) -> None:
    """The application writes the rows in two transactions of its own (two commits); the test reads them."""
    engine = APP.engine
    rows = rows_for(i)
    with engine as tx:
        for table, params in rows[:4]:
            tx.execute(PORTABLE[table], params)
    with engine as tx:
        for table, params in rows[4:]:
            tx.execute(PORTABLE[table], params)
    assert len(session.fetchall(JOIN, {"id": schema.BASE_ID + 16 * i})) == 6


def work_orm(session: Any, i: int) -> None:
    """Add the rows as ORM objects, commit, and read them back with an ORM join."""
    from benchmarks import suite_models as m

    session.add_all([m.MODELS[table](**params) for table, params in rows_for(i)])
    session.commit()
    assert len(session.execute(m.JOIN, {"id": schema.BASE_ID + 16 * i}).all()) == 6


def work_sa_app(i: int) -> None:
    """The application's own ORM session (on its engine from ``txscope_engines``) does `work_orm`."""
    with APP.session_factory() as session:
        work_orm(session, i)


# --------------------------------------------------------------------------------- the application
class _App:
    """The application's engines, made on first use (``txscope_engines = benchmarks.suite_plugin:APP.engine``)."""

    @functools.cached_property
    def engine(self) -> Engine:
        return Engine.from_url(URL)

    @functools.cached_property
    def sa_engine(self) -> Any:
        return _sa_engine()

    @functools.cached_property
    def session_factory(self) -> Any:
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(bind=self.sa_engine)


APP = _App()


def build_schema(engine: Engine) -> None:
    """``txscope_schema`` entry: the tables and their seed rows (in-memory SQLite, and per xdist worker)."""
    statements = schema.create_statements(FAMILY, TABLES) + schema.seed_statements(FAMILY, TABLES, ROWS)
    engine.executescript(";\n".join(statements))


def _sa_engine(*, savepoint_fix: bool = False) -> Any:
    from sqlalchemy import create_engine, event

    from pytest_txscope.sqlalchemy import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(URL))
    if FAMILY == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            if savepoint_fix:  # SQLAlchemy's documented pysqlite fix: no implicit transactions...
                dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys = ON")

        if savepoint_fix:

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:  # ...and SQLAlchemy sends BEGIN itself
                conn.exec_driver_sql("BEGIN")

    return engine


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def raw_conn() -> Iterator[Any]:
    """One raw driver connection for the whole run (in-memory SQLite: the schema is built on it)."""
    conn = schema.connect(URL)
    if MEMORY:
        schema.run_statements(
            conn, schema.create_statements(FAMILY, TABLES) + schema.seed_statements(FAMILY, TABLES, ROWS)
        )
    yield conn
    conn.close()


def _clean(conn: Any, statements: list[str], *, begin: bool = False) -> None:
    cursor = conn.cursor()
    if begin and FAMILY == "sqlite":  # sqlite3 opens no transaction before DDL: one for the whole step
        cursor.execute("BEGIN")
    for statement in statements:
        cursor.execute(statement)
    cursor.close()
    conn.commit()


_ALL = schema.tables(TABLES)
_SEED = schema.seed_statements(FAMILY, TABLES, ROWS)
_DELETE = [f"DELETE FROM {t}" for t in reversed(_ALL)]
if FAMILY == "postgresql":
    _TRUNCATE = [f"TRUNCATE {', '.join(_ALL)} RESTART IDENTITY CASCADE"]
else:
    _TRUNCATE = [
        "SET FOREIGN_KEY_CHECKS = 0",
        *(f"TRUNCATE TABLE {t}" for t in _ALL),
        "SET FOREIGN_KEY_CHECKS = 1",
    ]
_RECREATE = schema.drop_statements(FAMILY, TABLES) + schema.create_statements(FAMILY, TABLES)


@pytest.fixture
def raw_fixture(raw_conn: Any) -> Iterator[Any]:
    """The run's raw connection through a function-scoped fixture that does nothing else: what pytest itself
    charges per test for one such fixture (set-up, finalizer, teardown), the floor under any per-test fixture."""
    yield raw_conn  # noqa: PT022 - a yield fixture on purpose: db_session is one, and pytest charges its finalizer


@pytest.fixture
def raw_delete(raw_conn: Any) -> Iterator[Any]:
    """After the test: DELETE FROM every table (children first), then the seed rows again."""
    yield raw_conn
    _clean(raw_conn, _DELETE + _SEED)


@pytest.fixture
def raw_truncate(raw_conn: Any) -> Iterator[Any]:
    """After the test: TRUNCATE every table (PostgreSQL: one statement), then the seed rows again."""
    yield raw_conn
    _clean(raw_conn, _TRUNCATE + _SEED)


@pytest.fixture
def raw_dropcreate(raw_conn: Any) -> Iterator[Any]:
    """After the test: drop every table and create it again, then the seed rows again."""
    yield raw_conn
    _clean(raw_conn, _RECREATE + _SEED, begin=True)


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[Any]:
    conn = schema.connect(URL.with_database("postgres"), autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def raw_template(_pg_admin: Any) -> Iterator[Any]:
    """A database cloned from the benchmark database for this test only (PostgreSQL), dropped after it."""
    clone = f"{URL.database}_clone"
    _pg_admin.execute(f'CREATE DATABASE "{clone}" TEMPLATE "{URL.database}"')
    conn = schema.connect(URL.with_database(clone))
    yield conn
    conn.close()
    _pg_admin.execute(f'DROP DATABASE "{clone}"')


@pytest.fixture(scope="session")
def _pg_template(_pg_admin: Any) -> Iterator[str]:
    """pytest-postgresql's template database (loaded once per run): a copy of the benchmark database."""
    template = f"{URL.database}_tmpl"
    _pg_admin.execute(f'CREATE DATABASE "{template}" TEMPLATE "{URL.database}" IS_TEMPLATE = true')
    yield template
    with _janitor() as cursor:
        _janitor_drop(cursor, template, 'ALTER DATABASE "{}" WITH is_template false')


@contextlib.contextmanager
def _janitor() -> Iterator[Any]:
    """A cursor as pytest-postgresql's ``DatabaseJanitor.cursor()`` gives: a new autocommit connection each time."""
    conn = schema.connect(URL.with_database("postgres"), autocommit=True)
    cursor = conn.cursor()
    try:
        yield cursor
    finally:
        cursor.close()
        conn.close()


def _janitor_drop(cursor: Any, database: str, *also: str) -> None:
    """``DatabaseJanitor.drop()``: no new connections, end the open ones, then drop."""
    cursor.execute(f'ALTER DATABASE "{database}" WITH allow_connections false')
    cursor.execute(_TERMINATE, (database,))
    for statement in also:
        cursor.execute(statement.format(database))
    cursor.execute(f'DROP DATABASE IF EXISTS "{database}"')


_TERMINATE = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"


@pytest.fixture
def pg_database(_pg_template: str) -> Iterator[Any]:
    """pytest-postgresql's ``postgresql`` fixture: a database created from the template for this test only,
    connected to, and dropped after it (``DatabaseJanitor.init()`` and ``drop()``, each on a new connection)."""
    database = f"{URL.database}_pgdb"
    with _janitor() as cursor:
        cursor.execute(_TERMINATE, (_pg_template,))  # the template must have no sessions to be copied
        cursor.execute(f'CREATE DATABASE "{database}" TEMPLATE "{_pg_template}"')
    conn = schema.connect(URL.with_database(database))
    yield conn
    conn.close()
    with _janitor() as cursor:
        _janitor_drop(cursor, database)


@pytest.fixture(scope="session")
def _orm_engine() -> Iterator[Any]:
    engine = _sa_engine(savepoint_fix=CONFIG.get("savepoint_fix", False))
    if MEMORY:
        with engine.begin() as conn:
            for statement in schema.create_statements(FAMILY, TABLES) + _SEED:
                conn.exec_driver_sql(statement)
    yield engine
    engine.dispose()


@pytest.fixture
def orm_session(_orm_engine: Any) -> Iterator[Any]:
    """A plain ORM session on the database: its commits are real, nothing is cleaned (the ORM baseline)."""
    from sqlalchemy.orm import Session

    with Session(_orm_engine) as session:
        yield session


@pytest.fixture
def recipe_session(_orm_engine: Any) -> Iterator[Any]:
    """SQLAlchemy's documented recipe: a session joined to an external transaction that is rolled back."""
    from sqlalchemy.orm import Session

    connection = _orm_engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    transaction.rollback()
    connection.close()


# ------------------------------------------------------------------------------------------- timing
_starts: list[float] = []
_ends: list[float] = []
_outcomes = {"passed": 0, "failed": 0}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _starts.append(time.perf_counter())
    try:
        return (yield)
    finally:
        _ends.append(time.perf_counter())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _outcomes["failed"] += 1
    elif report.passed and report.when == "call":
        _outcomes["passed"] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    out = Path(CONFIG["timing_dir"]) / f"timing-{worker}.json"
    out.write_text(json.dumps({"starts": _starts, "ends": _ends, **_outcomes}))
