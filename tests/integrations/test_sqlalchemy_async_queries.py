"""Query counts and on-commit capture with a pinned SQLAlchemy ``AsyncEngine`` (``pytest_txscope.capture``,
which the plugin's fixtures hand out), on every backend through the async twin of its driver: its statements
are counted once each, never its savepoints, under ``engine=`` too, with the user's line as the call site."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_txscope import Engine, Sandbox
from pytest_txscope.capture import assert_num_queries, capture_on_commit, capture_queries
from pytest_txscope.sqlalchemy import pin_to_sandbox

from ..backends import Peer
from .test_sqlalchemy_async import INSERT, app, assert_nothing_survived, run

__all__ = ["app"]  # the fixture, shared with test_sqlalchemy_async.py

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "postgresql-asyncpg", "mysql", exact=True)


def test_async_engine_statements_are_counted(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    async def main() -> None:
        async with AsyncSession(app) as session:
            await session.execute(text(INSERT), {"id": 1, "name": "outer"})
            async with session.begin_nested():
                await session.execute(text(INSERT), {"id": 2, "name": "inner"})
            await session.commit()
            await session.execute(text("SELECT name FROM items"))

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        sandbox.session().execute("SELECT 1")  # the sandbox's connection is open before counting
        with assert_num_queries(3, engine=app) as queries, capture_queries(engine=engine) as ours:
            run(main)
            sandbox.session().execute("SELECT 2")
        assert [q.sql.split()[0] for q in queries] == ["INSERT", "INSERT", "SELECT"]
        assert all(q.site.endswith(" in main") for q in queries), queries
        assert ours.sqls == ["SELECT 2"]
    assert_nothing_survived(peer)


def test_sqlalchemy_commits_schedule_no_callbacks(engine: Engine, app: Any, peer: Peer) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    async def main() -> None:
        async with AsyncSession(app) as session:
            await session.execute(text(INSERT), {"id": 1, "name": "x"})
            await session.commit()

    with Sandbox(engine) as sandbox:
        pin_to_sandbox(sandbox, (app,))
        with capture_on_commit() as callbacks:
            run(main)
            with sandbox.session() as tx:
                tx.on_commit(lambda: None)
        assert len(callbacks) == 1  # ours; SQLAlchemy's commit is a savepoint release with none
    assert_nothing_survived(peer)
