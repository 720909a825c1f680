"""factory_boy and hypothesis inside ``async def`` tests (pytest-asyncio), with the application's SQLAlchemy
``AsyncEngine`` pinned, on every backend whose driver has an asyncio twin (aiosqlite, psycopg, aiomysql).

The generated application is async: ``create_async_engine`` at import, an ``async_sessionmaker``, and functions
that commit. Factories write through the test's ORM session (the sandbox's connection); the app's
``AsyncSession`` reads them there. A last generated test checks from an unpinned engine that nothing survived.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Imported in this process before any generated run: pytester forgets the modules a run imported first, and
# SQLAlchemy warns (an error here) when a dialect imported again registers its SQL functions a second time.
import sqlalchemy.dialects.mysql
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite  # noqa: F401
from hypothesis import settings

from pytest_txscope import DatabaseURL
from pytest_txscope.sqlalchemy import sqlalchemy_url

from ..backends import Backend, sibling_url

# The drivers whose SQLAlchemy asyncio twin the sandbox serves: sqlite3 (aiosqlite), psycopg 3 (its async
# connection) and PyMySQL (aiomysql). psycopg2 and mysqlclient have none.
pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql", exact=True)

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+aiomysql"}

MODELS = '''
"""The application under test: async, its engine made at import, its sessions committing."""
import os

from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


# SQLite: the embedded database is only known once the run started; conftest.py rebinds these.
engine = create_async_engine(os.environ.get("APP_SA_URL", "sqlite+aiosqlite://"))
SessionLocal = async_sessionmaker(bind=engine, expire_on_commit=False)


async def add_author(name):
    async with SessionLocal() as session:
        session.add(Author(name=name))
        await session.commit()


async def author_names():
    async with SessionLocal() as session:
        return list(await session.scalars(select(Author.name).order_by(Author.name)))
'''

FACTORIES = '''
"""The project's factories: they write through the test's ORM session, on the sandbox's connection."""
import factory

from pytest_txscope.factories import SandboxModelFactory
from models import Author


class AuthorFactory(SandboxModelFactory):  # persistence "flush"
    class Meta:
        model = Author

    name = factory.Sequence(lambda n: f"author-{n}")


class CommittedAuthorFactory(AuthorFactory):
    class Meta:
        sqlalchemy_session_persistence = "commit"
