"""The async FastAPI example suite, run three ways in one interleaved run: medians and ratios, printed.

    python -m benchmarks.fastapi_async_suite                      # SQLite and PostgreSQL, 7 rounds
    python -m benchmarks.fastapi_async_suite --from-json samples.json   # redo the tables only

The same test files of ``examples/fastapi_async`` run with pytest-txscope (the example as it is), with
hand-written fixtures that delete every table's rows after each test, with hand-written fixtures and no
isolation at all, and with SQLAlchemy's async "join an external transaction"
recipe (see `benchmarks.fastapi_async_fixtures`). Each round runs the three once, as whole ``python -m pytest``
processes, in an order that rotates from round to round; a first round warms the caches and is not counted.
Each run gives its wall time and pytest's own duration (the ``in X s`` of its last line), which leaves out the
interpreter's and the plugins' start-up. The tables are printed, not written into the documentation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.analysis import DASH, Spread, X, fmt_spread, fmt_time
from benchmarks.fastapi_async_fixtures import copy_example
from benchmarks.fastapi_suite import run_once, server_databases
from benchmarks.suites import url_text
from pytest_txscope import DatabaseURL
from pytest_txscope.provision import looks_like_test_database

WAYS = {
    "txscope": "pytest-txscope",
    "delete": "hand-written fixtures (DELETE after each test)",
    "recipe": "SQLAlchemy recipe (create_savepoint)",
    "none": "no isolation",
}
BACKENDS = {"sqlite": "SQLite (file, aiosqlite)", "postgresql": "PostgreSQL (psycopg async)"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fastapi_async_suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="some of: " + ", ".join(BACKENDS))
    parser.add_argument("--repeats", type=int, default=7, help="counted rounds (default 7)")
    parser.add_argument(
        "--postgresql-url",
        default=os.environ.get(
            "TXSCOPE_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="the PostgreSQL server (its database part is ignored); also $TXSCOPE_BENCH_POSTGRESQL_URL",
    )
    parser.add_argument(
        "--db-prefix", default="txscope_bench_fastapi_async_test", help="database names start so"
    )
    parser.add_argument("--json", help="also save the samples there")
    parser.add_argument("--from-json", help="skip the runs: print the tables of these samples")
    args = parser.parse_args(argv)
    if not looks_like_test_database(args.db_prefix):
        parser.error(f"--db-prefix {args.db_prefix!r} does not look like a test database name")
    return args


def environment(way: str, backend: str, server: DatabaseURL, prefix: str, directory: Path) -> dict[str, str]:
    """The environment of one way's pytest run: the database it is told about, and nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TXSCOPE_", "APP_", "PYTEST_"))}
    # Bytecode caches on, as on a user's machine: without them an editable install recompiles every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if way == "txscope":
        if backend == "postgresql":  # on SQLite, the plugin's embedded default
            env["TXSCOPE_URL"] = url_text(server.with_database(f"{prefix}_txscope"))
    elif backend == "postgresql":
        url = url_text(server.with_database(f"{prefix}_{way}"))
        env["APP_DATABASE_URL"] = url.replace("postgresql://", "postgresql+psycopg://", 1)
    else:
        env["APP_DATABASE_URL"] = f"sqlite+aiosqlite:///{directory / 'test.db'}"
    return env


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """The interleaved rounds on one backend; round 0 is the warm-up."""
    server = DatabaseURL.parse(args.postgresql_url)
    hand = [f"{args.db_prefix}_{way}" for way in WAYS if way != "txscope"]
    if backend == "postgresql":
        server_databases(server, hand, create=True)
    ways = list(WAYS)
    dirs = {way: copy_example(workdir / f"{backend}-{way}", way) for way in ways}
    samples = []
    try:
        for round_ in range(args.repeats + 1):
            for i in range(len(ways)):
                way = ways[(round_ + i) % len(ways)]
                env = environment(way, backend, server, args.db_prefix, dirs[way])
                sample = run_once(dirs[way], env)
                sample.update(backend=backend, way=way, round=round_)
                print(json.dumps(sample), file=sys.stderr)
                samples.append(sample)
    finally:
        if backend == "postgresql":
            server_databases(server, hand, create=False)
    return samples


def _spread(samples: list[dict[str, Any]], field: str) -> Spread | None:
    return Spread.of(s[field] for s in samples if s[field] is not None)


def _ratio(a: Spread | None, b: Spread | None) -> str:
    return f"{a.median / b.median:.2f}{X}" if a and b else DASH


def _tests(samples: list[dict[str, Any]]) -> str:
    kinds = ("passed", "failed", "error")
    seen = {tuple(s[k] for k in kinds) for s in samples}
    names = ("passed", "failed", "errors")
    return "; ".join(", ".join(f"{n} {k}" for n, k in zip(c, names, strict=True) if n) for c in sorted(seen))


def table(samples: list[dict[str, Any]], backend: str) -> list[str]:
    """The markdown table of one backend: wall and pytest's own time, ratios of medians."""
    counted = [s for s in samples if s["backend"] == backend and s["round"] > 0]
    by_way = {way: [s for s in counted if s["way"] == way] for way in WAYS}
    wall = {way: _spread(runs, "wall") for way, runs in by_way.items()}
    own = {way: _spread(runs, "pytest") for way, runs in by_way.items()}
    bases = ("delete", "recipe", "none")
    heads = " | ".join(f"vs {WAYS[base].split(' (')[0]}" for base in bases)
    lines = [
        f"**{BACKENDS[backend]}**, {len(by_way['txscope'])} runs of each: median (min {DASH} max).",
        "",
        f"| Way | Tests | Wall | {heads} | pytest's own time | {heads} | Start-up (wall - own) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for way, runs in by_way.items():
        start_up = Spread.of(s["wall"] - s["pytest"] for s in runs if s["pytest"] is not None)
        cells = [
            WAYS[way],
            _tests(runs),
            fmt_spread(wall[way]),
            *(_ratio(wall[way], wall[base]) for base in bases),
            fmt_spread(own[way]),
            *(_ratio(own[way], own[base]) for base in bases),
            fmt_time(start_up.median if start_up else None),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def report(data: dict[str, Any]) -> str:
    """The tables of every backend run, with how they were made."""
    meta = data["meta"]
    lines = [f"*`{meta['command']}` on {meta['date']}, in {meta['duration']}.*", ""]
    for backend in BACKENDS:
        if any(s["backend"] == backend for s in data["samples"]):
            lines += table(data["samples"], backend)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the rounds the command line asks for, and print the tables (and save the samples if asked)."""
    args = parse(argv)
    if args.from_json:
        print(report(json.loads(Path(args.from_json).read_text())))
        return
    started = time.perf_counter()
    argv_text = shlex.join(argv if argv is not None else sys.argv[1:])
    data: dict[str, Any] = {
        "meta": {
            "command": f"python -m benchmarks.fastapi_async_suite {argv_text}".strip(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "samples": [],
    }
    with tempfile.TemporaryDirectory(prefix="txscope-fastapi-async-bench-") as workdir:
        for backend in (b for b in args.backends.split(",") if b):
            if backend not in BACKENDS:
                raise SystemExit(f"unknown backend {backend!r}; use some of: {', '.join(BACKENDS)}")
            data["samples"] += run_backend(backend, args, Path(workdir))
    minutes, seconds = divmod(int(time.perf_counter() - started), 60)
    data["meta"]["duration"] = f"{minutes} min {seconds} s"
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    print(report(data))


if __name__ == "__main__":
    main()
