"""Micro-benchmark of the sandbox's DB-API connection (`Sandbox.connection()`): what one statement costs.

    python -m benchmarks.dbapi_cursor [URL] [--loops 2000] [--repeats 7]

Times, per call, ``SELECT 1`` (fetched) and a one-row ``INSERT`` through a cursor of the sandbox connection, in
its default mode (inside the app's savepoint) and in autocommit mode, next to the same statements on the raw
driver cursor inside one open transaction (the network round trip). Medians over interleaved repetitions.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks import schema
from pytest_txscope import DatabaseURL, Engine, Sandbox

TABLE = "CREATE TABLE micro_d (id INTEGER PRIMARY KEY, name VARCHAR(20))"
_ids = itertools.count(1)


def _insert(family: str) -> str:
    if family == "sqlite":
        return "INSERT INTO micro_d (id, name) VALUES (:id, :name)"
    return "INSERT INTO micro_d (id, name) VALUES (%(id)s, %(name)s)"


def _row(params: bool) -> dict[str, Any] | None:
    if not params:
        return None
    i = next(_ids)
    return {"id": i, "name": f"n{i}"}


def _loop(cursor: Any, sql: str, params: bool, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        row = _row(params)
        if row is None:
            cursor.execute(sql)
            cursor.fetchall()
        else:
            cursor.execute(sql, row)
    return (time.perf_counter() - start) / n


def operations(url: DatabaseURL, engine: Engine, raw: Any) -> dict[str, Callable[[int], float]]:
    """The timed operations by name."""
    insert = _insert(url.backend)

    def on_raw(sql: str, params: bool) -> Callable[[int], float]:
        def run(n: int) -> float:
            cursor = raw.cursor()
            cursor.execute("BEGIN")
            try:
                return _loop(cursor, sql, params, n)
            finally:
                raw.cursor().execute("ROLLBACK")

        return run

    def on_sandbox(sql: str, params: bool, *, autocommit: bool) -> Callable[[int], float]:
        def run(n: int) -> float:
            with Sandbox(engine) as sandbox:
                conn = sandbox.connection({"autocommit": True} if autocommit else None)
                cursor = conn.cursor()
                cursor.execute("SELECT 1")
                cursor.fetchall()
                return _loop(cursor, sql, params, n)

        return run

    ops = {
        "select_raw": on_raw("SELECT 1", False),
        "select_dbapi": on_sandbox("SELECT 1", False, autocommit=False),
        "insert_raw": on_raw(insert, True),
        "insert_dbapi": on_sandbox(insert, True, autocommit=False),
    }
    if os.environ.get("TXSCOPE_BENCH_AUTOCOMMIT", "1") == "1":
        ops["select_dbapi_autocommit"] = on_sandbox("SELECT 1", False, autocommit=True)
        ops["insert_dbapi_autocommit"] = on_sandbox(insert, True, autocommit=True)
    return ops


def main(argv: list[str] | None = None) -> None:
    """Command line: measure one URL and print the medians (microseconds per statement)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", nargs="?", help="the database (default: $TXSCOPE_BENCH_URL)")
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    text = args.url or os.environ.get("TXSCOPE_BENCH_URL")
    if not text:
        parser.error("give the database URL, or set $TXSCOPE_BENCH_URL")
    url = DatabaseURL.parse(text)
    engine = Engine.from_url(url)
    raw = schema.connect(url, autocommit=True)
    cursor = raw.cursor()
    cursor.execute("DROP TABLE IF EXISTS micro_d")
    cursor.execute(TABLE)
    try:
        ops = operations(url, engine, raw)
        for op in ops.values():
            op(min(args.loops, 20))  # not timed: connections, caches
        samples: dict[str, list[float]] = {name: [] for name in ops}
        for _ in range(args.repeats):
            for name, op in ops.items():
                samples[name].append(op(args.loops))
    finally:
        raw.cursor().execute("DROP TABLE IF EXISTS micro_d")
        raw.close()
        engine.dispose()
    for name, values in samples.items():
        print(f"{name:26} {statistics.median(values) * 1e6:9.1f} us", file=sys.stderr)


if __name__ == "__main__":
    main()
