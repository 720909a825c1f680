"""factory_boy inside the sandbox: `SandboxModelFactory`, `TableFactory`, ``current_session`` and
pytest-factoryboy, on every backend.

The generated projects are those of ``test_sqlalchemy.py`` (the same ``models`` application module, pinned
through ``txscope_engines``), with a ``factories`` module added. Each ends with a generated test that checks
from a fresh, unpinned SQLAlchemy engine that nothing the factories wrote survived.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..backends import Backend
from .test_sqlalchemy import OUTSIDE_CHECK, drop_project_databases, sa_project

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

FACTORIES = '''
"""The project's factories."""
import factory
from factory.alchemy import SQLAlchemyModelFactory

from pytest_txscope.factories import SandboxModelFactory, TableFactory
from pytest_txscope.sqlalchemy import current_session
from models import Author, Book


class AuthorFactory(SandboxModelFactory):  # the default persistence: "flush"
    class Meta:
        model = Author

    name = factory.Sequence(lambda n: f"author-{n}")


class PendingAuthorFactory(AuthorFactory):
    class Meta:
        sqlalchemy_session_persistence = None


class CommittedAuthorFactory(AuthorFactory):
    class Meta:
        sqlalchemy_session_persistence = "commit"


class BookFactory(SandboxModelFactory):
    class Meta:
        model = Book

    title = factory.Sequence(lambda n: f"book-{n}")
    author = factory.SubFactory(AuthorFactory)


class CommittedBookFactory(BookFactory):
    class Meta:
        sqlalchemy_session_persistence = "commit"

    author = factory.SubFactory(CommittedAuthorFactory)


class AuthorWithBooksFactory(AuthorFactory):
    first = factory.RelatedFactory(BookFactory, factory_related_name="author")
    second = factory.RelatedFactory(CommittedBookFactory, factory_related_name="author")


class UniqueAuthorFactory(AuthorFactory):
    class Meta:
        sqlalchemy_get_or_create = ("name",)


class PlainAuthorFactory(SQLAlchemyModelFactory):  # factory_boy's own class, with the session function
    class Meta:
        model = Author
        sqlalchemy_session_factory = current_session
        sqlalchemy_session_persistence = "commit"

    name = factory.Sequence(lambda n: f"plain-{n}")


class AuthorRowFactory(TableFactory):
    class Meta:
        table = "authors"

    name = factory.Sequence(lambda n: f"row-{n}")


class BookRowFactory(TableFactory):
    class Meta:
        table = "books"

    title = factory.Sequence(lambda n: f"row-book-{n}")
    author_id = factory.LazyFunction(lambda: AuthorRowFactory()["id"])
