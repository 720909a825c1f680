"""What per-statement protection (statement savepoints) costs, against one network round trip.

Run:  python benchmarks/statement_savepoints.py URL [URL ...]
e.g.  python benchmarks/statement_savepoints.py postgresql://postgres@127.0.0.1:5432/txscope_test \
          mysql://root@127.0.0.1:3306/txscope_test sqlite:////tmp/bench_test.db

For each URL it runs, inside a sandbox, N single-row INSERTs through the test's session with protection on and
off (interleaved, several repetitions), and N ``SELECT 1`` round trips, and prints medians per statement.
"""

from __future__ import annotations

import statistics
import sys
import time

from pytest_txscope import Engine, Sandbox

N = 500
REPEATS = 7


def _inserts(engine: Engine, protect: bool) -> float:
    with Sandbox(engine, protect_statements=protect) as sandbox:
        session = sandbox.session()
        session.execute("SELECT 1").close()  # BEGIN is sent with the first statement: not measured
        start = time.perf_counter()
        for i in range(N):
            session.execute(
                "INSERT INTO bench_stmt (id, name) VALUES (:id, :name)", {"id": i, "name": f"n{i}"}
            )
        return (time.perf_counter() - start) / N


def _round_trips(engine: Engine) -> float:
    with engine.session() as session:
        session.execute("SELECT 1").close()
        start = time.perf_counter()
        for _ in range(N):
            session.execute("SELECT 1").close()
        return (time.perf_counter() - start) / N


def measure(url: str) -> None:
    engine = Engine.from_url(url)
    engine.executescript(
        "DROP TABLE IF EXISTS bench_stmt; CREATE TABLE bench_stmt (id INTEGER PRIMARY KEY, name VARCHAR(20))"
    )
    on: list[float] = []
    off: list[float] = []
    trips: list[float] = []
    for _ in range(REPEATS):  # interleaved: the machine is shared and noisy
        off.append(_inserts(engine, False))
        on.append(_inserts(engine, True))
        trips.append(_round_trips(engine))
    engine.executescript("DROP TABLE bench_stmt")
    engine.dispose()
    m_on, m_off, m_trip = statistics.median(on), statistics.median(off), statistics.median(trips)
    print(
        f"{engine.dialect.display:14} insert, protection off {m_off * 1e6:8.1f} us | on {m_on * 1e6:8.1f} us | "
        f"cost {(m_on - m_off) * 1e6:7.1f} us/statement = {(m_on - m_off) / m_trip:4.2f} round trips "
        f"(SELECT 1 = {m_trip * 1e6:6.1f} us) | ratio {m_on / m_off:4.2f}x"
    )


if __name__ == "__main__":
    for target in sys.argv[1:]:
        measure(target)
