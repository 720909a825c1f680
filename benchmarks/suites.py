"""Strategies, the generated pytest suites, the benchmark databases, and one timed pytest run.

Each strategy is a way to isolate tests (or not). For a strategy, a backend, a schema configuration and a
number of tests N, `generate` writes a pytest project into a directory of its own: N test functions (100 per
file) that each call one of the `benchmarks.suite_plugin` work functions through the strategy's fixture (the
async strategies: ``async def`` tests awaiting `benchmarks.suite_aio.work_aio`), a ``pytest.ini`` with the
plugin's settings, and the JSON configuration the suite plugin reads. `run_suite` runs
it as a whole ``python -m pytest`` process and returns its wall time and its in-process time per test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import schema
from pytest_txscope import DatabaseURL

REPO = Path(__file__).resolve().parent.parent
TESTS_PER_FILE = 100
SERVERS = ("postgresql", "mysql")


@dataclass(frozen=True)
class Strategy:
    """One way to run the suite: the fixture the tests take, the work they do, and the plugin settings."""

    key: str
    label: str
    fixture: str
    work: str
    baseline: str | None = "none"
    """The strategy its overhead is measured against (None: it is a baseline)."""
    txscope: bool = False
    ini: dict[str, str] = field(default_factory=dict)
    families: tuple[str, ...] = ("sqlite", "postgresql", "mysql")
    backends: tuple[str, ...] = ()
    """Restricts to these backends when not empty."""
    xdist: int = 0
    provision: bool = False
    """The plugin builds the database itself (``txscope_schema``): a database per xdist worker."""
    config: dict[str, Any] = field(default_factory=dict)
    aio: bool = False
    """``async def`` tests (pytest-asyncio, `benchmarks.suite_aio`): the fixture hands them an AsyncSession."""
    module: str = "benchmarks.suite_plugin"
    """The module of the work function and the fixtures: a pytest plugin the suite loads (``-p``), besides
    `benchmarks.suite_plugin` (which records the timings)."""


_APP = "benchmarks.suite_plugin:APP"
_DJANGO = "benchmarks.suite_django"
_SCHEMA = "benchmarks.suite_plugin:build_schema"
STRATEGIES: dict[str, Strategy] = {
    s.key: s
    for s in (
        Strategy("none", "no isolation (raw driver, commit)", "raw_conn", "work_raw", baseline=None),
        Strategy("none-fixture", "no isolation, one function-scoped fixture", "raw_fixture", "work_raw"),
        Strategy("txscope", "txscope db_session", "db_session", "work_tx", txscope=True),
        Strategy(
            "txscope-nosp",
            "txscope db_session, statement savepoints off",
            "db_session",
            "work_tx",
            txscope=True,
            ini={"txscope_statement_savepoints": "off"},
            backends=("postgresql",),
        ),
        Strategy(
            "txscope-app2",
            "txscope, app engine commits twice",
            "db_session",
            "work_app",
            txscope=True,
            ini={"txscope_engines": f"{_APP}.engine"},
        ),
        Strategy("orm-none", "ORM, no isolation (commit)", "orm_session", "work_orm", baseline=None),
        Strategy(
            "txscope-orm", "txscope sa_session", "sa_session", "work_orm", baseline="orm-none", txscope=True
        ),
        Strategy(
            "txscope-sa-app",
            "txscope, app's SQLAlchemy engine",
            "db_sandbox",
            "work_sa_app",
            baseline="orm-none",
            txscope=True,
            ini={"txscope_engines": f"{_APP}.sa_engine"},
        ),
        Strategy(
            "sa-recipe",
            "SQLAlchemy recipe (create_savepoint)",
            "recipe_session",
            "work_orm",
            baseline="orm-none",
            config={"savepoint_fix": True},
        ),
        Strategy(
            "django-none",
            "Django ORM, no isolation (commit)",
            "django_plain",
            "work_django",
            baseline=None,
            module=_DJANGO,
        ),
        Strategy(
            "django",
            "pytest-django's db (emulated)",
            "db",
            "work_django",
            baseline="django-none",
            module=_DJANGO,
        ),
        Strategy("delete", "DELETE FROM every table", "raw_delete", "work_raw"),
        Strategy("truncate", "TRUNCATE every table", "raw_truncate", "work_raw", families=SERVERS),
        Strategy("dropcreate", "drop and create the schema", "raw_dropcreate", "work_raw"),
        Strategy(
            "template",
            "database cloned from a template",
            "raw_template",
            "work_raw",
            backends=("postgresql",),
        ),
        Strategy(
            "pgdatabase",
            "pytest-postgresql's database per test (emulated)",
            "pg_database",
            "work_raw",
            backends=("postgresql",),
        ),
        Strategy(
            "xdist-serial",
            "txscope db_session, serial",
            "db_session",
            "work_tx",
            baseline=None,
            txscope=True,
            provision=True,
        ),
        Strategy(
            "xdist-n2",
            "txscope db_session, -n 2",
            "db_session",
            "work_tx",
            baseline="xdist-serial",
            txscope=True,
            provision=True,
            xdist=2,
        ),
        # The async strategies (issue 14): `benchmarks.suite_aio`, the ORM work through an AsyncSession.
        Strategy(
            "aio-none", "async ORM, no isolation (commit)", "aio_session", "work_aio", baseline=None, aio=True
        ),
        Strategy(
            "txscope-aio",
            "txscope, app's AsyncEngine",
            "aio_app_session",
            "work_aio",
            baseline="aio-none",
            txscope=True,
            ini={"txscope_engines": "benchmarks.suite_aio:engine"},
            aio=True,
        ),
        Strategy(
            "aio-recipe",
            "async SQLAlchemy recipe (create_savepoint)",
            "aio_recipe_session",
            "work_aio",
            baseline="aio-none",
            config={"savepoint_fix": True},
            aio=True,
        ),
    )
}
AIO = ["aio-none", "txscope-aio", "aio-recipe"]
"""The async strategies, compared with one another in the main experiment (``--strategies`` picks them)."""
MAIN = [
    "none",
    "none-fixture",
    "txscope",
    "txscope-nosp",
    "txscope-app2",
    "orm-none",
    "txscope-orm",
    "txscope-sa-app",
    "sa-recipe",
    "django-none",
    "django",
    "delete",
    "truncate",
    "dropcreate",
    *AIO,
]
AIO_DRIVER_CHOICES = {"asyncpg": ("postgresql", "postgresql+asyncpg")}
"""``--aio-driver`` values: the backend whose asyncio driver they replace, and the SQLAlchemy dialect."""
_AIO_INI = {  # pytest-asyncio runs every async test and fixture on an event loop of the test's own
    "asyncio_mode": "auto",
    "asyncio_default_fixture_loop_scope": "function",
    "asyncio_default_test_loop_scope": "function",
}
SCALING = ["none", "txscope", "delete", "truncate", "dropcreate"]


def applies(strategy: Strategy, backend: str) -> bool:
    """Whether ``strategy`` runs on ``backend`` (``sqlite-file``, ``sqlite-memory``, ``postgresql``, ``mysql``)."""
    if strategy.backends:
        return backend in strategy.backends
    return family_of(backend) in strategy.families


def family_of(backend: str) -> str:
    """The SQL family of a backend name."""
    return "sqlite" if backend.startswith("sqlite") else backend


@dataclass(frozen=True)
class Config:
    """A schema configuration: how many tables, and how many seed rows in each."""

    tables: int = 3
    rows: int = 0

    @property
    def key(self) -> str:
        """A short name: ``t3``, ``t100``, ``t3-r10000``."""
        return f"t{self.tables}" + (f"-r{self.rows}" if self.rows else "")


# --------------------------------------------------------------------------------------- databases
class Databases:
    """Creates, resets, checks and drops the benchmark databases (all named ``<prefix>_<config>``)."""

    def __init__(self, servers: dict[str, DatabaseURL], prefix: str, workdir: Path) -> None:
        self.servers = servers
        self.prefix = prefix
        self.workdir = workdir
        self.built: dict[tuple[str, str], DatabaseURL] = {}

    def url(self, backend: str, name: str) -> DatabaseURL:
        """The URL of database ``<prefix>_<name>`` on ``backend``."""
        database = f"{self.prefix}_{name}".replace("-", "_")
        if backend == "sqlite-memory":
            return DatabaseURL.parse("sqlite:///:memory:")
        if backend == "sqlite-file":
            return DatabaseURL.parse(f"sqlite:///{self.workdir / database}.db")
        return self.servers[backend].with_database(database)

    def admin(self, backend: str) -> Any:
        """An autocommit connection to the server, outside the benchmark databases."""
        server = self.servers[backend]
        return schema.connect(
            server.with_database("postgres" if backend == "postgresql" else ""), autocommit=True
        )

    def create(self, backend: str, name: str) -> DatabaseURL:
        """(Re)create an empty database ``<prefix>_<name>`` and return its URL."""
        url = self.url(backend, name)
        if backend == "sqlite-file":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(url.database + suffix).unlink(missing_ok=True)
            conn = schema.connect(url, autocommit=True)
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: every connection to the file uses it
            conn.close()
        elif backend in SERVERS:
            conn = self.admin(backend)
            quote = '"' if backend == "postgresql" else "`"
            cursor = conn.cursor()
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            cursor.execute(f"DROP DATABASE IF EXISTS {quote}{url.database}{quote}{force}")
            cursor.execute(f"CREATE DATABASE {quote}{url.database}{quote}")
            conn.close()
        return url

    def build(self, backend: str, config: Config) -> DatabaseURL:
        """The database of ``config`` with its tables and seed rows, built on first use (outside timing)."""
        key = (backend, config.key)
        if key in self.built:
            return self.built[key]
        url = self.create(backend, config.key)
        if backend != "sqlite-memory":
            family = family_of(backend)
            conn = schema.connect(url)
            schema.run_statements(
                conn,
                schema.create_statements(family, config.tables)
                + schema.seed_statements(family, config.tables, config.rows),
            )
            analyze = {"postgresql": "VACUUM ANALYZE", "sqlite": "ANALYZE"}.get(family)
            if family == "mysql":
                analyze = "ANALYZE TABLE " + ", ".join(schema.tables(config.tables))
            if analyze and config.rows:
                conn.close()
                conn = schema.connect(url, autocommit=True)
                cursor = conn.cursor()
                cursor.execute(analyze)
                if family == "mysql":
                    cursor.fetchall()
            conn.close()
        self.built[key] = url
        return url

    def reset(self, backend: str, config: Config) -> None:
        """Remove what earlier runs wrote (and any clone left behind), keeping the seed; rebuild if broken."""
        if backend == "sqlite-memory":
            return
        url = self.build(backend, config)
        if backend == "postgresql":
            conn = self.admin(backend)
            drop_clones(conn, url.database)
            conn.close()
        conn = schema.connect(url)
        try:
            schema.run_statements(conn, schema.reset_statements(config.tables))
        except Exception:  # an interrupted drop/create run left no tables: build them again
            conn.close()
            del self.built[(backend, config.key)]
            self.build(backend, config)
        else:
            conn.close()

    def written_rows(self, backend: str, config: Config) -> int | None:
        """How many rows tests wrote are still in the database (None where it cannot be seen)."""
        if backend == "sqlite-memory":
            return None
        conn = schema.connect(self.built[(backend, config.key)])
        cursor = conn.cursor()
        cursor.execute(schema.written_rows_query(config.tables))
        count = int(cursor.fetchone()[0])
        cursor.close()
        conn.close()
        return count

    def drop_all(self) -> None:
        """Drop every database this harness created (server databases; files go with the work directory)."""
        for backend, url in self.built.items():
            if backend[0] in SERVERS:
                with contextlib.suppress(Exception):
                    conn = self.admin(backend[0])
                    force = " WITH (FORCE)" if backend[0] == "postgresql" else ""
                    quote = '"' if backend[0] == "postgresql" else "`"
                    if backend[0] == "postgresql":  # a crashed run's
                        drop_clones(conn, url.database)
                    conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote}{url.database}{quote}{force}")
                    conn.close()
        self.built.clear()


def drop_clones(admin: Any, database: str) -> None:
    """Drop what the PostgreSQL per-test strategies derive from ``database`` and a crashed run left behind."""
    for suffix in ("clone", "tmpl", "pgdb"):
        name = f"{database}_{suffix}"
        if suffix == "tmpl":  # pytest-postgresql's template is marked as one: a template cannot be dropped
            with contextlib.suppress(Exception):
                admin.execute(f'ALTER DATABASE "{name}" WITH is_template false')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------------------------------ suites
def generate(
    directory: Path, strategy: Strategy, url: DatabaseURL, config: Config, n: int, *, aio_driver: str = ""
) -> Path:
    """Write the suite of ``n`` tests for ``strategy`` into ``directory`` (emptied first); ``aio_driver`` (a
    key of `AIO_DRIVER_CHOICES`) replaces the asyncio driver of the async strategies on its backend."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    memory = url.backend == "sqlite" and url.database == ":memory:"
    settings: dict[str, Any] = {}
    sandbox_url = url
    if strategy.aio and aio_driver and AIO_DRIVER_CHOICES[aio_driver][0] == url.backend:
        settings["aio_driver"] = AIO_DRIVER_CHOICES[aio_driver][1]
        # The sandbox on the app's own driver: the test database's URL names it.
        sandbox_url = dataclasses.replace(url, scheme=f"{url.backend}+{aio_driver}", driver=aio_driver)
    ini = {"txscope_url": url_text(sandbox_url)} if strategy.txscope else {}
    if strategy.txscope and (memory or strategy.provision):
        ini["txscope_schema"] = _SCHEMA
    if strategy.aio:
        ini.update(_AIO_INI)
    ini.update(strategy.ini)
    lines = ["[pytest]", *(f"{k} = {v}" for k, v in ini.items())]
    (directory / "pytest.ini").write_text("\n".join(lines) + "\n")
    (directory / "timing").mkdir()
    settings.update(
        family=url.backend,
        url=url_text(url),
        tables=config.tables,
        rows=config.rows,
        timing_dir=str(directory / "timing"),
        txscope=strategy.txscope,
        **strategy.config,
    )
    (directory / "bench.json").write_text(json.dumps(settings))
    module = "benchmarks.suite_aio" if strategy.aio else strategy.module
    for first in range(0, n, TESTS_PER_FILE):
        body = [f"from {module} import {strategy.work}", ""]
        for i in range(first, min(n, first + TESTS_PER_FILE)):
            body += ["", *_test_lines(strategy, i), ""]
        (directory / f"test_bench_{first // TESTS_PER_FILE:03d}.py").write_text("\n".join(body))
    return directory


