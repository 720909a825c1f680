"""What per-statement protection (statement savepoints) costs, against one network round trip.

Run:  python -m benchmarks.statement_savepoints URL [URL ...]
e.g.  python -m benchmarks.statement_savepoints postgresql://postgres@127.0.0.1:5432/txscope_test \
          postgresql+psycopg2://postgres@127.0.0.1:5432/txscope_test \
          postgresql+psycopg_async://postgres@127.0.0.1:5432/txscope_test \
          mysql://root@127.0.0.1:3306/txscope_test sqlite:////tmp/bench_test.db

For each URL it runs, inside a sandbox, N single-row INSERTs through the test's session with protection off,
on, and on with the control statements sent in a round trip of their own before each statement (how every
dialect sent them before they rode with the statement; the same as "on" where the dialect cannot combine),
interleaved over several repetitions, and N ``SELECT 1`` round trips, and prints medians per statement. On
PostgreSQL it also counts the round trips of one protected INSERT on the wire (`benchmarks.wire`). An asyncio
driver's URL runs the sync core over it, through the greenlet bridge, as the asyncio API does.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.wire import RoundTripCounter
from pytest_txscope import AsyncEngine, DatabaseURL, Engine, Sandbox
from pytest_txscope.bridge import run_sync

N = 1000
REPEATS = 7
INSERT = "INSERT INTO bench_stmt (id, name) VALUES (:id, :name)"


def _inserts(engine: Engine, protect: bool, combine: bool = True) -> float:
    dialect = engine.dialect
    saved = getattr(dialect, "combines_control", False)  # absent before control rode with the statement
    dialect.combines_control = saved and combine  # the instance's flag, for this measurement only
    try:
        with Sandbox(engine, protect_statements=protect) as sandbox:
            session = sandbox.session()
            session.execute("SELECT 1").close()  # BEGIN is sent with the first statement: not measured
            start = time.perf_counter()
            for i in range(N):
                session.execute(INSERT, {"id": i, "name": f"n{i}"})
            return (time.perf_counter() - start) / N
    finally:
        dialect.combines_control = saved


def _round_trips(engine: Engine) -> float:
    with engine.session() as session:
        session.execute("SELECT 1").close()
        start = time.perf_counter()
        for _ in range(N):
            session.execute("SELECT 1").close()
        return (time.perf_counter() - start) / N


def _counted(engine: Engine, counter: RoundTripCounter) -> int:
    """Round trips of the 2nd to 11th protected INSERT of a sandbox, per statement."""
    with Sandbox(engine, protect_statements=True) as sandbox:
        session = sandbox.session()
        session.execute(INSERT, {"id": 0, "name": "n0"})
        before = counter.count
        for i in range(1, 11):
            session.execute(INSERT, {"id": i, "name": f"n{i}"})
        return (counter.count - before) // 10


def _measure(engine: Engine, url: str) -> str:
    engine.executescript(
        "DROP TABLE IF EXISTS bench_stmt; CREATE TABLE bench_stmt (id INTEGER PRIMARY KEY, name VARCHAR(20))"
    )
    runs: dict[str, list[float]] = {"off": [], "on": [], "apart": [], "trip": []}
    for _ in range(REPEATS):  # interleaved: the machine is shared and noisy
        runs["off"].append(_inserts(engine, False))
        runs["on"].append(_inserts(engine, True))
        runs["apart"].append(_inserts(engine, True, combine=False))
        runs["trip"].append(_round_trips(engine))
    engine.executescript("DROP TABLE bench_stmt")
    m = {name: statistics.median(values) for name, values in runs.items()}
    return (
        f"{engine.dialect.display} ({engine.dialect.driver_display}{', asyncio' if 'async' in url else ''}): "
        f"insert, protection off {m['off'] * 1e6:6.1f} us | on {m['on'] * 1e6:6.1f} us "
        f"({m['on'] / m['off']:4.2f}x off) | control apart {m['apart'] * 1e6:6.1f} us "
        f"({m['apart'] / m['off']:4.2f}x off; on = {m['on'] / m['apart']:4.2f}x apart) | "
        f"cost {(m['on'] - m['off']) / m['trip']:4.2f} round trips (SELECT 1 = {m['trip'] * 1e6:5.1f} us)"
    )


def _with_engine(url: str, work: Callable[[Engine], Any]) -> Any:
    """``work(engine)`` on a sync engine for ``url``; for an asyncio driver, its `AsyncEngine`'s sync core run
    through the greenlet bridge on an event loop."""
    parsed = DatabaseURL.parse(url)
    if parsed.sync_driver == parsed.driver:
        engine = Engine.from_url(url)
        try:
            return work(engine)
        finally:
            engine.dispose()

    async def run() -> Any:
        async_engine = AsyncEngine.from_url(url)
        try:
            return await run_sync(work, async_engine.sync_engine)
        finally:
            await async_engine.dispose()

    return asyncio.run(run())


def measure(url: str) -> None:
    line = _with_engine(url, lambda engine: _measure(engine, url))
    parsed = DatabaseURL.parse(url)
    if parsed.backend == "postgresql":
        with RoundTripCounter(parsed.host or "127.0.0.1", parsed.port or 5432) as counter:
            trips = _with_engine(counter.route(url), lambda engine: _count_in_table(engine, counter))
        line += f" | round trips per protected INSERT: {trips}"
    print(line)


def _count_in_table(engine: Engine, counter: RoundTripCounter) -> int:
    engine.executescript(
        "DROP TABLE IF EXISTS bench_stmt; CREATE TABLE bench_stmt (id INTEGER PRIMARY KEY, name VARCHAR(20))"
    )
    try:
        return _counted(engine, counter)
    finally:
        engine.executescript("DROP TABLE bench_stmt")


if __name__ == "__main__":
    for target in sys.argv[1:]:
        measure(target)
