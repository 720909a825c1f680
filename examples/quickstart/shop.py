"""A tiny application: it manages its own transactions, as production code does."""

from __future__ import annotations

from pytest_txscope import Engine, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, email VARCHAR(100) NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    total INTEGER NOT NULL
);
"""


def register(engine: Engine, email: str) -> int:
    """Create a customer and commit."""
    with engine as tx:
        tx.execute("INSERT INTO customers (email) VALUES (:email)", {"email": email})
        return int(tx.fetchscalar("SELECT id FROM customers WHERE email = :email", {"email": email}))


def place_order(engine: Engine, customer_id: int, totals: list[int]) -> int:
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
    """Count orders in whatever transaction is current (the caller's)."""
    with transaction() as tx:
        return int(tx.fetchscalar("SELECT count(*) FROM orders"))
