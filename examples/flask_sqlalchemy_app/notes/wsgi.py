"""The app a WSGI server runs (gunicorn notes.wsgi:app), and its engine, which the tests pin."""

from __future__ import annotations

from . import create_app
from .models import db

app = create_app()

# Flask-SQLAlchemy makes the engine in init_app(), for this app; db.engine reads it in an app context.
with app.app_context():
    engine = db.engine
