"""The shop's API through Flask's test client, with the database rolled back after every test.

The app opens its own sessions on its own engine and commits them; inside a test those commits are savepoint
releases in the test's sandbox, so they behave as in production and are gone after the test.
"""

from __future__ import annotations

import pytest
from shop.models import Customer
from sqlalchemy import func, select

EMAIL = "ada@example.com"  # the same unique email in several tests: a leaked row would make one fail


def customer_count(sa_session) -> int:
    return sa_session.scalar(select(func.count()).select_from(Customer))


def test_a_customer_created_through_the_api_is_in_the_database(client, sa_session):
    response = client.post("/customers", json={"email": EMAIL})

    assert response.status_code == 201
    customer = sa_session.get(Customer, response.json["id"])
    assert customer.email == EMAIL


def test_rows_from_factories_are_visible_to_the_app(client, order_factory, customer):
    order_factory(customer=customer, total=500)
    order_factory(customer=customer, total=700)

    response = client.get(f"/customers/{customer.id}/orders")

    assert response.status_code == 200
    assert [order["total"] for order in response.json["orders"]] == [500, 700]
    assert client.get("/stats").json == {"customers": 1, "orders": 2, "revenue": 1200}


def test_a_duplicate_email_is_409_and_the_test_goes_on(client, sa_session, customer):
    response = client.post("/customers", json={"email": customer.email})

    assert response.status_code == 409  # the app rolled its own transaction back
    # ... and only its own: the factory's customer is still there, and the database still works.
    assert client.post("/customers", json={"email": EMAIL}).status_code == 201
    assert customer_count(sa_session) == 2


def test_the_apps_commits_are_seen_by_later_requests(client, customer):
    for total in (1000, 250):
        assert client.post(f"/customers/{customer.id}/orders", json={"total": total}).status_code == 201

    orders = client.get(f"/customers/{customer.id}/orders").json["orders"]
    assert [order["total"] for order in orders] == [1000, 250]
    assert client.get("/stats").json["revenue"] == 1250


def test_rows_added_with_sa_session_are_visible_to_the_app(client, sa_session):
    sa_session.add(Customer(email="bob@example.com"))
    sa_session.commit()  # a savepoint release: the test's transaction stays open

    assert client.get("/stats").json["customers"] == 1


def test_no_other_test_left_anything_behind(client, sa_session):
    assert client.get("/stats").json == {"customers": 0, "orders": 0, "revenue": 0}
    assert client.post("/customers", json={"email": EMAIL}).status_code == 201
    assert customer_count(sa_session) == 1


@pytest.mark.txscope  # no database fixture: the marker alone puts the app's engine in a sandbox
def test_the_marker_alone_sandboxes_the_app(client):
    response = client.post("/customers", json={"email": EMAIL})
    assert response.status_code == 201

    customer_id = response.json["id"]
    assert client.post(f"/customers/{customer_id}/orders", json={"total": 999}).status_code == 201
    assert client.get("/stats").json == {"customers": 1, "orders": 1, "revenue": 999}


def test_unknown_customers_and_bad_input_are_refused(client, customer):
    assert client.get("/customers/999999/orders").status_code == 404
    assert client.post("/customers", json={"email": "not an email"}).status_code == 400
    assert client.post(f"/customers/{customer.id}/orders", json={"total": -5}).status_code == 400
