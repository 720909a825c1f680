"""One connection per request, kept in g: sqlite3 or psycopg, according to DATABASE_URL."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Flask, current_app, g


def get_db() -> Any:
    """The request's connection, opened on first use."""
    if "db" not in g:
        url: str = current_app.config["DATABASE_URL"]
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg
            from psycopg.rows import dict_row

            g.db = psycopg.connect(url, row_factory=dict_row)
            g.db_errors = psycopg
        else:
            # sqlite:///relative.db or sqlite:////absolute.db, options after '?' are not sqlite3's.
            path = url.removeprefix("sqlite:///").partition("?")[0]
            g.db = sqlite3.connect(path, detect_types=sqlite3.PARSE_DECLTYPES)
            g.db.row_factory = sqlite3.Row
            g.db_errors = sqlite3
    return g.db


def execute(sql: str, args: tuple[Any, ...] = ()) -> Any:
    """Run ``sql`` (with ``?`` placeholders, sqlite3's) on the request's connection; the cursor."""
    db = get_db()
    if g.db_errors is not sqlite3:
        sql = sql.replace("?", "%s")  # psycopg's placeholder; the app's statements have no other '?'
    return db.execute(sql, args)


def integrity_error() -> type[Exception]:
    """The driver's IntegrityError, for the connection in use."""
    get_db()
    error: type[Exception] = g.db_errors.IntegrityError
    return error


def close_db(e: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
