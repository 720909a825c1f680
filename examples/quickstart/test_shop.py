"""Run with: pytest examples/quickstart"""

from __future__ import annotations

import pytest
from shop import order_count, place_order, register

from pytest_txscope import Engine, Transaction


def test_register_and_order(engine: Engine, db: Transaction) -> None:
    customer = register(engine, "ada@example.com")
    assert place_order(engine, customer, [10, 20]) == 2
    assert order_count() == 2


def test_the_previous_test_left_nothing(db: Transaction) -> None:
    assert db.fetchscalar("SELECT count(*) FROM customers") == 0
    assert order_count() == 0


def test_a_failed_order_is_all_or_nothing(engine: Engine, db: Transaction) -> None:
    customer = register(engine, "bob@example.com")
    with pytest.raises(ValueError, match="must be positive"):
        place_order(engine, customer, [10, -1])
    assert order_count() == 0  # the app's block rolled back to its savepoint
    assert db.fetchscalar("SELECT count(*) FROM customers") == 1  # the test's earlier work is intact


def test_the_same_email_again_is_fine_in_a_new_test(engine: Engine, db: Transaction) -> None:
    register(engine, "ada@example.com")  # unique constraint: would fail if test 1 had leaked
