"""The app (on the test database, from $DATABASE_URL) and its test client, in each test's sandbox."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flaskr import create_app


@pytest.fixture
def app(db_sandbox: object) -> Flask:
    return create_app({"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
