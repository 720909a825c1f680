"""Query counts and on-commit capture with a pinned SQLAlchemy engine, on every backend: its ORM's statements
are counted (never SQLAlchemy's savepoints and commits), ``engine=`` tells it from ``db_session``, and its own
``after_commit`` session events are SQLAlchemy's, not captured."""

from __future__ import annotations

import pytest

from .test_sqlalchemy import _drop_databases_at_the_end, project, run

__all__ = ["_drop_databases_at_the_end", "project"]  # fixtures, shared with test_sqlalchemy.py

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

HEAD = """
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

import models
from models import Author
"""


def test_orm_statements_are_counted_on_the_pinned_engine(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """
def test_orm(db_assert_num_queries, db_capture_queries, db_session, db_engine):
    with db_assert_num_queries(3, engine=models.engine) as queries, db_capture_queries(engine=db_engine) as ours:
        with Session(models.engine) as session:
            session.add(Author(id=1, name="ada"))
            session.commit()                                  # RELEASE of its savepoint: not counted
            with session.begin():
                with session.begin_nested():                  # SAVEPOINT / RELEASE: not counted
                    session.add(Author(id=2, name="bob"))
            assert models.names(session) == ["ada", "bob", "seed"]
        db_session.execute("SELECT 1")
    assert [q.sql.split()[0] for q in queries] == ["INSERT", "INSERT", "SELECT"]
    assert queries[0].site.startswith("test_app.py:")
    assert ours.sqls == ["SELECT 1"]
""",
        passed=1,
    )


def test_an_unpinned_engine_is_refused_with_its_password_masked(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app=HEAD
        + """
def test_unpinned(db_capture_queries, db_session):
    from sqlalchemy import create_engine
    other = create_engine("postgresql+psycopg://app:Sup3r-Secret@db/shop")
    with db_capture_queries(engine=other):
        pass
"""
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "Sup3r-Secret" not in text
    assert "Traceback" not in text
    result.stdout.fnmatch_lines(
        [
            "db_capture_queries: engine=Engine(postgresql+psycopg://app:***@db/shop) is not pinned to the "
            "test's sandbox, so none of its statements pass the sandbox; list it in txscope_engines, or pass "
            "another engine; valid arguments: engine=None"
        ]
    )


def test_sqlalchemy_after_commit_events_are_not_captured(project: pytest.Pytester) -> None:
    run(
        project,
        HEAD
        + """
def test_after_commit(db_capture_on_commit, db_session):
    fired = []
    with db_capture_on_commit() as callbacks:
        with Session(models.engine) as session:
            event.listen(session, "after_commit", lambda s: fired.append("sqlalchemy"))
            session.add(Author(id=1, name="ada"))
            session.commit()
            assert fired == ["sqlalchemy"]                    # SQLAlchemy's own event: runs at its commit
    assert list(callbacks) == []
""",
        passed=1,
    )
