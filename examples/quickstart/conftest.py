"""Per-test rollback with the core alone: each test runs inside a transaction that is rolled back.

The application's own ``with engine:`` blocks run in the same thread, so they nest inside the test's
transaction as savepoints: their commits are real to the application, and gone after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from shop import SCHEMA

from pytest_txscope import Engine, Transaction


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An embedded SQLite database for the whole run, schema created once."""
    path: Path = tmp_path_factory.mktemp("db") / "shop.db"
    eng = Engine.from_url(f"sqlite:///{path}")
    eng.executescript(SCHEMA, source="shop.SCHEMA")
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Transaction]:
    """The test's transaction: everything the test and the app write is rolled back afterwards."""
    with engine.session() as session:
        tx = session.begin()
        with tx:
            yield tx
            tx.rollback()
