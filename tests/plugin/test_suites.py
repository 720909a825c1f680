"""The plugin on a whole generated suite: random orders, pytest-xdist workers, and reused databases.

Every generated test writes rows with the same fixed primary keys and unique values, so a row that survived
an earlier test (in any order, on any worker) makes the next one fail with a duplicate key, and its counts
would be off. Each project runs in a subprocess, as users run it (pytest-xdist and pytest-randomly do not mix
well with in-process runs, and reuse is about separate runs). The databases get names of their own
(``<base>_suites_<random>``), so that concurrent runs of the test suite never meet.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_txscope import DatabaseURL
from pytest_txscope.provision import drop, drop_templates, template_prefix, worker_url

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

SEED_AUTHORS = 2
SEED_BOOKS = 3
SUITE_SIZE = 30

# The schema's DDL, in the schema module itself or (ddl_module=True) in a module it imports.
SCHEMA_DDL = '''DDL = """
CREATE TABLE authors (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);
CREATE TABLE books (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL,
    isbn VARCHAR(20) NOT NULL UNIQUE,{extra_column}
    FOREIGN KEY (author_id) REFERENCES authors (id)
);
INSERT INTO authors (id, name) VALUES (1, 'seed-a'), (2, 'seed-b');
INSERT INTO books (id, author_id, isbn) VALUES (1, 1, 'seed-1'), (2, 1, 'seed-2'), (3, 2, 'seed-3');
"""
'''

SCHEMA_MOD = '''
"""The schema: built by a function, which records each build in builds.log next to this file."""
import os
from pathlib import Path

{ddl}

def build(engine):
    with open(Path(__file__).with_name("builds.log"), "a") as log:
        log.write(f"{{os.environ.get('PYTEST_XDIST_WORKER', '-')}} {{engine.url.database}}\\n")
    engine.executescript(DDL)
'''

NOTE_COLUMN = "\n    note VARCHAR(20) DEFAULT 'none',"

APP = '''
"""The application under test: its own engine, its own commits."""
from pytest_txscope import Engine

engine = None  # set by conftest.py to the run's (the worker's) database, as the docs recommend


def add_author(author_id, name, isbns, fail=False):
    with engine as tx:
        tx.execute("INSERT INTO authors (id, name) VALUES (:id, :name)", {"id": author_id, "name": name})
        for n, isbn in enumerate(isbns):
            tx.execute(
                "INSERT INTO books (id, author_id, isbn) VALUES (:id, :author, :isbn)",
                {"id": author_id + n, "author": author_id, "isbn": isbn},
            )
        if fail:
            raise RuntimeError("app failed")


def add_orphan_book(book_id):
    with engine as tx:
        tx.execute("INSERT INTO books (id, author_id, isbn) VALUES (:id, 999, 'orphan')", {"id": book_id})


def remove_author(author_id):
    with engine as tx:
        tx.execute("DELETE FROM books WHERE author_id = :id", {"id": author_id})
        tx.execute("DELETE FROM authors WHERE id = :id", {"id": author_id})


def counts():
    with engine.session() as s:
        return (s.fetchscalar("SELECT count(*) FROM authors"), s.fetchscalar("SELECT count(*) FROM books"))
'''

CONFTEST = """
import os
import pytest
from pytest_txscope import Engine


@pytest.fixture(scope="session", autouse=True)
def _app_uses_the_test_database(db_engine, pytestconfig):
    import app
    app.engine = Engine.from_url(db_engine.url)
    with open(pytestconfig.rootpath / "databases.log", "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {db_engine.url.database}\\n")


