"""The app the WSGI module made (its engine is the pinned one), and its test client."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from notes.wsgi import app as wsgi_app


@pytest.fixture
def app(db_sandbox: object) -> Flask:
    # One app for the run: Flask-SQLAlchemy makes an engine per app, and txscope_engines pins this one's.
    wsgi_app.config["TESTING"] = True
    return wsgi_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