'''

SQLITE_CONFTEST = """

@pytest.fixture(scope="session", autouse=True)
def _app_engine_on_the_test_database(db_engine):
    # Before the first sandbox: txscope_engines is resolved then, from this module attribute.
    from sqlalchemy.ext.asyncio import create_async_engine
    from pytest_txscope.sqlalchemy import sqlalchemy_url
    import models

    url = sqlalchemy_url(db_engine.url).set(drivername="sqlite+aiosqlite")
    models.engine = create_async_engine(url)
    models.SessionLocal.configure(bind=models.engine)
"""

CONFTEST = """
import pytest
from hypothesis import settings

settings.register_profile("txscope-aio", derandomize=True, database=None, deadline=None, max_examples=10)
settings.load_profile("txscope-aio")
"""

OUTSIDE_CHECK = """


def test_zz_nothing_survived(db_engine):
    from pytest_txscope import Engine

    outside = Engine.from_url(db_engine.url)
    with outside.session() as s:
        assert s.fetchall("SELECT id, name FROM authors") == [(1000, "seed")]
    outside.dispose()
"""


def project_url(backend: Backend) -> str | None:
    """The generated projects' database: the embedded default for SQLite, ``<base>_aiotests`` else."""
    if backend.family == "sqlite":
        return None
    return sibling_url(backend, "aiotests").partition("?")[0]


@pytest.fixture(autouse=True)
def _keep_hypothesis_profile() -> Iterator[None]:
    # The generated projects run in this process and load a profile of their own: restore ours afterwards.
    current = getattr(settings, "get_current_profile_name", None)
    name = current() if current else settings._current_profile
    yield
    settings.load_profile(name)


@pytest.fixture
def project(pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project whose async app engine is pinned (txscope_engines), with factories and pytest-asyncio."""
    url = project_url(backend)
    pytester.makepyfile(models=MODELS, factories=FACTORIES)
    pytester.makefile(".sql", seed="INSERT INTO authors (id, name) VALUES (1000, 'seed');\n")
    ini = [
        "[pytest]",
        "txscope_schema =",
        "    models:Base",
        "    seed.sql",
        "txscope_engines = models:engine",
        "addopts = -p no:randomly",
        "asyncio_mode = strict",
        "asyncio_default_fixture_loop_scope = function",
    ]
    conftest = CONFTEST
    if url:
        ini.append(f"txscope_url = {url}")
        async_url = sqlalchemy_url(DatabaseURL.parse(url)).set(drivername=ASYNC_DRIVERS[backend.family])
        monkeypatch.setenv("APP_SA_URL", async_url.render_as_string(hide_password=False))
    else:
        monkeypatch.delenv("APP_SA_URL", raising=False)
        conftest += SQLITE_CONFTEST
    pytester.makeconftest(conftest)
    pytester.makefile(".ini", pytest="\n".join(ini))
    return pytester


FACTORY_TESTS = """
import pytest
from sqlalchemy import select

import models
from factories import AuthorFactory, CommittedAuthorFactory
from pytest_txscope.sqlalchemy import current_session


@pytest.mark.asyncio
async def test_factory_rows_reach_the_app(db_session):
    AuthorFactory(name="ada")                                   # flushed in the test's ORM session
    CommittedAuthorFactory(name="bob")                          # committed: a savepoint release
    assert await models.author_names() == ["ada", "bob", "seed"]


@pytest.mark.asyncio
async def test_app_rows_reach_the_factories_session(sa_session):
    await models.add_author("ada")                              # the app's AsyncSession commits
    author = AuthorFactory()
    names = sa_session.scalars(select(models.Author.name).order_by(models.Author.name)).all()
    assert names == ["ada", author.name, "seed"]
    assert current_session() is sa_session


@pytest.mark.txscope
@pytest.mark.asyncio
async def test_marker_alone(request):
    AuthorFactory(name="ada")                                   # the next test must not see her
    assert await models.author_names() == ["ada", "seed"]
    assert db_count() == 2


def db_count():
    return current_session().scalar(select(models.func.count()).select_from(models.Author))
"""


def test_factories_in_async_tests(project: pytest.Pytester) -> None:
    project.makepyfile(test_factories=FACTORY_TESTS + OUTSIDE_CHECK)
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(
        [
            "test_factories.py::test_factory_rows_reach_the_app PASSED*",
            "test_factories.py::test_app_rows_reach_the_factories_session PASSED*",
            "test_factories.py::test_marker_alone PASSED*",
            "test_factories.py::test_zz_nothing_survived PASSED*",
        ]
    )
    result.assert_outcomes(passed=4)


HYPOTHESIS_TESTS = """
import pytest
from hypothesis import given, strategies as st

import models
from factories import AuthorFactory

EXAMPLES = []


@given(st.integers(0, 100))
@pytest.mark.asyncio
async def test_app_commits_per_example(db_session, n):
    EXAMPLES.append(n)
    await models.add_author("same")                             # a unique name: fails if an example survived
    assert await models.author_names() == ["same", "seed"]


@given(n=st.integers(0, 100))
@pytest.mark.asyncio
async def test_session_and_factories_per_example(db_session, n):
    EXAMPLES.append(n)
    db_session.execute("INSERT INTO authors (id, name) VALUES (1, :name)", {"name": f"n{n}"})
    AuthorFactory(name="same")
    assert db_session.fetchscalar("SELECT count(*) FROM authors") == 3


@given(n=st.integers(0, 100))
@pytest.mark.asyncio
async def test_async_db_session_per_example(async_db_session, n):
    EXAMPLES.append(n)
    async with async_db_session as tx:                          # released: a savepoint in the example's
        await tx.execute("INSERT INTO authors (id, name) VALUES (1, 'same')")
    assert await async_db_session.fetchscalar("SELECT count(*) FROM authors") == 2


@pytest.fixture
def anyio_backend():
    return "asyncio"


@given(n=st.integers(0, 100))
@pytest.mark.anyio
async def test_under_anyio(db_session, n):
    EXAMPLES.append(n)
    await models.add_author("same")
    assert await models.author_names() == ["same", "seed"]


def test_examples_ran():
    assert len(EXAMPLES) >= 20                                  # each test ran several examples
"""


def test_hypothesis_examples_of_async_tests_are_isolated(project: pytest.Pytester) -> None:
    project.makepyfile(test_given=HYPOTHESIS_TESTS + OUTSIDE_CHECK)
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines(
        [
            "test_given.py::test_app_commits_per_example PASSED*",
            "test_given.py::test_session_and_factories_per_example PASSED*",
            "test_given.py::test_async_db_session_per_example PASSED*",
            "test_given.py::test_under_anyio PASSED*",
            "test_given.py::test_examples_ran PASSED*",
            "test_given.py::test_zz_nothing_survived PASSED*",
        ]
    )
    result.assert_outcomes(passed=6)
