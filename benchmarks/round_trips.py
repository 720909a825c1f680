"""Round trips per test on PostgreSQL, for each strategy of the main experiment, counted on the wire.

    python -m benchmarks.round_trips postgresql://postgres@127.0.0.1:5432/postgres [--n 100] \
        [--db-prefix txscope_bench_test] [strategy ...]

Each strategy's suite (the harness's, `benchmarks.suites`) runs once with N tests and once with 2N, its URL
routed through `benchmarks.wire.RoundTripCounter`; the difference over N is the round trips of one test, what
the runs' start (connecting, the plugin's checks) costs once being taken out. Not timed: the counts are exact
and do not depend on the machine's load. The database is ``<prefix>_t3``, dropped at the end.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.suites import MAIN, STRATEGIES, Config, Databases, applies, generate, run_suite, url_text
from benchmarks.wire import RoundTripCounter
from pytest_txscope import DatabaseURL
from pytest_txscope.provision import looks_like_test_database

BACKEND = "postgresql"


def per_test(dbs: Databases, counter: RoundTripCounter, workdir: Path, key: str, n: int) -> float:
    """Round trips of one test of strategy ``key`` (runs of ``n`` and ``2 n`` tests)."""
    strategy = STRATEGIES[key]
    config = Config()
    url = DatabaseURL.parse(counter.route(url_text(dbs.build(BACKEND, config))))
    counts = []
    for tests in (n, 2 * n):
        dbs.reset(BACKEND, config)
        directory = generate(workdir / f"{key}-{tests}", strategy, url, config, tests)
        before = counter.count
        sample = run_suite(directory, strategy)
        if sample.returncode or sample.passed != tests:
            raise RuntimeError(
                f"{key}: pytest exit {sample.returncode}, {sample.passed} passed\n{sample.output}"
            )
        counts.append(counter.count - before)
    return (counts[1] - counts[0]) / n


def count_all(dbs: Databases, workdir: Path, keys: list[str], n: int) -> dict[str, float]:
    """Round trips per test of each strategy in ``keys`` that runs on PostgreSQL, through one proxy."""
    server = dbs.servers[BACKEND]
    keys = [k for k in keys if applies(STRATEGIES[k], BACKEND)]
    with RoundTripCounter(server.host or "127.0.0.1", server.port or 5432) as counter:
        return {key: per_test(dbs, counter, workdir, key, n) for key in keys}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a PostgreSQL server (any database: the benchmark creates its own)")
    parser.add_argument("strategies", nargs="*", help="strategy keys (default: the main experiment's)")
    parser.add_argument("--n", type=int, default=100, help="tests in the smaller run")
    parser.add_argument("--db-prefix", default="txscope_bench_test", help="database names start with this")
    args = parser.parse_intermixed_args(argv)
    if not looks_like_test_database(args.db_prefix):
        parser.error(f"--db-prefix {args.db_prefix!r} does not look like a test database name")
    server = DatabaseURL.parse(args.url)
    keys = args.strategies or [k for k in MAIN if applies(STRATEGIES[k], BACKEND)]
    with tempfile.TemporaryDirectory() as tmp:
        dbs = Databases({BACKEND: server}, args.db_prefix, Path(tmp))
        try:
            for key, trips in count_all(dbs, Path(tmp), keys, args.n).items():
                print(f"{key:15} {STRATEGIES[key].label:45} {trips:6.2f} round trips per test", flush=True)
        finally:
            dbs.drop_all()


if __name__ == "__main__":
    main()
