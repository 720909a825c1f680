"""The app, its test client, and the factories as pytest-factoryboy fixtures."""

from __future__ import annotations

import pytest
from factories import CustomerFactory, OrderFactory
from flask import Flask
from flask.testing import FlaskClient
from pytest_factoryboy import register
from shop import create_app


@pytest.fixture
def app() -> Flask:
    return create_app({"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# The factories write into the test's sandbox, so it must be open before they run. pytest-factoryboy keeps
# factory fixtures declared before register(): these make `customer`, `order`, `customer_factory` and
# `order_factory` start the sandbox first, whatever order a test lists its fixtures in.
@pytest.fixture
def customer_factory(db_sandbox: object) -> type[CustomerFactory]:
    return CustomerFactory


@pytest.fixture
def order_factory(db_sandbox: object) -> type[OrderFactory]:
    return OrderFactory


register(CustomerFactory)
register(OrderFactory)
