"""A tiny application with its own engine: it commits, rolls back and nests as production code does."""

from __future__ import annotations

import os

from pytest_txscope import Engine

# In production this would come from the app's settings.
engine = Engine.from_url(os.environ.get("SHOP_DATABASE_URL", "sqlite:///shop_dev.db"))


def register(email: str) -> int:
    """Create a customer and commit."""
    with engine as tx:
        tx.execute("INSERT INTO customers (email) VALUES (:email)", {"email": email})
        return int(tx.fetchscalar("SELECT id FROM customers WHERE email = :email", {"email": email}))


def place_order(customer_id: int, totals: list[int]) -> int:
    """Place one order per total; all or nothing."""
    with engine as tx:
        for total in totals:
            if total <= 0:
                raise ValueError(f"an order total must be positive, got {total}")
            tx.execute(
                "INSERT INTO orders (customer_id, total) VALUES (:c, :t)", {"c": customer_id, "t": total}
            )
        return len(totals)


def order_count() -> int:
    """How many orders there are."""
    with engine.session() as session:
        return int(session.fetchscalar("SELECT count(*) FROM orders"))
