"""SQLAlchemy inside the sandbox: an application's engine, sessions and ``sa_session``, on every backend.

Each test generates a small project whose application module builds, at import time, a SQLAlchemy engine, a
``sessionmaker`` and a ``scoped_session``, exactly as applications do; the plugin pins that engine through
``txscope_engines`` and builds the schema from the declarative base (``txscope_schema = models:Base``). The
generated tests check a behaviour, and a last generated test checks from a fresh, unpinned SQLAlchemy engine
that nothing they did survived.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest

from pytest_txscope import BackendUnavailableError, DatabaseURL
from pytest_txscope.provision import drop, drop_templates
from pytest_txscope.sqlalchemy import sqlalchemy_url

from ..backends import ALL, Backend, database_url, family_of, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

DATABASE = "sa"

MODELS = '''
"""The application under test: models, and an engine and sessions made at import time."""
import os

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, scoped_session, sessionmaker


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50), unique=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")


# A plain (Core) MetaData, not a declarative base: only created when txscope_schema lists it.
core_metadata = MetaData()
events = Table(
    "events", core_metadata, Column("id", Integer, primary_key=True), Column("what", String(50), nullable=False)
)

# SQLite: the embedded database is only known once the run started; conftest.py rebinds these.
engine = create_engine(os.environ.get("APP_SA_URL", "sqlite://"))
SessionLocal = sessionmaker(bind=engine)
Scoped = scoped_session(SessionLocal)


def names(session):
    """Every author's name, sorted, as ``session`` (any ORM session) sees them."""
    return list(session.scalars(select(Author.name).order_by(Author.name)))


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))
'''

SEED = "INSERT INTO authors (id, name) VALUES (1000, 'seed');\n"

SQLITE_CONFTEST = """
import pytest


@pytest.fixture(scope="session", autouse=True)
def _app_engine_on_the_test_database(db_engine):
    # Before the first sandbox: txscope_engines is resolved then, from this module attribute.
    from sqlalchemy import create_engine
    from pytest_txscope.sqlalchemy import sqlalchemy_url
    import models

    models.engine = create_engine(sqlalchemy_url(db_engine.url))
    models.SessionLocal.configure(bind=models.engine)
"""

# What the database must hold after the project's tests: only the seed author; checked from a new engine that
# no sandbox pins, on a connection of its own.
OUTSIDE_CHECK = """


def test_zz_nothing_survived(db_engine):
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool
    from pytest_txscope.sqlalchemy import sqlalchemy_url

    outside = create_engine(sqlalchemy_url(db_engine.url), poolclass=NullPool)
    with outside.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM authors")).all() == [(1000, "seed")]
        assert conn.execute(text("SELECT count(*) FROM books")).scalar() == 0
    outside.dispose()
"""


JOURNAL_MODE_WARNING = "Query string argument\\(s\\) 'journal_mode' are not accepted by the pysqlite driver"


def project_url(backend: Backend) -> str | None:
    """The database of the generated projects: the embedded default for SQLite, ``<base>_sa`` else."""
    if backend.family == "sqlite":
        return None
    return sibling_url(backend, DATABASE).partition("?")[0]


def sa_project(
    pytester: pytest.Pytester,
    backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
    *,
    schema: tuple[str, ...] = ("models:Base", "seed.sql"),
    ini: tuple[str, ...] = (),
    conftest: str = "",
    ignore_sqlite_url_warning: bool = True,
) -> pytest.Pytester:
    """A project with the SQLAlchemy application module ``models`` (pinned through txscope_engines).

    The projects run in this process, under its ``filterwarnings = error``. On SQLite, SQLAlchemy's warning
    about the embedded URL's ``journal_mode`` is ignored there unless asked: one test of its own checks it.
    """
    url = project_url(backend)
    pytester.makepyfile(models=MODELS)
    pytester.makefile(".sql", seed=SEED)
    lines = [
        "[pytest]",
        "txscope_schema =",
        *(f"    {entry}" for entry in schema),
        "txscope_engines = models:engine",
        "addopts = -p no:randomly",
        *ini,
    ]
    if url:
        # Reused from one project to the next (dropped when the module ends): building a PostgreSQL database
        # from a template costs seconds per run.
        lines += [f"txscope_url = {url}", "txscope_reuse_db = true"]
        sa_url = sqlalchemy_url(DatabaseURL.parse(url)).render_as_string(hide_password=False)
        monkeypatch.setenv("APP_SA_URL", sa_url)
    else:
        monkeypatch.delenv("APP_SA_URL", raising=False)
        conftest = SQLITE_CONFTEST + conftest
        if ignore_sqlite_url_warning:
            lines.append(f"filterwarnings = ignore:{JOURNAL_MODE_WARNING}:sqlalchemy.exc.SAWarning")
    if conftest:
        pytester.makeconftest(conftest)
    pytester.makefile(".ini", pytest="\n".join(lines))
    return pytester


def drop_project_databases() -> None:
    """Drop the server databases (and PostgreSQL templates) the generated projects reused, on every driver (each
    driver's projects have a database of their own)."""
    for name in ALL:
        url = None if family_of(name) == "sqlite" else database_url(name)
        if not url:
            continue
        target = DatabaseURL.parse(project_url(Backend(name, url)) or "")
        with contextlib.suppress(BackendUnavailableError):
            drop(target, allow=())
            drop_templates(target, allow=())


@pytest.fixture(scope="module", autouse=True)
def _drop_databases_at_the_end() -> Iterator[None]:
    yield
    drop_project_databases()


@pytest.fixture
def project(pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return sa_project(pytester, backend, monkeypatch)


def run(project: pytest.Pytester, tests: str, *args: str, passed: int) -> pytest.RunResult:
    """Write ``test_app.py`` (``tests`` followed by the outside check), run it, expect ``passed`` passes."""
    project.makepyfile(test_app=tests + OUTSIDE_CHECK)
    result = project.runpytest(*args)
    result.assert_outcomes(passed=passed + 1)
    return result


HEAD = """
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import models
from models import Author, Book, count, names


def sql_names(db_session):
    return [name for (name,) in db_session.fetchall("SELECT name FROM authors ORDER BY name")]
"""


def test_engine_connect_and_commit(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_connect(db_session):
    authors = Author.__table__
    with models.engine.connect() as conn:
        conn.execute(insert(authors).values(name="committed"))
        conn.commit()
        conn.execute(insert(authors).values(name="rolled-back"))
        conn.rollback()
        conn.execute(insert(authors).values(name="closed-uncommitted"))
    assert sql_names(db_session) == ["committed", "seed"]
    with models.engine.connect() as conn:  # a second connection of the pool sees the committed row
        assert conn.execute(select(authors.c.name).order_by(authors.c.name)).scalars().all() == [
            "committed",
            "seed",
        ]


def test_next_test_starts_from_the_seed(db_session):
    with models.engine.connect() as conn:
        conn.execute(insert(Author.__table__).values(name="committed"))  # no unique clash
        conn.commit()
    assert sql_names(db_session) == ["committed", "seed"]
""",
        passed=2,
    )


def test_engine_begin(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_begin(db_session):
    with models.engine.begin() as conn:
        conn.execute(insert(Author.__table__).values(name="begun"))
    with pytest.raises(RuntimeError), models.engine.begin() as conn:
        conn.execute(insert(Author.__table__).values(name="failed"))
        raise RuntimeError("the app failed")
    assert sql_names(db_session) == ["begun", "seed"]
""",
        passed=1,
    )


def test_orm_session_on_the_engine(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_session_commit(db_session):
    with Session(models.engine) as session:
        session.add(Author(name="orm", books=[Book(title="first"), Book(title="second")]))
        session.commit()
    with Session(models.engine) as session:
        author = session.scalars(select(Author).where(Author.name == "orm")).one()
        assert sorted(b.title for b in author.books) == ["first", "second"]
    assert sql_names(db_session) == ["orm", "seed"]
    assert db_session.fetchscalar("SELECT count(*) FROM books") == 2
""",
        passed=1,
    )


@pytest.mark.backends("postgresql")
def test_orm_commit_raises_on_a_violated_deferred_constraint(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Production checks a DEFERRABLE INITIALLY DEFERRED foreign key at COMMIT; the sandbox's release of a
    # savepoint checked nothing, and the orphan was committed with its after_commit hooks run.
    pytester.makefile(
        ".sql",
        reviews="CREATE TABLE reviews (id INT PRIMARY KEY, "
        "book_id INT REFERENCES books (id) DEFERRABLE INITIALLY DEFERRED);\n",
    )
    project = sa_project(pytester, backend, monkeypatch, schema=("models:Base", "seed.sql", "reviews.sql"))
    run(
        project,
        HEAD
        + """
from sqlalchemy import event, text


def test_orphan_review(db_session):
    committed = []
    session = Session(models.engine)
    event.listen(session, "after_commit", lambda s: committed.append(True))
    session.execute(text("INSERT INTO reviews (id, book_id) VALUES (1, 404)"))
    with pytest.raises(IntegrityError, match="reviews_book_id_fkey"):
        session.commit()
    session.rollback()
    assert committed == []
    session.add(Author(name="after"))
    session.commit()
    session.close()
    assert sql_names(db_session) == ["after", "seed"]
    assert db_session.fetchscalar("SELECT count(*) FROM reviews") == 0
""",
        passed=1,
    )


def test_sessionmaker(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_sessionmaker_commit(db_session):
    session = models.SessionLocal()
    session.add(Author(name="made"))
    session.commit()
    session.close()
    with models.SessionLocal.begin() as session:
        session.add(Author(name="begun"))
    assert sql_names(db_session) == ["begun", "made", "seed"]
    with models.SessionLocal() as session:
        assert names(session) == ["begun", "made", "seed"]
""",
        passed=1,
    )


def test_scoped_session_made_at_import(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_scoped_commit(db_session):
    models.Scoped.add(Author(name="scoped"))
    models.Scoped.commit()
    assert sql_names(db_session) == ["scoped", "seed"]
    assert names(models.Scoped) == ["scoped", "seed"]
    models.Scoped.remove()


def test_scoped_again_sees_only_the_seed(db_session):
    assert names(models.Scoped) == ["seed"]
    models.Scoped.add(Author(name="scoped"))  # no unique clash: the first test's commit was rolled back
    models.Scoped.commit()
    assert sql_names(db_session) == ["scoped", "seed"]
    models.Scoped.remove()
""",
        passed=2,
    )


def test_app_rollback_undoes_only_its_own_work(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_rollback(db_session):
    db_session.execute("INSERT INTO authors (name) VALUES ('by-the-test')")
    with models.SessionLocal() as session:
        session.add(Author(name="committed"))
        session.commit()
        session.add(Author(name="flushed"))
        session.flush()
        assert "flushed" in names(session)
        session.rollback()
        assert names(session) == ["by-the-test", "committed", "seed"]
    assert sql_names(db_session) == ["by-the-test", "committed", "seed"]
""",
        passed=1,
    )


def test_app_savepoint_catches_an_integrity_error(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_begin_nested(db_session):
    with models.SessionLocal() as session:
        session.add(Author(name="outer"))
        session.flush()
        with pytest.raises(IntegrityError), session.begin_nested():
            session.add(Author(name="seed"))  # unique clash with the seed author
            session.flush()
        session.add(Author(name="after"))
        session.commit()
    assert sql_names(db_session) == ["after", "outer", "seed"]
""",
        passed=1,
    )


def test_sa_session_and_db_session_see_each_other(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_orm_first(sa_session, db_session):
    sa_session.add(Author(name="from-orm", books=[Book(title="orm-book")]))
    sa_session.flush()
    assert sql_names(db_session) == ["from-orm", "seed"]
    db_session.execute("INSERT INTO authors (name) VALUES ('from-sql')")
    assert names(sa_session) == ["from-orm", "from-sql", "seed"]
    with models.SessionLocal() as app_session:  # the application sees both too
        assert names(app_session) == ["from-orm", "from-sql", "seed"]


def test_sql_first(db_session, sa_session):
    db_session.execute("INSERT INTO authors (name) VALUES ('from-sql')")
    assert names(sa_session) == ["from-sql", "seed"]
    sa_session.add(Author(name="from-orm"))
    sa_session.commit()
    assert sql_names(db_session) == ["from-orm", "from-sql", "seed"]
""",
        passed=2,
    )


def test_sa_session_starts_the_sandbox_itself(project: pytest.Pytester) -> None:
    # One function-scoped fixture of ours per test, not sa_session on top of db_sandbox: pytest's price for
    # each is tens of microseconds. With db_sandbox or db_session asked for too, they share one sandbox.
    result = run(
        project,
        HEAD
        + """

def test_orm_alone(sa_session):
    sa_session.add(Author(name="alone"))
    sa_session.commit()
    assert names(sa_session) == ["alone", "seed"]


def test_with_the_sandbox(db_sandbox, sa_session):
    sa_session.add(Author(name="shared"))
    sa_session.flush()
    assert db_sandbox.session().fetchscalar("SELECT count(*) FROM authors") == 2
""",
        "--setup-show",
        passed=2,
    )
    ours = ("db_sandbox", "db_session", "sa_session")
    plan = [line.strip() for line in result.outlines if line.strip().startswith(("SETUP", "TEARDOWN"))]
    assert [line for line in plan if line.split()[2] in ours] == [
        "SETUP    F sa_session (fixtures used: db_engine)",
        "TEARDOWN F sa_session",
        "SETUP    F db_sandbox (fixtures used: db_engine)",
        "SETUP    F sa_session (fixtures used: db_engine)",
        "TEARDOWN F sa_session",
        "TEARDOWN F db_sandbox",
    ]


def test_a_failing_sa_session_set_up_still_ends_its_sandbox(project: pytest.Pytester) -> None:
    # sa_session starts the sandbox before it makes the ORM session: if making it fails (injected here), the
    # sandbox must still be rolled back and the engines unpinned, or every later test would run inside it.
    project.makepyfile(
        test_app=HEAD
        + """
import pytest_txscope.sqlalchemy as integration

_made = integration.session_for


def _fails_once(sandbox):
    sandbox.session().execute("INSERT INTO authors (name) VALUES ('before-the-failure')")
    integration.session_for = _made
    raise RuntimeError("injected: the ORM session could not be made")


integration.session_for = _fails_once


def test_1_set_up_fails(sa_session):
    pass


def test_2_next_test_is_sandboxed_alone(db_engine, sa_session):
    assert db_engine.pinned
    assert names(sa_session) == ["seed"]


def test_3_nothing_stays_pinned(db_engine):
    assert not db_engine.pinned
"""
        + OUTSIDE_CHECK
    )
    result = project.runpytest()
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["E * RuntimeError: injected: the ORM session could not be made"])


def test_sa_session_commits_after_db_session_looked(project: pytest.Pytester) -> None:
    # The usual test: write through the ORM, look with db_session, go on with the ORM. A db_session statement
    # run while sa_session's transaction is open must not stop sa_session from committing.
    run(
        project,
        HEAD
        + """

def test_read_in_between(sa_session, db_session):
    sa_session.add(Author(name="from-orm"))
    sa_session.flush()
    assert sql_names(db_session) == ["from-orm", "seed"]
    sa_session.commit()
    assert names(sa_session) == ["from-orm", "seed"]


def test_write_in_between(sa_session, db_session):
    sa_session.add(Author(name="from-orm"))
    sa_session.flush()
    db_session.execute("INSERT INTO authors (name) VALUES ('from-sql')")
    sa_session.commit()
    assert sql_names(db_session) == ["from-orm", "from-sql", "seed"]
""",
        passed=2,
    )


def test_sa_session_commit_and_rollback_behave_as_in_production(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """

def test_commit_then_rollback(db_session, sa_session):
    db_session.execute("INSERT INTO authors (name) VALUES ('by-sql')")
    kept = Author(name="kept", books=[Book(title="kept-book")])
    sa_session.add(kept)
    sa_session.commit()
    sa_session.add(Author(name="discarded"))
    kept.name = "renamed"
    sa_session.flush()
    assert names(sa_session) == ["by-sql", "discarded", "renamed", "seed"]
    sa_session.rollback()
    assert names(sa_session) == ["by-sql", "kept", "seed"]
    assert kept.name == "kept"  # expired and reloaded: the committed state
    assert sql_names(db_session) == ["by-sql", "kept", "seed"]
    assert db_session.fetchscalar("SELECT count(*) FROM books") == 1
    sa_session.add(Author(name="later"))  # the session goes on after its rollback
    sa_session.commit()
    assert count(sa_session, Author) == 4


def test_the_same_session_all_test_long(sa_session):
    from pytest_txscope.sqlalchemy import current_session

    assert current_session() is sa_session
    assert names(sa_session) == ["seed"]
""",
        passed=2,
    )


def test_schema_from_a_metadata(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = sa_project(
        pytester, backend, monkeypatch, schema=("models:Base.metadata", "models:core_metadata", "seed.sql")
    )
    run(
        project,
        HEAD
        + """

def test_tables_of_both(db_session, sa_session):
    with models.engine.begin() as conn:
        conn.execute(insert(models.events).values(what="happened"))
    sa_session.add(Author(name="orm"))
    sa_session.flush()
    assert db_session.fetchall("SELECT what FROM events") == [("happened",)]
    assert sql_names(db_session) == ["orm", "seed"]


def test_zz_no_event_survived(db_engine):
    from sqlalchemy import create_engine, func
    from sqlalchemy.pool import NullPool
    from pytest_txscope.sqlalchemy import sqlalchemy_url

    outside = create_engine(sqlalchemy_url(db_engine.url), poolclass=NullPool)
    with outside.connect() as conn:
        assert conn.execute(select(func.count()).select_from(models.events)).scalar() == 0
    outside.dispose()
""",
        passed=2,
    )


BLOCKED_TESTS = """

def test_forgot_the_sandbox():
    with models.engine.connect() as conn:
        conn.execute(select(1))


def test_forgot_it_with_an_orm_session():
    with models.SessionLocal() as session:
        session.add(Author(name="blocked"))
        session.commit()


def test_pure_python_is_untouched():
    assert Author(name="not saved").name == "not saved"
"""

ASKED_FOR_IT = """

def test_asked_for_it(db_session):
    with models.SessionLocal.begin() as session:
        session.add(Author(name="fine"))
    assert sql_names(db_session) == ["fine", "seed"]
"""


def blocked_lines(backend: Backend) -> list[str]:
    """The error each blocked test of `BLOCKED_TESTS` must fail with."""
    url = project_url(backend)
    shown = (
        f"Engine({sqlalchemy_url(DatabaseURL.parse(url))})" if url else "Engine(sqlite:///*/txscope_test.db)"
    )
    return [
        f"E *pytest_txscope.errors.DatabaseAccessError: test_block.py::{test} used {shown}, but it asked for "
        "no database sandbox and txscope_block is on; request the db_session or db_sandbox fixture, or mark it "
        "@pytest.mark.txscope (or @pytest.mark.txscope(commit=True) for real commits)"
        for test in ("test_forgot_the_sandbox", "test_forgot_it_with_an_orm_session")
    ]


def test_blocking_refuses_the_sqlalchemy_engine(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = sa_project(pytester, backend, monkeypatch, ini=("txscope_block = true",))
    # A sandboxed test first: the database exists and SQLAlchemy has met it when the blocked tests run.
    project.makepyfile(test_block=HEAD + ASKED_FOR_IT.replace("test_asked", "test_0_asked") + BLOCKED_TESTS)
    project.makepyfile(test_check=OUTSIDE_CHECK)
    result = project.runpytest()
    result.assert_outcomes(failed=2, passed=3)
    result.stdout.fnmatch_lines(blocked_lines(backend))


@pytest.mark.backends("postgresql", "mysql")
def test_blocking_before_any_sandbox(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The blocked tests run first: the run has not built its database yet (nor connected to the server).
    # Blocking must refuse the engine in the test that uses it, and leave the others alone.
    project = sa_project(pytester, backend, monkeypatch, ini=("txscope_block = true",))
    url = project_url(backend)
    assert url is not None
    drop(DatabaseURL.parse(url), allow=())  # not left by an earlier run
    project.makepyfile(test_block=HEAD + BLOCKED_TESTS + ASKED_FOR_IT + OUTSIDE_CHECK)
    result = project.runpytest()
    result.assert_outcomes(failed=2, passed=3)
    result.stdout.fnmatch_lines(blocked_lines(backend))


RANDOM_CONFTEST = """


@pytest.fixture(scope="session", autouse=True)
def _nothing_survived_the_run(db_engine):
    # Checked after every test, whatever the order: from a new engine no sandbox pins.
    yield
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool
    from pytest_txscope.sqlalchemy import sqlalchemy_url

    outside = create_engine(sqlalchemy_url(db_engine.url), poolclass=NullPool)
    with outside.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM authors")).all() == [(1000, "seed")]
        assert conn.execute(text("SELECT count(*) FROM books")).scalar() == 0
    outside.dispose()
"""

RANDOM_TESTS = (
    HEAD
    + """

# Every test writes the same unique names: a row that survived an earlier test makes the next one fail.
@pytest.mark.parametrize("run", [1, 2])
def test_sa_session(sa_session, db_session, run):
    sa_session.add(Author(name="same", books=[Book(title="same-book")]))
    sa_session.commit()
    assert sql_names(db_session) == ["same", "seed"]


@pytest.mark.parametrize("run", [1, 2])
def test_app_session(db_session, run):
    with models.SessionLocal.begin() as session:
        session.add(Author(name="same", books=[Book(title="same-book")]))
    assert sql_names(db_session) == ["same", "seed"]


@pytest.mark.parametrize("run", [1, 2])
def test_scoped(db_session, run):
    models.Scoped.add(Author(name="same", books=[Book(title="same-book")]))
    models.Scoped.commit()
    models.Scoped.remove()
    assert sql_names(db_session) == ["same", "seed"]


@pytest.mark.parametrize("run", [1, 2])
def test_connection(db_session, run):
    with models.engine.begin() as conn:
        conn.execute(insert(Author.__table__).values(name="same"))
    assert sql_names(db_session) == ["same", "seed"]
"""
)


def test_random_order_twice(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = sa_project(pytester, backend, monkeypatch, conftest="import pytest\n" + RANDOM_CONFTEST)
    project.makepyfile(test_random=RANDOM_TESTS)
    orders = []
    for seed in (1, 2):
        result = project.runpytest("-p", "randomly", f"--randomly-seed={seed}", "-v")
        result.assert_outcomes(passed=8)
        result.stdout.fnmatch_lines([f"Using --randomly-seed={seed}"])
        orders.append(re.findall(r"test_random\.py::(\S+) PASSED", result.stdout.str()))
    assert orders[0] != orders[1], "pytest-randomly did not shuffle the tests"
    assert sorted(orders[0]) == sorted(orders[1])


@pytest.mark.backends("sqlite-file")
def test_embedded_sqlite_gives_sqlalchemy_a_url_it_accepts(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The embedded default's URL carries ?journal_mode=wal; sqlalchemy_url() must not hand SQLAlchemy a query
    # argument its SQLite driver refuses: building the schema (create_all), sa_session and an app engine made
    # from sqlalchemy_url(db_engine.url) would each warn, and fail a suite that turns warnings into errors.
    project = sa_project(pytester, backend, monkeypatch, ignore_sqlite_url_warning=False)
    run(
        project,
        HEAD
        + """

def test_orm_everywhere(sa_session):
    sa_session.add(Author(name="orm"))
    sa_session.flush()
    with models.SessionLocal() as session:
        assert names(session) == ["orm", "seed"]
""",
        "-W",
        "error::sqlalchemy.exc.SAWarning",
        passed=1,
    )


@pytest.mark.backends("sqlite-file", "postgresql", "mysql")
def test_pool_replaces_connections_of_another_sandbox_state(backend: Backend) -> None:
    """A pooled connection that belongs to another pinning is replaced: a real one pooled before, an outer
    sandbox's once a nested one pins the engine, a sandbox's once the engine is unpinned. One of a sandbox that
    ended, on the same real connection, is re-pointed at the sandbox that pins the engine instead."""
    import sqlalchemy as sa

    from pytest_txscope import Sandbox, SandboxConnection
    from pytest_txscope.sqlalchemy import pin_to_sandbox, sqlalchemy_url

    engine = backend.engine()
    app = sa.create_engine(sqlalchemy_url(engine.url), pool_size=1)

    def checked_out() -> object:
        with app.connect() as conn:
            return conn.connection.dbapi_connection

    try:
        real = checked_out()
        assert not isinstance(real, SandboxConnection)
        with Sandbox(engine) as outer:
            pin_to_sandbox(outer, (app,))
            first = checked_out()
            assert isinstance(first, SandboxConnection)
            assert checked_out() is first  # pooled within the sandbox, as a real one would be
            with Sandbox(engine) as inner:
                pin_to_sandbox(inner, (app,))
                nested = checked_out()
                assert isinstance(nested, SandboxConnection)
                assert nested is not first
            again = checked_out()  # the outer's own, or the nested one's, re-pointed now that it ended
            assert again in (first, nested)
            assert not again.session.closed
        # Pinned again: an ended sandbox's connection is re-pointed, not replaced.
        with Sandbox(engine) as later:
            pin_to_sandbox(later, (app,))
            assert checked_out() in (first, nested)
        after = checked_out()
        assert not isinstance(after, SandboxConnection)
    finally:
        app.dispose()
        engine.dispose()


@pytest.mark.backends("sqlite-file", "postgresql", "mysql")
def test_orm_session_engine_pools_only_within_its_sandbox(backend: Backend) -> None:
    """sa_session's engine keeps its sandbox connection between a test's checkouts (no on-connect set-up per
    commit), never hands it to a nested sandbox, and re-points it at a later one once its sandbox ended."""
    from pytest_txscope import Sandbox, SandboxConnection
    from pytest_txscope.sqlalchemy import session_for

    engine = backend.engine()

    def checked_out(sandbox: Sandbox) -> object:
        session = session_for(sandbox)
        connection = session.connection().connection.dbapi_connection
        session.commit()
        return connection

    try:
        with Sandbox(engine) as outer:
            first = checked_out(outer)
            assert isinstance(first, SandboxConnection)
            assert checked_out(outer) is first
            with Sandbox(engine) as inner:
                nested = checked_out(inner)
                assert isinstance(nested, SandboxConnection)
                assert nested is not first
            assert checked_out(outer) in (first, nested)  # the nested one's, re-pointed now that it ended
        with Sandbox(engine) as later:  # re-pointed at the later sandbox: no reconnect per test
            assert checked_out(later) in (first, nested)
    finally:
        engine.dispose()


CONNECTS_COUNTED = """
from sqlalchemy import event
from sqlalchemy.pool import Pool

CONNECTS = []


@pytest.fixture
def connects_counted(sa_session):
    # Every pool's new DB-API connections during the test: sa_session's engine and the application's.
    seen = []

    def count_connect(*args):
        seen.append(1)

    event.listen(Pool, "connect", count_connect)
    yield
    event.remove(Pool, "connect", count_connect)
    CONNECTS.append(len(seen))
"""


def test_pools_do_not_reconnect_at_every_test(project: pytest.Pytester) -> None:
    """sa_session's engine and the application's pinned engine connect in the first test only: later tests get
    the pooled sandbox connections re-pointed at their sandbox (the pool reconnected at each test's first
    checkout, rerunning SQLAlchemy's on-connect set-up), and still see nothing of the earlier tests."""
    run(
        project,
        HEAD
        + CONNECTS_COUNTED
        + """

@pytest.mark.parametrize("run", [1, 2, 3])
def test_orm(connects_counted, sa_session, db_session, run):
    assert names(sa_session) == ["seed"]
    sa_session.add(Author(name="same"))
    sa_session.commit()
    with models.SessionLocal.begin() as session:
        session.add(Book(title="same-book", author_id=1000))
    with models.engine.connect() as conn:
        assert conn.scalar(select(Book.title)) == "same-book"
    assert sql_names(db_session) == ["same", "seed"]


def test_zz_connects():
    assert CONNECTS[0] > 0
    assert CONNECTS[1:] == [0, 0]
""",
        passed=4,
    )


@pytest.mark.backends("sqlite-file")
def test_re_pointed_connections_keep_sqlalchemys_set_up_only(project: pytest.Pytester) -> None:
    """A re-pointed SQLite connection still has the functions SQLAlchemy registers at connect (``regexp``, for
    ``regexp_match()``), but not those an earlier test registered on it."""
    run(
        project,
        HEAD
        + """
from sqlalchemy.exc import OperationalError


def with_regexp(session, pattern):
    return list(session.scalars(select(Author.name).where(Author.name.regexp_match(pattern))))


def shout(session):
    return session.connection().exec_driver_sql("SELECT shout('x')").scalar()


@pytest.mark.parametrize("run", [1, 2, 3])
def test_regexp(sa_session, run):
    sa_session.add(Author(name=f"r{run}"))
    sa_session.flush()
    assert with_regexp(sa_session, "^r[0-9]$") == [f"r{run}"]
    with models.SessionLocal() as session:
        assert with_regexp(session, "^s") == ["seed"]
    # Not yet registered, or an earlier test's, removed (sqlite3 leaves a stub that raises on Python < 3.12).
    with pytest.raises(OperationalError, match="no such function: shout|function raised exception"):
        shout(sa_session)
    sa_session.rollback()
    sa_session.connection().connection.dbapi_connection.create_function("shout", 1, str.upper)
    assert shout(sa_session) == "X"
""",
        passed=3,
    )


def test_wider_scope_sandbox_pins_the_applications_sqlalchemy_engine(project: pytest.Pytester) -> None:
    """The wider-scope recipe with the application's SQLAlchemy engine: ``Sandbox(db_engine, engines=[engine])``
    (it raised ``AttributeError: 'Engine' object has no attribute '_pin'``)."""
    run(
        project,
        HEAD
        + """
from pytest_txscope import Sandbox


@pytest.fixture(scope="module")
def catalog(db_engine):
    with Sandbox(db_engine, engines=[models.engine]):
        with Session(models.engine) as session:  # the application's engine, pinned to the module's sandbox
            session.add(Author(id=1, name="catalog"))
            session.commit()
        yield


def test_a(catalog, sa_session):
    assert names(sa_session) == ["catalog", "seed"]
    with Session(models.engine) as session:
        session.add(Author(id=2, name="a"))
        session.commit()
    assert names(sa_session) == ["a", "catalog", "seed"]


def test_b(catalog, sa_session):
    assert names(sa_session) == ["catalog", "seed"]
""",
        passed=2,
    )


def test_a_request_thread_commits_while_the_tests_orm_session_is_open(project: pytest.Pytester) -> None:
    """The test client's flow: the test's ORM session holds a transaction open and waits for a worker thread
    that does a whole request on the application's engine (a savepoint above the test's)."""
    run(
        project,
        HEAD
        + """
import threading


def request():
    with models.SessionLocal() as session:  # what a FastAPI dependency yields, in an AnyIO worker thread
        seen = count(session, Author)
        session.add(Author(id=2, name="request"))
        session.commit()
    return seen


def in_worker(work):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", work()), name="AnyIO worker thread")
    thread.start()
    thread.join(10)
    return box["result"]


def test_request(db_sandbox, sa_session):
    db_sandbox.thread_timeout = 2  # no wait happens; a wait would fail fast
    sa_session.add(Author(id=1, name="test"))
    sa_session.flush()  # the test's ORM transaction is open (a savepoint) and stays open
    assert in_worker(request) == 2  # the seed and the test's flushed row (uncommitted: one transaction)
    assert names(sa_session) == ["request", "seed", "test"]
    sa_session.commit()


def test_two_requests(db_sandbox, sa_session):
    in_worker(request)
    with models.SessionLocal() as session:
        assert names(session) == ["request", "seed"]
""",
        passed=2,
    )