'''

HEAD = """
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import object_session

import models
from models import Author, Book, count, names
from factories import *


def sql_names(db_session):
    return [name for (name,) in db_session.fetchall("SELECT name FROM authors ORDER BY name")]


def book_rows(db_session):
    return db_session.fetchall(
        "SELECT b.title, a.name FROM books b JOIN authors a ON a.id = b.author_id ORDER BY b.title"
    )


def committed_names(db_engine):
    # From an engine no sandbox pins, on its own connection: only what is really committed.
    from pytest_txscope import Engine

    outside = Engine.from_url(db_engine.url)
    try:
        with outside.session() as s:
            return [name for (name,) in s.fetchall("SELECT name FROM authors ORDER BY name")]
    finally:
        outside.dispose()
"""

NO_SANDBOX = (
    "pytest_txscope.sqlalchemy.current_session() found no active sandbox: it is meant for factories used inside "
    "a sandboxed test; request the sa_session, db_session or db_sandbox fixture, or mark the test "
    "@pytest.mark.txscope"
)


@pytest.fixture(scope="module", autouse=True)
def _drop_databases_at_the_end() -> Iterator[None]:
    yield
    drop_project_databases()


@pytest.fixture
def project(pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    project = sa_project(pytester, backend, monkeypatch)
    project.makepyfile(factories=FACTORIES)
    return project


def run(project: pytest.Pytester, tests: str, *, passed: int) -> pytest.RunResult:
    """Write ``test_factories.py`` (`HEAD`, ``tests``, the outside check), run it, expect ``passed`` passes."""
    project.makepyfile(test_factories=HEAD + tests + OUTSIDE_CHECK)
    result = project.runpytest()
    result.assert_outcomes(passed=passed + 1)
    return result


def test_persistence_none(project: pytest.Pytester) -> None:
    run(
        project,
        """

def test_pending_until_the_session_flushes(db_session, sa_session):
    author = PendingAuthorFactory(name="pending")
    assert author in sa_session.new
    assert sql_names(db_session) == ["seed"]
    sa_session.flush()
    assert author.id is not None
    assert sql_names(db_session) == ["pending", "seed"]
""",
        passed=1,
    )


def test_persistence_flush(project: pytest.Pytester) -> None:
    run(
        project,
        """

def test_flushed(db_session):
    author = AuthorFactory(name="flushed")
    assert author.id is not None
    assert sql_names(db_session) == ["flushed", "seed"]
    assert db_session.fetchscalar("SELECT id FROM authors WHERE name = 'flushed'") == author.id


def test_next_test_starts_from_the_seed(db_session):
    assert sql_names(db_session) == ["seed"]
    AuthorFactory(name="flushed")  # no unique clash
""",
        passed=2,
    )


def test_persistence_commit_keeps_the_test_transaction(project: pytest.Pytester) -> None:
    run(
        project,
        """

def test_committed(db_session, db_engine):
    db_session.execute("INSERT INTO authors (name) VALUES ('before')")
    author = CommittedAuthorFactory(name="committed")
    assert sql_names(db_session) == ["before", "committed", "seed"]  # the work before it is still there
    db_session.execute("INSERT INTO authors (name) VALUES ('after')")  # later statements work
    CommittedAuthorFactory(name="committed-too")
    with models.SessionLocal() as session:  # the application sees it all
        assert names(session) == ["after", "before", "committed", "committed-too", "seed"]
    assert db_session.fetchscalar("SELECT id FROM authors WHERE name = 'committed'") == author.id
    assert committed_names(db_engine) == ["seed"]  # only a savepoint was released


def test_next_test_starts_from_the_seed(db_session):
    assert sql_names(db_session) == ["seed"]
    CommittedAuthorFactory(name="committed")
""",
        passed=2,
    )


def test_subfactory_and_related_factory_share_the_session(project: pytest.Pytester) -> None:
    run(
        project,
        """

def test_subfactory(db_session, sa_session):
    book = BookFactory(title="sub", author__name="by-sub")
    assert object_session(book) is sa_session
    assert object_session(book.author) is sa_session
    assert book_rows(db_session) == [("sub", "by-sub")]


def test_committed_subfactory(db_session, sa_session):
    book = CommittedBookFactory(title="sub", author__name="by-sub")
    assert object_session(book) is object_session(book.author) is sa_session
    assert book_rows(db_session) == [("sub", "by-sub")]


def test_related_factories(db_session, sa_session):
    author = AuthorWithBooksFactory(name="related", first__title="one", second__title="two")
    assert object_session(author) is sa_session
    assert all(object_session(book) is sa_session for book in author.books)
    assert sorted(book.title for book in author.books) == ["one", "two"]
    assert book_rows(db_session) == [("one", "related"), ("two", "related")]
""",
        passed=3,
    )


def test_get_or_create(project: pytest.Pytester) -> None:
    run(
        project,
        """

def test_second_call_returns_the_same_row(db_session, sa_session):
    first = UniqueAuthorFactory(name="unique")
    second = UniqueAuthorFactory(name="unique")
    assert second is first
    assert sql_names(db_session) == ["seed", "unique"]
    seed = UniqueAuthorFactory(name="seed")  # a row the schema seeded
    assert seed.id == 1000
    assert count(sa_session, Author) == 2
""",
        passed=1,
    )


def test_get_or_create_rollback_keeps_what_was_committed(project: pytest.Pytester) -> None:
    # factory_boy 3.3.3: when saving raises IntegrityError, _get_or_create() calls session.rollback(), looks
    # the row up again by the get-or-create fields and, when that finds nothing, re-raises. The rollback is
    # the ORM session's: it discards the session's uncommitted work only, as in production.
    run(
        project,
        """

def test_duplicate_key(db_session, sa_session):
    db_session.execute("INSERT INTO authors (name) VALUES ('by-sql')")
    taken = db_session.fetchscalar("SELECT id FROM authors WHERE name = 'by-sql'")
    committed = CommittedAuthorFactory(name="committed")
    with models.SessionLocal.begin() as app_session:
        app_session.add(Author(name="by-the-app"))
    flushed = AuthorFactory(name="flushed-only")
    with pytest.raises(IntegrityError):
        UniqueAuthorFactory(name="new", id=taken)  # not found by name; its id clashes
    assert sql_names(db_session) == ["by-sql", "by-the-app", "committed", "seed"]
    assert names(sa_session) == ["by-sql", "by-the-app", "committed", "seed"]
    assert flushed not in sa_session  # the session's uncommitted work, rolled back
    assert UniqueAuthorFactory(name="committed") is committed
    assert UniqueAuthorFactory(name="new").id != taken  # the session goes on
    assert count(sa_session, Author) == 5
""",
        passed=1,
    )


def test_factory_boy_factory_with_current_session(project: pytest.Pytester) -> None:
    run(
        project,
        """

def test_with_db_session(db_session):
    from pytest_txscope.sqlalchemy import current_session

    author = PlainAuthorFactory(name="plain")
    assert object_session(author) is current_session()
    assert sql_names(db_session) == ["plain", "seed"]


@pytest.mark.txscope
def test_with_the_marker_only():
    from pytest_txscope.sqlalchemy import current_session

    PlainAuthorFactory(name="plain")
    assert names(current_session()) == ["plain", "seed"]
""",
        passed=2,
    )


def test_table_factory(project: pytest.Pytester) -> None:
    run(
        project,
        """

def test_generated_key(db_session):
    row = AuthorRowFactory(name="row")
    assert set(row) == {"id", "name"}
    assert isinstance(row["id"], int)
    assert row == {"id": row["id"], "name": "row"}
    assert db_session.fetchall("SELECT id, name FROM authors WHERE name = 'row'") == [(row["id"], "row")]
    other = AuthorRowFactory()
    assert other["id"] != row["id"]


def test_explicit_key(db_session):
    assert AuthorRowFactory(id=4242, name="explicit") == {"id": 4242, "name": "explicit"}
    assert db_session.fetchall("SELECT id, name FROM authors WHERE id = 4242") == [(4242, "explicit")]


def test_rows_referencing_rows(db_session, sa_session):
    book = BookRowFactory(title="row-book")
    assert set(book) == {"id", "title", "author_id"}
    assert db_session.fetchscalar("SELECT title FROM books WHERE id = :id", {"id": book["id"]}) == "row-book"
    assert sa_session.get(Book, book["id"]).author.id == book["author_id"]  # the ORM sees the rows too


def test_build_inserts_nothing():
    assert AuthorRowFactory.build(name="built") == {"name": "built"}
""",
        passed=4,
    )


def test_pytest_factoryboy_register(project: pytest.Pytester) -> None:
    run(
        project,
        """
from pytest_factoryboy import register

register(AuthorFactory)
register(BookFactory)
register(AuthorRowFactory, "author_row")


def test_model_fixtures(db_session, author, book, author_row):
    assert isinstance(author, Author)
    assert book.author is author
    assert author_row["id"] is not None
    assert book_rows(db_session) == [(book.title, author.name)]
    assert sql_names(db_session) == sorted(["seed", author.name, author_row["name"]])


def test_factory_fixtures(db_session, author_factory, book_factory, author_row_factory):
    author_factory(name="from-fixture")
    book_factory(title="book-from-fixture", author__name="book-author")
    row = author_row_factory(name="row-from-fixture")
    assert sql_names(db_session) == ["book-author", "from-fixture", "row-from-fixture", "seed"]
    assert db_session.fetchscalar("SELECT name FROM authors WHERE id = :id", {"id": row["id"]}) == (
        "row-from-fixture"
    )


@pytest.mark.parametrize("author__name", ["overridden"])
@pytest.mark.txscope
def test_overridden_attribute(author):
    from pytest_txscope.sqlalchemy import current_session

    assert names(current_session()) == ["overridden", "seed"]
""",
        passed=3,
    )


def test_pytest_factoryboy_fixture_listed_before_the_sandbox_fixture(project: pytest.Pytester) -> None:
    # pytest-factoryboy's usual spelling lists the model fixture first. The test asks for a sandbox (db_session,
    # sa_session), so the factory must run inside it: NoSandboxError telling to request db_session is wrong.
    run(
        project,
        """
from pytest_factoryboy import register

register(AuthorFactory)
register(AuthorRowFactory, "author_row")


def test_author_first(author, author_row, db_session):
    assert sql_names(db_session) == sorted(["seed", author.name, author_row["name"]])


def test_author_before_sa_session(author, sa_session):
    assert names(sa_session) == sorted(["seed", author.name])
""",
        passed=2,
    )


def test_mixing_factory_kinds_in_one_test(project: pytest.Pytester) -> None:
    # A flushed ORM factory leaves sa_session's transaction open; a TableFactory (or db_session) statement
    # after it must not stop a later "commit" factory from committing.
    run(
        project,
        """

def test_mixed(db_session):
    AuthorFactory(name="orm-flushed")
    row = AuthorRowFactory(name="table-row")
    book = CommittedBookFactory(title="committed-book", author__name="orm-committed")
    assert sql_names(db_session) == ["orm-committed", "orm-flushed", "seed", "table-row"]
    assert book_rows(db_session) == [("committed-book", "orm-committed")]
    assert row["name"] == "table-row"
""",
        passed=1,
    )


def test_outside_a_sandbox_is_a_clear_error(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_outside=HEAD
        + f"""
from pytest_txscope.sqlalchemy import NoSandboxError, current_session

MESSAGE = {NO_SANDBOX!r}


def test_a_sandboxed_test_first(db_session):
    AuthorFactory()  # factory_boy keeps this test's session on the factory's options
    PlainAuthorFactory()


@pytest.mark.parametrize(
    "call",
    [AuthorFactory, CommittedAuthorFactory, BookFactory, PlainAuthorFactory, AuthorRowFactory, current_session],
)
def test_without_a_sandbox(call):
    with pytest.raises(NoSandboxError) as info:
        call()
    assert str(info.value) == MESSAGE


def test_with_only_the_engine(db_engine):
    with pytest.raises(NoSandboxError) as info:
        AuthorFactory()
    assert str(info.value) == MESSAGE


def test_build_needs_no_sandbox():
    assert AuthorFactory.build(name="built").name == "built"


def test_uncaught():
    AuthorFactory()
"""
        + OUTSIDE_CHECK
    )
    result = project.runpytest()
    result.assert_outcomes(passed=10, failed=1)
    result.stdout.fnmatch_lines([f"E *pytest_txscope.sqlalchemy.NoSandboxError: {NO_SANDBOX}"])
    assert "no attribute 'add'" not in result.stdout.str()
