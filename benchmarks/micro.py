"""Micro-benchmark of the core, in one process: what one statement and one app commit cost.

Run by the harness (``python -m benchmarks.run``), or alone:

    python -m benchmarks.micro [URL] [--loops 2000] [--repeats 7] [--json out.json]

For one database it times, per call, inside one open transaction (interleaved over the repetitions; medians):

- ``SELECT 1`` and a one-row ``INSERT`` through the raw DB-API cursor (reused, and a new cursor per call, as
  ``tx.execute`` returns one), through ``with engine as tx: tx.execute(...)``, through a sandbox's session
  (what ``db_session`` is; statement savepoints as configured by default, and off), and through SQLAlchemy
  Core's ``connection.execute(text(...))``;
- one app commit inside the sandbox: a guest ``with app_engine as tx:`` block running one ``INSERT``, minus
  that ``INSERT`` alone inside an open block;
- one sandbox's life (start, one ``SELECT 1``, stop), what every test pays at least.

``SELECT 1`` through the reused raw cursor is the network round trip the other costs are compared with.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks import schema
from pytest_txscope import DatabaseURL, Engine, Sandbox

TABLE = "CREATE TABLE micro_t (id INTEGER PRIMARY KEY, name VARCHAR(20))"
_ids = itertools.count(1)


class _UndoError(Exception):
    """Raised at the end of a timed block so that its transaction rolls back."""


def _undo() -> None:
    raise _UndoError


def _params(family: str) -> tuple[str, str]:
    """The INSERT for the raw driver, and the portable one."""
    portable = "INSERT INTO micro_t (id, name) VALUES (:id, :name)"
    raw = portable if family == "sqlite" else "INSERT INTO micro_t (id, name) VALUES (%(id)s, %(name)s)"
    return raw, portable


class Micro:
    """The timed loops on one database; each returns seconds per call."""

    def __init__(self, url: DatabaseURL, loops: int) -> None:
        self.url = url
        self.family = url.backend
        self.loops = loops
        self.memory = self.family == "sqlite" and url.database == ":memory:"
        self.raw_insert, self.insert = _params(self.family)
        self.engine = Engine.from_url(url)
        self.app = Engine.from_url(url)
        self.raw = schema.connect(url, autocommit=True)
        self._table(self.raw)
        from sqlalchemy import create_engine, text

        from pytest_txscope.sqlalchemy import sqlalchemy_url

        self.sa_engine = create_engine(sqlalchemy_url(url))
        self.text = text
        if self.memory:
            with self.sa_engine.begin() as conn:
                conn.exec_driver_sql(TABLE)
            self.engine.executescript(TABLE)
        # Not timed: the first statements on each path (connections, server facts, statement caches).
        for op in self.operations().values():
            op(min(loops, 20))

    def _table(self, conn: Any) -> None:
        cursor = conn.cursor()
        if not self.memory:
            cursor.execute("DROP TABLE IF EXISTS micro_t")
        cursor.execute(TABLE)
        cursor.close()

    def close(self) -> None:
        """Drop the table and close every connection."""
        cursor = self.raw.cursor()
        cursor.execute("DROP TABLE IF EXISTS micro_t")
        cursor.close()
        self.raw.close()
        self.engine.dispose()
        self.app.dispose()
        self.sa_engine.dispose()

    def operations(self) -> dict[str, Callable[[int], float]]:
        """The timed operations by name."""
        return {
            "select_raw": lambda n: self._raw("SELECT 1", None, n, reuse=True),
            "select_raw_new_cursor": lambda n: self._raw("SELECT 1", None, n, reuse=False),
            "select_tx": lambda n: self._tx("SELECT 1", None, n),
            "select_sandbox": lambda n: self._sandbox("SELECT 1", None, n, protect=None),
            "select_sandbox_nosp": lambda n: self._sandbox("SELECT 1", None, n, protect=False),
            "select_sa": lambda n: self._sa("SELECT 1", None, n),
            "insert_raw": lambda n: self._raw(self.raw_insert, True, n, reuse=True),
            "insert_raw_new_cursor": lambda n: self._raw(self.raw_insert, True, n, reuse=False),
            "insert_tx": lambda n: self._tx(self.insert, True, n),
            "insert_sandbox": lambda n: self._sandbox(self.insert, True, n, protect=None),
            "insert_sandbox_nosp": lambda n: self._sandbox(self.insert, True, n, protect=False),
            "insert_sa": lambda n: self._sa(self.insert, True, n),
            "insert_in_block": self._in_block,
            "app_commit_block": self._app_block,
            "sandbox_cycle": self._cycle,
        }

    @staticmethod
    def _row(params: bool | None) -> dict[str, Any] | None:
        if not params:
            return None
        i = next(_ids)
        return {"id": i, "name": f"n{i}"}

    def _raw(self, sql: str, params: bool | None, n: int, *, reuse: bool) -> float:
        conn = self.raw
        cursor = conn.cursor()
        cursor.execute("BEGIN")
        start = time.perf_counter()
        for _ in range(n):
            if not reuse:
                cursor = conn.cursor()
            row = self._row(params)
            if row is None:
                cursor.execute(sql)
                cursor.fetchall()
            else:
                cursor.execute(sql, row)
        elapsed = time.perf_counter() - start
        conn.cursor().execute("ROLLBACK")
        return elapsed / n

    def _tx(self, sql: str, params: bool | None, n: int) -> float:
        elapsed = 0.0
        try:
            with self.engine as tx:
                tx.execute("SELECT 1").close()  # BEGIN goes with the first statement: not timed
                start = time.perf_counter()
                for _ in range(n):
                    cursor = tx.execute(sql, self._row(params))
                    if params is None:
                        cursor.fetchall()
                elapsed = time.perf_counter() - start
                _undo()
        except _UndoError:
            pass
        return elapsed / n

    def _sandbox(self, sql: str, params: bool | None, n: int, *, protect: bool | None) -> float:
        with Sandbox(self.engine, protect_statements=protect) as sandbox:
            session = sandbox.session()
            session.execute("SELECT 1").close()
            start = time.perf_counter()
            for _ in range(n):
                cursor = session.execute(sql, self._row(params))
                if params is None:
                    cursor.fetchall()
            return (time.perf_counter() - start) / n

    def _sa(self, sql: str, params: bool | None, n: int) -> float:
        statement = self.text(sql)
        with self.sa_engine.connect() as conn:
            conn.execute(self.text("SELECT 1")).fetchall()
            start = time.perf_counter()
            for _ in range(n):
                row = self._row(params)
                if row is None:
                    conn.execute(statement).fetchall()
                else:
                    conn.execute(statement, row)
            elapsed = time.perf_counter() - start
            conn.rollback()
        return elapsed / n

    def _in_block(self, n: int) -> float:
        """An INSERT inside an open block of the sandbox: the statement an app commit block runs."""
        with Sandbox(self.engine, engines=[self.app]), self.app as tx:
            tx.execute("SELECT 1").close()
            start = time.perf_counter()
            for _ in range(n):
                tx.execute(self.insert, self._row(True))
            elapsed = time.perf_counter() - start
        return elapsed / n

    def _app_block(self, n: int) -> float:
        """``with app_engine as tx: tx.execute(INSERT)`` in a sandbox: a savepoint, the INSERT, a release."""
        with Sandbox(self.engine, engines=[self.app]) as sandbox:
            sandbox.session().execute("SELECT 1").close()
            start = time.perf_counter()
            for _ in range(n):
                with self.app as tx:
                    tx.execute(self.insert, self._row(True))
            return (time.perf_counter() - start) / n

    def _cycle(self, n: int) -> float:
        """A sandbox's whole life with one statement: the least a test pays."""
        start = time.perf_counter()
        for _ in range(n):
            with Sandbox(self.engine) as sandbox:
                sandbox.session().execute("SELECT 1").fetchall()
        return (time.perf_counter() - start) / n


def measure(url: DatabaseURL, loops: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of every operation, one sample per repetition (interleaved)."""
    micro = Micro(url, loops)
    samples: dict[str, list[float]] = {name: [] for name in micro.operations()}
    try:
        for _ in range(repeats):
            for name, op in micro.operations().items():
                samples[name].append(op(loops))
    finally:
        micro.close()
    return samples


def main(argv: list[str] | None = None) -> None:
    """Command line: measure one URL and print (or write as JSON) the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", nargs="?", help="the database (default: $TXSCOPE_BENCH_URL)")
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the raw samples (seconds per call) to this file")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get("TXSCOPE_BENCH_URL")
    if not url:
        parser.error("give the database URL, or set $TXSCOPE_BENCH_URL")
    samples = measure(DatabaseURL.parse(url), args.loops, args.repeats)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(samples, out)
    for name, values in samples.items():
        print(f"{name:24} {statistics.median(values) * 1e6:9.1f} us", file=sys.stderr)


if __name__ == "__main__":
    main()