@pytest.fixture(scope="session")
def outside(db_engine):
    # An engine the plugin does not pin: it sees only what is really committed.
    engine = Engine.from_url(db_engine.url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _record(request):
    with open(request.config.rootpath / "runs.log", "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {request.node.name}\\n")
"""

TEST_HEAD = f"""
import pytest
import app

SEED = ({SEED_AUTHORS}, {SEED_BOOKS})
NEW_BOOK = "INSERT INTO books (id, author_id, isbn) VALUES (:id, 100, :isbn)"


def committed(outside):
    with outside.session() as s:
        return (s.fetchscalar("SELECT count(*) FROM authors"), s.fetchscalar("SELECT count(*) FROM books"))


def in_sandbox(db_session):
    return (
        db_session.fetchscalar("SELECT count(*) FROM authors"),
        db_session.fetchscalar("SELECT count(*) FROM books"),
    )
"""

# The bodies of the generated tests, by kind; {k} is the number of books the test adds. They all write author
# 100 'new-author' and books 100.. 'new-isbn-N': the same keys in every test.
KINDS = {
    "app_commits": """
    app.add_author(100, "new-author", [f"new-isbn-{{n}}" for n in range({k})])
    expected = (SEED[0] + 1, SEED[1] + {k})
""",
    "session_writes": """
    db_session.execute("INSERT INTO authors (id, name) VALUES (100, 'new-author')")
    for n in range({k}):
        db_session.execute(NEW_BOOK, {{"id": 100 + n, "isbn": f"new-isbn-{{n}}"}})
    expected = (SEED[0] + 1, SEED[1] + {k})
""",
    "session_block": """
    with db_session as tx:
        tx.execute("INSERT INTO authors (id, name) VALUES (100, 'new-author')")
        for n in range({k}):
            tx.execute(NEW_BOOK, {{"id": 100 + n, "isbn": f"new-isbn-{{n}}"}})
    expected = (SEED[0] + 1, SEED[1] + {k})
""",
    "app_fails_after_commit": """
    app.add_author(100, "new-author", [f"new-isbn-{{n}}" for n in range({k})])
    with pytest.raises(RuntimeError):
        app.add_author(200, "undone", ["undone-isbn"], fail=True)
    expected = (SEED[0] + 1, SEED[1] + {k})
""",
    "app_deletes_seed": """
    app.remove_author(2)
    app.add_author(100, "new-author", [f"new-isbn-{{n}}" for n in range({k})])
    expected = (SEED[0], SEED[1] - 1 + {k})
""",
    "foreign_key_refused": """
    app.add_author(100, "new-author", [f"new-isbn-{{n}}" for n in range({k})])
    with pytest.raises(Exception) as refused:
        app.add_orphan_book(300)
    assert "IntegrityError" in [c.__name__ for c in type(refused.value).__mro__], refused.value
    expected = (SEED[0] + 1, SEED[1] + {k})
""",
}

TEST_TEMPLATE = """

def test_{i:02d}_{kind}(db_session, outside):
    assert committed(outside) == SEED  # nothing an earlier test wrote was really committed
    assert in_sandbox(db_session) == SEED
{body}
    assert in_sandbox(db_session) == expected
    assert app.counts() == expected
    assert db_session.fetchall("SELECT isbn FROM books WHERE id >= 100 ORDER BY id") == [
        (f"new-isbn-{{n}}",) for n in range({k})
    ]
    assert committed(outside) == SEED  # still only in the test's transaction
"""


def generated_suite(size: int = SUITE_SIZE) -> str:
    kinds = list(KINDS)
    parts = [TEST_HEAD]
    for i in range(size):
        kind = kinds[i % len(kinds)]
        k = i % 3 + 1
        parts.append(TEST_TEMPLATE.format(i=i, kind=kind, k=k, body=KINDS[kind].format(k=k).rstrip("\n")))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- helpers
def database_name(backend: Backend, stem: str) -> str:
    """A database name of this test's own: runs of this module elsewhere (or concurrently) never meet it."""
    stem = f"{stem}_{uuid.uuid4().hex[:8]}"
    if backend.family == "sqlite":
        return f"test_{stem}"
    return sibling_url(backend, stem).partition("?")[0].rsplit("/", 1)[1]


def suites_url(backend: Backend, name: str, sqlite_dir: Path | None = None) -> str | None:
    """The generated project's database: ``name`` on the backend's server; for SQLite the embedded default,
    or a file ``<name>.db`` in ``sqlite_dir`` when one is given (so that it survives between runs)."""
    if backend.family == "sqlite":
        return f"sqlite:///{sqlite_dir / (name + '.db')}" if sqlite_dir is not None else None
    base, _, query = backend.url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


def server_databases(backend: Backend, name: str) -> list[str]:
    """The databases on the backend's server that belong to base name ``name`` (itself, workers', templates)."""
    peer = backend.peer()
    try:
        if backend.family == "postgresql":
            rows = peer.fetchall("SELECT datname FROM pg_database")
        else:
            rows = peer.fetchall("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    finally:
        peer.close()
    mine = re.compile(rf"{re.escape(name)}(_gw\d+)?")
    return sorted(
        str(r[0]) for r in rows if mine.fullmatch(str(r[0])) or str(r[0]).startswith(template_prefix(name))
    )


def sqlite_files(database: str) -> list[str]:
    """The files of the SQLite database ``database`` (a path): itself and its journals and key file."""
    return sorted(p.name for p in Path(database).parent.glob(Path(database).name + "*"))


def used_databases(pytester: pytest.Pytester) -> dict[str, str]:
    """The database each process of the last run used, by xdist worker ("-" without xdist); the log is reset."""
    lines = take_log(pytester, "databases.log")
    used = dict(line.split(" ", 1) for line in lines)
    assert len(used) == len(lines), lines
    return used


def kept_databases(backend: Backend, name: str, used: dict[str, str]) -> list[str]:
    """What is left of the databases named after ``name`` (SQLite: of the files of the ``used`` databases)."""
    if backend.family == "sqlite":
        return [f for database in sorted(used.values()) for f in sqlite_files(database)]
    return server_databases(backend, name)


def committed_counts(backend: Backend, url: str) -> tuple[int, ...]:
    """(authors, books) in ``url``'s database, read with the driver directly."""
    peer = Backend(backend.name, url).peer()
    try:
        return tuple(int(peer.fetchall(f"SELECT count(*) FROM {t}")[0][0]) for t in ("authors", "books"))
    finally:
        peer.close()


def remove_all(url: str, workers: int = 2) -> None:
    """Drop the database of ``url``, its workers' databases and its PostgreSQL templates."""
    parsed = DatabaseURL.parse(url)
    for worker in [None, *(f"gw{n}" for n in range(workers))]:
        drop(worker_url(parsed, worker), allow=())
    drop_templates(parsed, allow=())


def make_project(
    pytester: pytest.Pytester, url: str | None, *, extra_column: str = "", ddl_module: bool = False
) -> None:
    ddl = SCHEMA_DDL.format(extra_column=extra_column)
    if ddl_module:
        pytester.makepyfile(
            schema_parts=ddl, schema_mod=SCHEMA_MOD.format(ddl="from schema_parts import DDL")
        )
    else:
        pytester.makepyfile(schema_mod=SCHEMA_MOD.format(ddl=ddl))
    pytester.makepyfile(app=APP, conftest=CONFTEST)
    # Plugin autoloading is off (see _no_plugin_autoload): the project loads the plugin and pytest-xdist itself, and
    # the runs that want pytest-randomly say -p randomly. Nothing here disables pytest-randomly.
    ini = [
        "[pytest]",
        "txscope_schema = schema_mod:build",
        "txscope_engines = app:engine",
        "addopts = -p txscope -p xdist",
    ]
    if url:
        ini.append(f"txscope_url = {url}")
    pytester.makefile(".ini", pytest="\n".join(ini))


def log_lines(pytester: pytest.Pytester, name: str) -> list[str]:
    path = pytester.path / name
    return path.read_text().splitlines() if path.exists() else []


def take_log(pytester: pytest.Pytester, name: str) -> list[str]:
    lines = log_lines(pytester, name)
    (pytester.path / name).unlink(missing_ok=True)
    return lines


@pytest.fixture(autouse=True)
def _no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    # The generated projects load only the plugins they name: whatever else is installed (hypothesis, faker,
    # factory-boy plugins...) costs about a second to import in every process, xdist workers included.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def dropped_afterwards(backend: Backend) -> Iterator[list[str]]:
    """URLs appended to the list are removed at the end, with their workers' databases and templates."""
    urls: list[str] = []
    yield urls
    for url in urls:
        remove_all(url)


# ------------------------------------------------------------------------------------------------ tests
def test_generated_suite_passes_in_three_random_orders(
    pytester: pytest.Pytester, backend: Backend, dropped_afterwards: list[str]
) -> None:
    name = database_name(backend, "suites")
    url = suites_url(backend, name)
    if url:
        dropped_afterwards.append(url)
    make_project(pytester, url)
    pytester.makepyfile(test_suite=generated_suite())
    orders = []
    for seed in (1, 2, 3):
        result = pytester.runpytest_subprocess("-p", "randomly", f"--randomly-seed={seed}")
        result.assert_outcomes(passed=SUITE_SIZE)
        result.stdout.fnmatch_lines([f"Using --randomly-seed={seed}"])
        runs = take_log(pytester, "runs.log")
        assert len(runs) == SUITE_SIZE
        orders.append([line.split()[1] for line in runs])
        assert len(take_log(pytester, "builds.log")) == 1
        used = used_databases(pytester)
        assert list(used) == ["-"]
        if url:
            assert used["-"] == name
        assert kept_databases(backend, name, used) == [], "the run's database (or template) was not dropped"
    assert len({tuple(order) for order in orders}) == 3, "pytest-randomly did not shuffle the suite"
    assert orders[0] != sorted(orders[0])


def test_generated_suite_passes_under_xdist_and_drops_the_worker_databases(
    pytester: pytest.Pytester, backend: Backend, dropped_afterwards: list[str]
) -> None:
    name = database_name(backend, "suites")
    url = suites_url(backend, name)
    if url:
        dropped_afterwards.append(url)
    make_project(pytester, url)
    pytester.makepyfile(test_suite=generated_suite())
    result = pytester.runpytest_subprocess("-n", "2", "-v")
    result.assert_outcomes(passed=SUITE_SIZE)
    result.stdout.fnmatch_lines(["*[[]gw0[]]*PASSED*"])
    result.stdout.fnmatch_lines(["*[[]gw1[]]*PASSED*"])
    runs = log_lines(pytester, "runs.log")
    assert len(runs) == SUITE_SIZE
    assert {line.split()[0] for line in runs} == {"gw0", "gw1"}
    used = used_databases(pytester)
    if url:
        assert used == {"gw0": f"{name}_gw0", "gw1": f"{name}_gw1"}
    else:
        assert sorted(Path(used[w]).name for w in used) == ["txscope_test_gw0.db", "txscope_test_gw1.db"]
    builds = log_lines(pytester, "builds.log")
    if backend.family == "postgresql":  # one template for both workers
        assert len(builds) == 1
        assert re.fullmatch(rf"gw[01] {re.escape(name)}_tpl_[0-9a-f]{{12}}", builds[0])
    else:
        assert sorted(builds) == sorted(f"{w} {db}" for w, db in used.items())
    assert kept_databases(backend, name, used) == [], "worker databases or templates were left behind"


def test_reuse_db_keeps_the_worker_databases_and_the_next_run_reuses_them(
    pytester: pytest.Pytester, backend: Backend, dropped_afterwards: list[str]
) -> None:
    name = database_name(backend, "suites")
    # SQLite: a file of our own, since the embedded default lives in a new temporary directory every run.
    url = suites_url(backend, name, sqlite_dir=pytester.path / "data")
    assert url is not None
    dropped_afterwards.append(url)
    make_project(pytester, url)
    pytester.makepyfile(test_suite=generated_suite())
    workers = [str(worker_url(DatabaseURL.parse(url), w).database) for w in ("gw0", "gw1")]

    first = pytester.runpytest_subprocess("-n", "2", "--txscope-reuse-db")
    first.assert_outcomes(passed=SUITE_SIZE)
    used = used_databases(pytester)
    assert used == {"gw0": workers[0], "gw1": workers[1]}
    builds = log_lines(pytester, "builds.log")
    assert len(builds) == (1 if backend.family == "postgresql" else 2), builds
    kept = kept_databases(backend, name, used)
    if backend.family == "sqlite":
        assert kept == [f"{Path(w).name}{end}" for w in workers for end in ("", ".txscope-key")]
    else:
        assert [d for d in kept if "_tpl_" not in d] == [Path(w).name for w in workers]
        assert len([d for d in kept if "_tpl_" in d]) == (1 if backend.family == "postgresql" else 0)
    worker_urls = [str(url).replace(name, Path(w).name.removesuffix(".db"), 1) for w in workers]
    for worker in worker_urls:  # nothing in them but the seed rows
        assert committed_counts(backend, worker) == (SEED_AUTHORS, SEED_BOOKS)

    second = pytester.runpytest_subprocess("-n", "2", "--txscope-reuse-db")
    second.assert_outcomes(passed=SUITE_SIZE)
    assert used_databases(pytester) == used
    assert log_lines(pytester, "builds.log") == builds, "the second run built the schema again"
    assert kept_databases(backend, name, used) == kept
    for worker in worker_urls:
        assert committed_counts(backend, worker) == (SEED_AUTHORS, SEED_BOOKS)


NOTE_TEST = """
def test_new_column(db_session):
    db_session.execute("INSERT INTO books (id, author_id, isbn, note) VALUES (100, 1, 'noted', 'hello')")
    assert db_session.fetchall("SELECT note FROM books WHERE id IN (1, 100) ORDER BY id") == [("none",), ("hello",)]
"""


def test_changed_schema_is_rebuilt_although_reuse_is_on(
    pytester: pytest.Pytester, backend: Backend, dropped_afterwards: list[str]
) -> None:
    name = database_name(backend, "suites_schema")
    url = suites_url(backend, name, sqlite_dir=pytester.path / "data")
    assert url is not None
    dropped_afterwards.append(url)
    make_project(pytester, url)
    pytester.makepyfile(test_suite=generated_suite(6))
    pytester.runpytest_subprocess("--txscope-reuse-db").assert_outcomes(passed=6)
    assert len(log_lines(pytester, "builds.log")) == 1

    make_project(pytester, url, extra_column=NOTE_COLUMN)  # the schema module changes: so does the key
    pytester.makepyfile(test_note=NOTE_TEST)
    pytester.runpytest_subprocess("--txscope-reuse-db").assert_outcomes(passed=7)
    builds = log_lines(pytester, "builds.log")
    assert len(builds) == 2, builds
    assert committed_counts(backend, url) == (SEED_AUTHORS, SEED_BOOKS)  # kept, rolled back
    peer = Backend(backend.name, url).peer()
    try:
        assert peer.fetchall("SELECT count(note) FROM books") == [(SEED_BOOKS,)]
    finally:
        peer.close()
    if backend.family == "postgresql":  # the template of the old schema is gone, the new one kept
        assert builds[0].split()[1] != builds[1].split()[1]
        assert [d for d in server_databases(backend, name) if "_tpl_" in d] == [builds[1].split()[1]]


def test_run_without_reuse_rebuilds_a_schema_whose_key_did_not_change(
    pytester: pytest.Pytester, backend: Backend, dropped_afterwards: list[str]
) -> None:
    # docs/configuration.md, "The schema key": changes to a module the schema function imports do not change
    # the key; "after such a change, run once without reuse". That one run must build the schema again.
    name = database_name(backend, "suites_import")
    url = suites_url(backend, name, sqlite_dir=pytester.path / "data")
    assert url is not None
    dropped_afterwards.append(url)
    make_project(pytester, url, ddl_module=True)
    pytester.makepyfile(test_suite=generated_suite(6))
    pytester.runpytest_subprocess("--txscope-reuse-db").assert_outcomes(passed=6)
    assert len(log_lines(pytester, "builds.log")) == 1
    take_log(pytester, "databases.log")

    make_project(pytester, url, extra_column=NOTE_COLUMN, ddl_module=True)  # schema_mod.py is unchanged
    pytester.makepyfile(test_note=NOTE_TEST)
    result = pytester.runpytest_subprocess()  # without reuse, as the docs advise
    builds = log_lines(pytester, "builds.log")
    assert len(builds) == 2, f"the run without reuse did not build the schema again: builds {builds}"
    result.assert_outcomes(passed=7)
    assert kept_databases(backend, name, used_databases(pytester)) == []  # and dropped it at the end
