"""The benchmark schema, its seed rows, and raw driver connections, for the harness and the generated suites.

Tables come in groups of three, ``t0 <- t1 <- t2`` (each child has a foreign key to the one before it), and
every table has an index: on ``name`` for a group's first table, on the foreign key for the others. The
generated tests write to the first group only; the other groups (30 or 100 tables) are what the cleaning
strategies have to clean too. Seed rows (pre-existing data) have ids ``1..rows`` in every table; the rows the
tests write have ids from `BASE_ID` on, so they never collide with the seed, and resetting the database
between runs is a cheap ``DELETE ... WHERE id >= BASE_ID``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pytest_txscope import DatabaseURL

BASE_ID = 100_000_000
"""The first id a test writes (test ``i`` uses ``BASE_ID + 16 * i`` and the next 9 ids)."""

GROUP = 3
"""Tables per group: a parent, a child and a grandchild."""


def tables(count: int) -> list[str]:
    """The names of the first ``count`` tables, parents before children."""
    return [f"t{k}" for k in range(count)]


def _parent(k: int) -> int | None:
    return None if k % GROUP == 0 else k - 1


def create_statements(family: str, count: int) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``count`` tables, in dependency order."""
    out: list[str] = []
    for k in range(count):
        parent = _parent(k)
        columns = [
            "id INTEGER NOT NULL PRIMARY KEY",
            "parent_id INTEGER" + ("" if parent is None else " NOT NULL"),
            "name VARCHAR(64) NOT NULL",
            "score INTEGER NOT NULL",
        ]
        indexed = "name" if parent is None else "parent_id"
        if family == "mysql":  # inline, so that the foreign key uses it instead of adding its own
            columns.append(f"INDEX t{k}_ix ({indexed})")
        if parent is not None:
            columns.append(f"FOREIGN KEY (parent_id) REFERENCES t{parent} (id)")
        suffix = " ENGINE=InnoDB" if family == "mysql" else ""
        out.append(f"CREATE TABLE t{k} ({', '.join(columns)}){suffix}")
        if family != "mysql":
            out.append(f"CREATE INDEX t{k}_ix ON t{k} ({indexed})")
    return out


def drop_statements(family: str, count: int) -> list[str]:
    """Statements that drop the ``count`` tables (whatever their contents)."""
    names = ", ".join(tables(count))
    if family == "postgresql":
        return [f"DROP TABLE IF EXISTS {names} CASCADE"]
    if family == "mysql":
        return ["SET FOREIGN_KEY_CHECKS = 0", f"DROP TABLE IF EXISTS {names}", "SET FOREIGN_KEY_CHECKS = 1"]
    return [f"DROP TABLE IF EXISTS t{k}" for k in reversed(range(count))]


def _numbers(family: str, rows: int) -> str:
    """A derived table ``s(n)`` of the integers 1..rows."""
    if family == "postgresql":
        return f"generate_series(1, {rows}) AS s(n)"
    if family == "sqlite":
        return f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) SELECT n FROM s) s"
    # MySQL/MariaDB: a cross join of digit tables (recursive CTEs are capped at 1000 levels on MySQL).
    digits = "(SELECT 0 AS d UNION ALL " + " UNION ALL ".join(f"SELECT {d}" for d in range(1, 10)) + ")"
    width = max(1, len(str(rows - 1)))
    terms = " + ".join(f"{10**p} * d{p}.d" for p in range(width))
    joins = " CROSS JOIN ".join(f"{digits} AS d{p}" for p in range(width))
    return f"(SELECT 1 + {terms} AS n FROM {joins}) s WHERE n <= {rows}"


def seed_statements(family: str, count: int, rows: int) -> list[str]:
    """INSERT ... SELECT statements that load ``rows`` seed rows into each of the ``count`` tables."""
    if rows <= 0:
        return []
    concat = "CONCAT('seed', n)" if family == "mysql" else "'seed' || n"
    out = []
    for k in range(count):
        parent = "NULL" if _parent(k) is None else "n"
        out.append(
            f"INSERT INTO t{k} (id, parent_id, name, score) "
            f"SELECT n, {parent}, {concat}, n % 1000 FROM {_numbers(family, rows)}"
        )
    return out


def reset_statements(count: int) -> list[str]:
    """Statements that remove every row a test wrote (children first), keeping the seed."""
    return [f"DELETE FROM t{k} WHERE id >= {BASE_ID}" for k in reversed(range(min(count, GROUP)))]


def written_rows_query(count: int) -> str:
    """A query counting the rows tests wrote that are still in the database."""
    parts = [f"(SELECT count(*) FROM t{k} WHERE id >= {BASE_ID})" for k in range(min(count, GROUP))]
    return "SELECT " + " + ".join(parts)


def connect(url: DatabaseURL, *, autocommit: bool = False) -> Any:
    """A raw DB-API connection to ``url`` with the driver pytest-txscope uses for it, the one its scheme names
    or the default (foreign keys on for SQLite)."""
    if url.backend == "sqlite":
        # isolation_level "" is sqlite3's legacy default: a deferred BEGIN before the first write.
        conn = sqlite3.connect(url.database, isolation_level=None if autocommit else "")  # type: ignore[arg-type]
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    if url.driver == "psycopg2":
        import psycopg2

        conn = psycopg2.connect(
            host=url.host or "localhost",
            port=url.port or 5432,
            user=url.user,
            password=url.password,
            dbname=url.database or "postgres",
        )
        conn.autocommit = autocommit
        return conn
    if url.driver == "mysqldb":
        import MySQLdb

        return MySQLdb.connect(
            host=url.host or "localhost",
            port=url.port or 3306,
            user=url.user or "root",
            password=url.password or "",
            database=url.database or "",
            autocommit=autocommit,
        )
    if url.backend == "postgresql":
        import psycopg

        return psycopg.connect(
            host=url.host or "localhost",
            port=url.port or 5432,
            user=url.user,
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=autocommit,
        )
    import pymysql

    return pymysql.connect(
        host=url.host or "localhost",
        port=url.port or 3306,
        user=url.user or "root",
        password=url.password or "",
        database=url.database or None,
        autocommit=autocommit,
    )


def run_statements(conn: Any, statements: list[str]) -> None:
    """Run ``statements`` one by one on a raw connection, then commit."""
    cursor = conn.cursor()
    for statement in statements:
        cursor.execute(statement)
    cursor.close()
    conn.commit()


def server_version(conn: Any, family: str) -> str:
    """The server's version string (SQLite: the library's)."""
    if family == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    cursor = conn.cursor()
    cursor.execute("SELECT version()")
    version = str(cursor.fetchone()[0])
    cursor.close()
    conn.rollback()
    return version if family == "postgresql" else f"MariaDB/MySQL {version}"
