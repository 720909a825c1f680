"""What the sqlite3 face costs: one query of 20 rows with a TIMESTAMP column, fetched as ``sqlite3.Row``.

    python -m benchmarks.sqlite_face [--loops 2000] [--repeats 7]

Per call, inside one open transaction on a file database (interleaved over the repetitions; medians):

- the driver's own connection, without and with ``detect_types=PARSE_DECLTYPES``;
- the shared `SandboxConnection` (no face: what ``db_sandbox.connection()`` was before faces);
- the sqlite3 face without ``detect_types`` (the common path: sqlite3 converts and builds rows in C);
- the face with ``detect_types=PARSE_DECLTYPES`` (declared types read by preparing the statement again, the
  values converted in Python).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_txscope import Engine
from pytest_txscope.dbapi import SandboxConnection
from pytest_txscope.sandbox import Sandbox

QUERY = "SELECT id, title, created FROM post ORDER BY id"


def _setup(path: Path) -> None:
    real = sqlite3.connect(path)
    real.execute("CREATE TABLE post (id INTEGER PRIMARY KEY, title TEXT, created TIMESTAMP)")
    real.executemany(
        "INSERT INTO post (title, created) VALUES (?, '2024-01-02 03:04:05')", [(f"t{i}",) for i in range(20)]
    )
    real.commit()
    real.close()


def _query(connection: Any) -> Callable[[], object]:
    connection.row_factory = sqlite3.Row

    def run() -> object:
        return connection.execute(QUERY).fetchall()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "face.db"
        _setup(path)
        engine = Engine.from_url(f"sqlite:///{path}")
        plain = sqlite3.connect(path)
        declared = sqlite3.connect(path, detect_types=sqlite3.PARSE_DECLTYPES)
        with Sandbox(engine) as sandbox:
            shared = SandboxConnection(sandbox.session())
            cases = {
                "sqlite3": _query(plain),
                "sqlite3, PARSE_DECLTYPES": _query(declared),
                "SandboxConnection (no face)": _query(shared),
                "face": _query(sandbox.connection({})),
                "face, PARSE_DECLTYPES": _query(
                    sandbox.connection({"detect_types": sqlite3.PARSE_DECLTYPES})
                ),
            }
            timings: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.repeats):
                for name, run in cases.items():
                    start = time.perf_counter()
                    for _ in range(args.loops):
                        run()
                    timings[name].append((time.perf_counter() - start) / args.loops)
        engine.dispose()
        plain.close()
        declared.close()
    base = statistics.median(timings["sqlite3"])
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:32} {median * 1e6:8.1f} µs  {median / base:5.2f}x")


if __name__ == "__main__":
    main()
