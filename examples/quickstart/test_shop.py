"""The example suite: run it with ``pytest examples/quickstart``.

Every test runs in a transaction that is rolled back afterwards; the app's own commits become savepoint
releases inside it, so they work as in production and vanish after the test.
"""

from __future__ import annotations

import pytest
import shop


def test_register_and_order(db_session):
    customer = shop.register("ada@example.com")  # the app commits
    assert shop.place_order(customer, [10, 20]) == 2
    assert shop.order_count() == 2
    assert db_session.fetchscalar("SELECT count(*) FROM customers") == 1


def test_the_previous_test_left_nothing(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM customers") == 0
    assert shop.order_count() == 0


def test_a_failed_order_is_all_or_nothing(db_session):
    customer = shop.register("bob@example.com")
    with pytest.raises(ValueError, match="must be positive"):
        shop.place_order(customer, [10, -1])
    assert shop.order_count() == 0  # the app's block rolled back to its savepoint
    assert db_session.fetchscalar("SELECT count(*) FROM customers") == 1  # the earlier commit is intact


@pytest.mark.txscope  # no fixture needed: the marker sandboxes the app's engine
def test_the_same_email_again_is_fine_in_a_new_test():
    shop.register("ada@example.com")  # unique constraint: would fail if the first test had leaked


def test_after_commit_hooks_fire_at_the_apps_commit(db_sandbox):
    sent = []
    with shop.engine as tx:
        tx.execute("INSERT INTO customers (email) VALUES ('eve@example.com')")
        tx.on_commit(lambda: sent.append("welcome mail"))
    assert sent == ["welcome mail"]
