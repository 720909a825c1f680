"""A small blog in the Flask tutorial's style (flaskr): no ORM, the driver's own connection per request."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import blog, db


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The application factory: the database comes from $DATABASE_URL (sqlite:///path or postgresql://...)."""
    app = Flask(__name__)
    app.config["DATABASE_URL"] = os.environ.get("DATABASE_URL", "sqlite:///flaskr.sqlite")
    if test_config:
        app.config.from_mapping(test_config)
    db.init_app(app)
    app.register_blueprint(blog.bp)
    return app