def _test_lines(strategy: Strategy, i: int) -> list[str]:
    if strategy.aio:
        return [
            f"async def test_{i}({strategy.fixture}):",
            f"    await {strategy.work}({strategy.fixture}, {i})",
        ]
    # work_sa_app uses the application's own session: the test only asks for the sandbox.
    call = (
        f"{strategy.work}({i})"
        if strategy.work == "work_sa_app"
        else f"{strategy.work}({strategy.fixture}, {i})"
    )
    return [f"def test_{i}({strategy.fixture}):", f"    {call}"]


def url_text(url: DatabaseURL) -> str:
    """The URL as text with its password (for the generated suite's own files only; never printed)."""
    if url.password is None:
        return url.render()
    return url.render().replace(":***@", f":{url.password}@", 1)


@dataclass
class Sample:
    """One timed pytest run."""

    wall: float
    per_test: float | None
    passed: int
    failed: int
    returncode: int
    output: str = ""


def run_suite(directory: Path, strategy: Strategy, *, timeout: float = 3600) -> Sample:
    """Run the generated suite in ``directory`` once, as a whole pytest process."""
    for old in (directory / "timing").glob("*.json"):
        old.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TXSCOPE_", "PYTEST_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        TXSCOPE_BENCH_CONFIG=str(directory / "bench.json"),
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",  # only the plugins each strategy asks for
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    if strategy.txscope:
        command += ["-p", "txscope"]
    if strategy.xdist:
        command += ["-p", "xdist", "-n", str(strategy.xdist)]
    command += ["-p", "benchmarks.suite_plugin"]
    if strategy.aio:
        command += ["-p", "pytest_asyncio.plugin", "-p", "benchmarks.suite_aio"]
    elif strategy.module != "benchmarks.suite_plugin":
        command += ["-p", strategy.module]
    start = time.perf_counter()
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
            command, cwd=directory, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return Sample(timeout, None, 0, 0, -1, f"pytest did not finish within {timeout:.0f} s")
    wall = time.perf_counter() - start
    # The main process sees every test's report (xdist forwards the workers'), and times the tests it runs.
    main = directory / "timing" / "timing-main.json"
    empty: dict[str, Any] = {"starts": [], "ends": [], "passed": 0, "failed": 0}
    data: dict[str, Any] = json.loads(main.read_text()) if main.exists() else empty
    per_test = None  # under xdist the workers overlap: only the wall time means something
    if not strategy.xdist and len(data["starts"]) >= 4:
        per_test = (data["ends"][-2] - data["starts"][1]) / (len(data["starts"]) - 2)
    passed, failed = data["passed"], data["failed"]
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
    return Sample(wall, per_test, passed, failed, done.returncode, tail if done.returncode else "")
