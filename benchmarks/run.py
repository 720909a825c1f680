"""Run the benchmarks of issue 6 in one command, and regenerate the docs page's results.

    python -m benchmarks.run                       # the full configuration (see docs/benchmarks.md)
    python -m benchmarks.run --quick               # a smoke run of a few minutes: indicative only
    python -m benchmarks.run --from-json benchmarks/results.json   # redo the page from saved samples

Experiments (each interleaves its strategies A B C A B C ... over the repetitions):

- ``main``: 3 tables, N tests (``--n``), every strategy that applies to the backend;
- ``template``: PostgreSQL, a database cloned from a template per test (the harness's own, and pytest-postgresql's
  as its ``postgresql`` fixture does it), against no isolation (``--template-n``);
- ``scaling``: no isolation, txscope, DELETE, TRUNCATE, drop/create with more tables (``--scale-tables``) and
  with seed rows (``--scale-rows``), plus 3 empty tables at the same N as the base of comparison;
- ``xdist``: the txscope suite serial and under ``-n 2``, databases created by the plugin (``--xdist-n``);
- ``trips``: PostgreSQL, round trips per test of each main strategy, counted on the wire (`benchmarks.round_trips`,
  ``--trips-n``);
- ``micro``: the core's per-statement costs, in one process per backend (`benchmarks.micro`).

The databases are named ``<prefix>_<config>`` (``--db-prefix``; the name must look like a test database) and
dropped at the end. The raw samples go to ``--json``, the tables into ``<out>/benchmarks.md`` between its
markers, and the charts into ``<out>/img/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import analysis, charts, report, round_trips, suites
from benchmarks.cells import BIG_ROWS, Cell, estimate
from benchmarks.machine import machine
from benchmarks.suites import MAIN, SCALING, SERVERS, STRATEGIES, Config, Databases
from pytest_txscope import DatabaseURL
from pytest_txscope.provision import looks_like_test_database

FULL = {
    "n": "200,1000",
    "repeats": 5,
    "scale_tables": "30,100",
    "scale_rows": "10000,1000000",
    "scale_n": 200,
    "big_n": 50,
    "huge_n": 4,
    "scale_repeats": 3,
    "template_n": 50,
    "xdist_n": "500,2000,8000",
    "trips_n": 50,
    "micro_loops": 2000,
    "micro_repeats": 7,
}
QUICK = {
    "n": "50",
    "repeats": 2,
    "scale_tables": "30",
    "scale_rows": "10000",
    "scale_n": 30,
    "big_n": 30,
    "huge_n": 4,
    "scale_repeats": 2,
    "template_n": 10,
    "xdist_n": "200",
    "trips_n": 20,
    "micro_loops": 300,
    "micro_repeats": 3,
}


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the full (or ``--quick``) defaults filled in."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", default="sqlite-file,sqlite-memory,postgresql,mysql")
    parser.add_argument(
        "--strategies", default="all", help="comma-separated keys, or all: " + ", ".join(STRATEGIES)
    )
    parser.add_argument(
        "--skip", default="", help="experiments to leave out: main,template,scaling,xdist,trips,micro"
    )
    parser.add_argument("--quick", action="store_true", help="small N and few repetitions: a smoke run")
    parser.add_argument("--n", help=f"tests per suite in the main experiment (default {FULL['n']})")
    parser.add_argument("--repeats", type=int, help=f"repetitions (default {FULL['repeats']})")
    parser.add_argument("--scale-tables", help=f"table counts (default {FULL['scale_tables']})")
    parser.add_argument(
        "--scale-rows", help=f"seed rows per table, with 3 tables (default {FULL['scale_rows']})"
    )
    parser.add_argument("--scale-n", type=int, help=f"tests per scaling suite (default {FULL['scale_n']})")
    parser.add_argument(
        "--big-n",
        type=int,
        help=f"tests with >= 100 tables or >= {BIG_ROWS:,} rows (default {FULL['big_n']})",
    )
    parser.add_argument(
        "--huge-n",
        type=int,
        help=f"tests of DELETE, TRUNCATE and drop/create with >= {BIG_ROWS:,} rows (default {FULL['huge_n']})",
    )
    parser.add_argument(
        "--scale-repeats", type=int, help=f"scaling repetitions (default {FULL['scale_repeats']})"
    )
    parser.add_argument(
        "--template-n", type=int, help=f"tests of the template suite (default {FULL['template_n']})"
    )
    parser.add_argument(
        "--xdist-n",
        help=f"tests of the xdist suites, one suite per size: where -n 2 starts to pay (default {FULL['xdist_n']})",
    )
    parser.add_argument(
        "--trips-n",
        type=int,
        help=f"tests of the smaller run per strategy when counting round trips (default {FULL['trips_n']})",
    )
    parser.add_argument(
        "--micro-loops", type=int, help=f"calls per micro sample (default {FULL['micro_loops']})"
    )
    parser.add_argument("--micro-repeats", type=int, help=f"micro samples (default {FULL['micro_repeats']})")
    parser.add_argument(
        "--postgresql-url",
        default=os.environ.get(
            "TXSCOPE_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="the PostgreSQL server (its database part is ignored); also $TXSCOPE_BENCH_POSTGRESQL_URL",
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("TXSCOPE_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/"),
        help="the MySQL/MariaDB server (its database part is ignored); also $TXSCOPE_BENCH_MYSQL_URL",
    )
    parser.add_argument(
        "--aio-driver",
        default="",
        choices=["", *suites.AIO_DRIVER_CHOICES],
        help="the async strategies' driver on its backend instead of the default (psycopg on PostgreSQL)",
    )
    parser.add_argument("--db-prefix", default="txscope_bench_test", help="database names start with this")
    parser.add_argument("--out", default="docs", help="docs directory: <out>/benchmarks.md and <out>/img/")
    parser.add_argument("--json", default="benchmarks/results.json", help="where the raw samples go")
    parser.add_argument(
        "--workdir", help="where suites and SQLite files go (default: a new temporary directory)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--from-json", help="skip the runs: regenerate the page from this file of samples")
    parser.add_argument(
        "--estimate-from",
        help="skip the runs: predict how long the planned runs take from an earlier run's samples",
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not looks_like_test_database(args.db_prefix):
        parser.error(
            f"--db-prefix {args.db_prefix!r} does not look like a test database name; use e.g. app_bench_test"
        )
    return args


def _wanted(args: argparse.Namespace) -> set[str]:
    wanted = set(STRATEGIES) if args.strategies == "all" else set(args.strategies.split(","))
    unknown = wanted - set(STRATEGIES)
    if unknown:
        raise SystemExit(f"unknown strategies {sorted(unknown)}; use some of: {', '.join(STRATEGIES)}")
    return wanted


def plan(args: argparse.Namespace) -> list[Cell]:
    """Every cell the run measures, in the order it runs them."""
    backends = [b for b in args.backends.split(",") if b]
    for backend in backends:
        if backend not in analysis.BACKENDS:
            raise SystemExit(f"unknown backend {backend!r}; use some of: {', '.join(analysis.BACKENDS)}")
    wanted = _wanted(args)
    skip = set(args.skip.split(","))
    cells = []

    def pick(names: list[str], backend: str) -> tuple[str, ...]:
        chosen = [s for s in names if s in wanted and suites.applies(STRATEGIES[s], backend)]
        for s in chosen:  # a strategy always runs with its baseline
            base = STRATEGIES[s].baseline
            if base and base not in chosen:
                chosen.insert(0, base)
        return tuple(dict.fromkeys(sorted(chosen, key=list(STRATEGIES).index)))

    for backend in backends:
        if "main" not in skip:
            cells += [
                Cell("main", backend, Config(), n, pick(MAIN, backend), args.repeats) for n in _ints(args.n)
            ]
        per_test_database = ["template", "pgdatabase"]
        if "template" not in skip and set(per_test_database) & wanted and backend == "postgresql":
            strategies = pick(per_test_database, backend)
            cells.append(Cell("template", backend, Config(), args.template_n, strategies, args.repeats))
        if "scaling" not in skip:
            configs = [Config(t, 0) for t in _ints(args.scale_tables)] + [
                Config(3, r) for r in _ints(args.scale_rows)
            ]
            sized = [
                (c, args.big_n if c.tables >= 100 or c.rows >= BIG_ROWS else args.scale_n) for c in configs
            ]
            for n in sorted({n for _, n in sized}):
                sized.insert(0, (Config(), n))
            strategies = pick(SCALING, backend)
            cells += [
                Cell(
                    "scaling",
                    backend,
                    c,
                    n,
                    strategies,
                    args.scale_repeats,
                    args.huge_n if c.rows >= BIG_ROWS else 0,
                )
                for c, n in sized
            ]
        if "xdist" not in skip and {"xdist-serial", "xdist-n2"} & wanted:
            cells += [
                Cell("xdist", backend, Config(), n, ("xdist-serial", "xdist-n2"), args.repeats)
                for n in _ints(args.xdist_n)
            ]
    return [c for c in cells if c.strategies]


def run_cell(
    cell: Cell, dbs: Databases, workdir: Path, samples: list[dict[str, Any]], aio_driver: str = ""
) -> None:
    """Generate the cell's suites and run them, interleaved over the repetitions."""
    directories = {}
    for key in cell.strategies:
        strategy = STRATEGIES[key]
        # With provision, the plugin creates (and drops) the database, one per xdist worker.
        url = dbs.url(cell.backend, "xdist") if strategy.provision else dbs.build(cell.backend, cell.config)
        directories[key] = suites.generate(
            workdir / cell.name / key, strategy, url, cell.config, cell.tests(key), aio_driver=aio_driver
        )
    for rep in range(cell.repeats):
        for key in cell.strategies:
            strategy = STRATEGIES[key]
            if not strategy.provision:
                dbs.reset(cell.backend, cell.config)
            sample = suites.run_suite(directories[key], strategy)
            left = None if strategy.provision else dbs.written_rows(cell.backend, cell.config)
            tests = cell.tests(key)
            # The strategies without isolation keep their rows (none-fixture too, though it has a baseline).
            expected = 10 * tests if strategy.baseline is None or key == "none-fixture" else 0
            problem = ""
            if sample.returncode or sample.passed != tests or sample.failed:
                problem = f"pytest exit {sample.returncode}, {sample.passed} passed, {sample.failed} failed"
            elif left is not None and left != expected:
                problem = f"{left} rows written by the tests left in the database, expected {expected}"
            samples.append(
                {
                    "experiment": cell.experiment,
                    "backend": cell.backend,
                    "config": cell.config.key,
                    "tables": cell.config.tables,
                    "rows": cell.config.rows,
                    "n": cell.n,
                    "tests": tests,
                    "strategy": key,
                    "rep": rep,
                    "wall": sample.wall,
                    "per_test": sample.per_test,
                    "passed": sample.passed,
                    "failed": sample.failed,
                    "ok": not problem,
                    "problem": problem,
                }
            )
            per_test = analysis.fmt_time(sample.per_test)
            print(
                f"[{cell.name} {rep + 1}/{cell.repeats}] {key:15} {per_test:>10}/test  wall {sample.wall:6.2f} s"
                + (f"  FAILED: {problem}\n{sample.output}" if problem else ""),
                file=sys.stderr,
                flush=True,
            )


