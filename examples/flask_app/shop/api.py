"""The JSON API. Each view works in the request's session and commits what it changes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .db import get_session
from .models import Customer, Order

bp = Blueprint("api", __name__)

Response = tuple[dict[str, Any], int]


@bp.post("/customers")
def create_customer() -> Response:
    email = (request.get_json(silent=True) or {}).get("email")
    if not isinstance(email, str) or "@" not in email:
        return {"error": "email must be an email address"}, 400
    session = get_session()
    customer = Customer(email=email)
    session.add(customer)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return {"error": f"a customer with email {email} already exists"}, 409
    return {"id": customer.id, "email": customer.email}, 201


@bp.get("/customers/<int:customer_id>/orders")
def list_orders(customer_id: int) -> Response:
    customer = get_session().get(Customer, customer_id)
    if customer is None:
        return _no_such_customer(customer_id)
    orders = [{"id": order.id, "total": order.total} for order in customer.orders]
    return {"customer_id": customer.id, "orders": orders}, 200


@bp.post("/customers/<int:customer_id>/orders")
def place_order(customer_id: int) -> Response:
    total = (request.get_json(silent=True) or {}).get("total")
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        return {"error": "total must be a positive number of cents"}, 400
    session = get_session()
    if session.get(Customer, customer_id) is None:
        return _no_such_customer(customer_id)
    order = Order(customer_id=customer_id, total=total)
    session.add(order)
    session.commit()
    return {"id": order.id, "customer_id": customer_id, "total": total}, 201


@bp.get("/stats")
def stats() -> Response:
    session = get_session()
    return {
        "customers": session.scalar(select(func.count()).select_from(Customer)),
        "orders": session.scalar(select(func.count()).select_from(Order)),
        # int(): MySQL sums integers as DECIMAL.
        "revenue": int(session.scalar(select(func.coalesce(func.sum(Order.total), 0)))),
    }, 200


def _no_such_customer(customer_id: int) -> Response:
    return {"error": f"no customer {customer_id}"}, 404
