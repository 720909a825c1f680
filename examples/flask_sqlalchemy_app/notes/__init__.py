"""A small notes API on Flask-SQLAlchemy 3: authors and their notes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import views
from .models import db


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application factory: the database comes from $SQLALCHEMY_DATABASE_URI."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("SQLALCHEMY_DATABASE_URI", "sqlite:///notes.db")
    if config:
        app.config.from_mapping(config)
    db.init_app(app)
    app.register_blueprint(views.bp)
    return app