def run_micro(
    backend: str, dbs: Databases, args: argparse.Namespace, workdir: Path
) -> dict[str, list[float]]:
    """The micro-benchmark of one backend, in a process of its own."""
    url = dbs.create(backend, "micro") if backend != "sqlite-memory" else dbs.url(backend, "micro")
    if backend in SERVERS:
        dbs.built[(backend, "micro")] = url
    out = workdir / f"micro-{backend}.json"
    env = dict(os.environ, PYTHONPATH=str(suites.REPO), TXSCOPE_BENCH_URL=suites.url_text(url))
    command = [sys.executable, "-m", "benchmarks.micro", "--loops", str(args.micro_loops)]
    command += ["--repeats", str(args.micro_repeats), "--json", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - ours
    if done.returncode:
        print(f"[micro {backend}] FAILED:\n{done.stderr[-3000:]}", file=sys.stderr)
        return {}
    print(f"[micro {backend}]\n{done.stderr.rstrip()}", file=sys.stderr, flush=True)
    return dict(json.loads(out.read_text()))


def publish(data: dict[str, Any], out: Path) -> None:
    """Write the page's generated part and the charts."""
    results = analysis.Results(data)
    images = charts.draw(results, out / "img")
    relative = {name: path.relative_to(out).as_posix() for name, path in images.items()}
    report.write_page(out / "benchmarks.md", report.markdown(results, relative))
    print(f"wrote {out / 'benchmarks.md'} and {', '.join(str(p) for p in images.values())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run everything the command line asks for, then publish."""
    args = parse(argv)
    if args.from_json:
        publish(json.loads(Path(args.from_json).read_text()), Path(args.out))
        return
    cells = plan(args)
    if args.estimate_from:
        guess = estimate(cells, json.loads(Path(args.estimate_from).read_text()))
        runs = sum(c.repeats * len(c.strategies) for c in cells)
        print(
            f"{len(cells)} cells, {runs} pytest runs: about {guess / 60:.0f} min, plus loading seed rows and micro"
        )
        return
    backends = [b for b in args.backends.split(",") if b]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="txscope-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    servers = {
        "postgresql": DatabaseURL.parse(args.postgresql_url),
        "mysql": DatabaseURL.parse(args.mysql_url),
    }
    dbs = Databases(servers, args.db_prefix, workdir)
    started = time.perf_counter()
    data: dict[str, Any] = {"meta": {}, "samples": [], "micro": {}}
    argv_text = shlex.join(argv if argv is not None else sys.argv[1:])
    data["meta"] = {
        "command": f"python -m benchmarks.run {argv_text}".strip(),
        "quick": args.quick,
        "machine": machine(dbs, backends),
        "settings": {k: v for k, v in vars(args).items() if k in FULL or k == "aio_driver"},
        "cells": [asdict(c) for c in cells],
    }
    print(
        f"{len(cells)} cells, {sum(c.repeats * len(c.strategies) for c in cells)} pytest runs",
        file=sys.stderr,
    )
    try:
        for cell in cells:
            run_cell(cell, dbs, workdir, data["samples"], args.aio_driver)
        if "trips" not in args.skip.split(",") and "postgresql" in backends:
            # Counted on the wire, not timed: exact whatever the load (see benchmarks.round_trips).
            keys = [k for k in MAIN if k in _wanted(args)]
            data["trips"] = round_trips.count_all(dbs, workdir / "trips", keys, args.trips_n)
            print(f"[trips postgresql] {data['trips']}", file=sys.stderr, flush=True)
        if "micro" not in args.skip.split(","):
            for backend in backends:
                data["micro"][backend] = run_micro(backend, dbs, args, workdir)
    finally:
        dbs.drop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    minutes, seconds = divmod(int(time.perf_counter() - started), 60)
    data["meta"]["duration"] = f"{minutes} min {seconds} s"
    if hasattr(os, "getloadavg"):
        data["meta"]["machine"]["Load average at the end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(data, indent=1))
    print(f"samples in {args.json}; took {data['meta']['duration']}", file=sys.stderr)
    publish(data, Path(args.out))


if __name__ == "__main__":
    main()
