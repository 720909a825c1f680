"""A small shop API: customers and their orders, on the app's own SQLAlchemy engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import api, db


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application factory."""
    app = Flask(__name__)
    if config:
        app.config.from_mapping(config)
    db.init_app(app)
    app.register_blueprint(api.bp)
    return app
