"""The app's database: its own SQLAlchemy engine, and one ORM session per request."""

from __future__ import annotations

import os

from flask import Flask, g
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

# A SQLAlchemy URL, e.g. postgresql+psycopg://shop:secret@localhost/shop. Made at import time, as apps do.
DATABASE_URL = os.environ.get("SHOP_DATABASE_URL", "sqlite:///shop_test.db")

engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine)


def get_session() -> Session:
    """The current request's session, opened on first use."""
    if "db_session" not in g:
        g.db_session = SessionLocal()
    return g.db_session


def close_session(exc: BaseException | None = None) -> None:
    """Close the request's session (what it did not commit is rolled back)."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_session)
