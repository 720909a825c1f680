"""The generated part of the benchmarks page, from the samples of a run.

It reads only the JSON the harness writes (``benchmarks/results.json``), so that the page can be regenerated
without running again: ``python -m benchmarks.run --from-json benchmarks/results.json``. The page's prose is
kept; only the part between the BEGIN and END markers is replaced.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from benchmarks.analysis import BACKENDS, DASH, Key, Results, X, fmt_spread, fmt_time
from benchmarks.suites import STRATEGIES
from benchmarks.targets import status, targets

BEGIN, END = "<!-- BEGIN GENERATED RESULTS -->", "<!-- END GENERATED RESULTS -->"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _machine(results: Results) -> list[str]:
    meta = results.meta
    rows = [[k, str(v)] for k, v in meta["machine"].items()]
    return _table(["", ""], rows)


def _main_tables(results: Results, experiment: str) -> list[str]:
    out: list[str] = []
    by_n: dict[int, list[Key]] = defaultdict(list)
    for key in results.keys(experiment):
        by_n[key[3]].append(key)
    for n, keys in sorted(by_n.items()):
        strategies = [s for s in STRATEGIES if any(results.runs(k, s) for k in keys)]
        out += [
            f"**N = {n}**: overhead per test against the baseline, paired median (and ratio of the times).",
            "",
        ]
        header = ["Strategy", *(BACKENDS[k[1]] for k in keys)]
        rows = []
        for strategy in strategies:
            cells = []
            for key in keys:
                over = results.overhead(key, strategy)
                ratio = results.paired(key, strategy, "per_test", "ratio")
                if over is None:
                    time = results.per_test(key, strategy)
                    cells.append(f"baseline: {fmt_time(time.median)}/test" if time else DASH)
                else:
                    cells.append(
                        f"{fmt_time(over.median)} ({ratio.median:.2f}{X})" if ratio else fmt_time(over.median)
                    )
            rows.append([STRATEGIES[strategy].label, *cells])
        out += _table(header, rows)
    return out


def _detail_tables(results: Results, experiment: str) -> list[str]:
    out: list[str] = []
    for key in results.keys(experiment):
        _, backend, config, n = key
        out += [f"**{BACKENDS[backend]}, {config}, N = {n}**", ""]
        rows = []
        for strategy in STRATEGIES:
            if not results.runs(key, strategy):
                continue
            rows.append(
                [
                    STRATEGIES[strategy].label,
                    fmt_spread(results.per_test(key, strategy)),
                    fmt_spread(results.overhead(key, strategy)),
                    fmt_spread(results.paired(key, strategy, "per_test", "ratio"), ratio=True),
                    fmt_spread(results.wall(key, strategy)),
                    fmt_spread(results.paired(key, strategy, "wall", "ratio"), ratio=True),
                ]
            )
        header = [
            "Strategy",
            "time per test",
            "overhead per test",
            "ratio",
            "wall (pytest process)",
            "wall ratio",
        ]
        out += _table(header, rows)
    return out


def _scaling_tables(results: Results) -> list[str]:
    out: list[str] = []
    for backend, title in BACKENDS.items():
        keys = [k for k in results.keys("scaling") if k[1] == backend]
        if not keys:
            continue
        keys.sort(key=lambda k: (k[3], "-r" in k[2], int(k[2].split("-")[0][1:]), k[2]))
        strategies = [s for s in STRATEGIES if any(results.runs(k, s) for k in keys)]
        header = ["Strategy", *(f"{k[2]}, N = {results.sizes(k)}" for k in keys)]
        rows = []
        for strategy in strategies:
            cells = []
            for key in keys:
                over = results.overhead(key, strategy)
                time = results.per_test(key, strategy)
                if over is None:
                    cells.append(f"{fmt_time(time.median)}/test" if time else DASH)
                    continue
                base = results.overhead(("scaling", backend, "t3", key[3]), strategy)
                growth = (
                    f" ({over.median / base.median:.2f}{X})"
                    if base and base.median > 0 and over.median > 0 and key[2] != "t3"
                    else ""
                )
                cells.append(fmt_time(over.median) + growth)
            rows.append([STRATEGIES[strategy].label, *cells])
        out += [f"**{title}**", "", *_table(header, rows)]
    return out


def _xdist_table(results: Results) -> list[str]:
    rows = []
    for key in results.keys("xdist"):
        rows.append(
            [
                BACKENDS[key[1]],
                str(key[3]),
                fmt_spread(results.wall(key, "xdist-serial")),
                fmt_spread(results.wall(key, "xdist-n2")),
                fmt_spread(results.paired(key, "xdist-n2", "wall", "ratio"), ratio=True),
            ]
        )
    if not rows:
        return []
    return [
        *_table(["Backend", "N", "serial (wall)", "`-n 2` (wall)", "ratio"], rows),
        *_xdist_pays(results),
        "",
    ]


def _trips_table(results: Results) -> list[str]:
    rows = []
    for key, trips in results.trips.items():
        base = STRATEGIES[key].baseline
        extra = f"{trips - results.trips[base]:+.1f}" if base in results.trips else DASH
        rows.append([STRATEGIES[key].label, f"{trips:.1f}", extra])
    return _table(["Strategy", "round trips per test", "over its baseline"], rows)


def _xdist_pays(results: Results) -> list[str]:
    """Per backend, the smallest suite measured from which ``-n 2`` beat serial at every larger size."""
    lines = []
    for backend in dict.fromkeys(key[1] for key in results.keys("xdist")):
        sized = sorted((k for k in results.keys("xdist") if k[1] == backend), key=lambda k: k[3])
        faster = [
            (k[3], r is not None and r.median < 1)
            for k in sized
            for r in [results.paired(k, "xdist-n2", "wall", "ratio")]
        ]
        from_n = next((n for i, (n, _) in enumerate(faster) if all(ok for _, ok in faster[i:])), None)
        pays = f"pays from N = {from_n}" if from_n is not None else f"did not pay up to N = {sized[-1][3]}"
        lines.append(
            f"- On {BACKENDS[backend]}, `-n 2` {pays} (sizes measured: {', '.join(str(n) for n, _ in faster)})."
        )
    return lines


MICRO_ROWS = [
    ("select_raw", "`SELECT 1`, raw cursor (reused): **one round trip**"),
    ("select_raw_new_cursor", "`SELECT 1`, raw, a new cursor per call"),
    ("select_tx", "`SELECT 1`, `tx.execute`"),
    ("select_sandbox", "`SELECT 1`, sandbox session (`db_session`, default)"),
    ("select_sandbox_nosp", "`SELECT 1`, sandbox session, statement savepoints off"),
    ("select_sa", "`SELECT 1`, SQLAlchemy Core `conn.execute(text(...))`"),
    ("insert_raw", "INSERT, raw cursor (reused)"),
    ("insert_raw_new_cursor", "INSERT, raw, a new cursor per call"),
    ("insert_tx", "INSERT, `tx.execute`"),
    ("insert_sandbox", "INSERT, sandbox session (`db_session`, default)"),
    ("insert_sandbox_nosp", "INSERT, sandbox session, statement savepoints off"),
    ("insert_sa", "INSERT, SQLAlchemy Core"),
    ("insert_in_block", "INSERT inside an open block in the sandbox"),
    ("app_commit_block", "app block in the sandbox: `with app as tx:` + INSERT (savepoint, release)"),
    ("sandbox_cycle", "a sandbox's life: start, `SELECT 1`, stop"),
]


def _micro_table(results: Results) -> list[str]:
    backends = [b for b in BACKENDS if b in results.micro]
    if not backends:
        return []
    rows = []
    for op, label in MICRO_ROWS:
        cells = []
        for backend in backends:
            value, trip = results.micro_median(backend, op), results.micro_median(backend, "select_raw")
            cells.append(f"{fmt_time(value)} ({value / trip:.2f} RT)" if value and trip else fmt_time(value))
        rows.append([label, *cells])
    cells = []
    for backend in backends:
        block, stmt = (
            results.micro_median(backend, "app_commit_block"),
            results.micro_median(backend, "insert_in_block"),
        )
        trip = results.micro_median(backend, "select_raw")
        cells.append(
            f"{fmt_time(block - stmt)} ({(block - stmt) / trip:.2f} RT)" if block and stmt and trip else DASH
        )
    rows.append(["**one app commit** (app block minus the INSERT)", *cells])
    return _table(["Per call", *(BACKENDS[b] for b in backends)], rows)


def markdown(results: Results, images: dict[str, str]) -> str:
    """The generated part of the benchmarks page."""
    meta = results.meta
    found = targets(results)
    met = sum(1 for t in found if t.met)
    lines = [
        BEGIN,
        "",
        f"*Generated by `{meta['command']}` on {meta['machine']['Date']}, in {meta['duration']}"
        + (" — a `--quick` run: indicative only, not the published figures.*" if meta.get("quick") else ".*"),
        "",
        "### The machine",
        "",
        *_machine(results),
        "### Targets",
        "",
        f"{met} of {len(found)} targets met in this run.",
        "",
        *_table(
            ["Target", "Backend", "Measured", "Limit", ""],
            [[t.name, t.backend, t.measured, t.limit, status(t.met)] for t in found],
        ),
    ]
    if results.failures:
        lines += ["### Runs that failed (left out of every figure)", ""]
        rows = [
            [f["backend"], f["config"], str(f["n"]), f["strategy"], str(f["rep"]), f.get("problem", "")]
            for f in results.failures
        ]
        lines += _table(["Backend", "Config", "N", "Strategy", "Repetition", "Problem"], rows)
    lines += ["### Per-test overhead, 3 tables", "", *_main_tables(results, "main")]
    lines += [f"![Per-test overhead]({images['overhead']})", ""] if "overhead" in images else []
    lines += ["### As the database grows", "", *_scaling_tables(results)]
    lines += [f"![Overhead as the database grows]({images['scaling']})", ""] if "scaling" in images else []
    if results.keys("template"):
        lines += [
            "### A database cloned from a template (PostgreSQL)",
            "",
            *_detail_tables(results, "template"),
        ]
    lines += ["### pytest-xdist", "", *_xdist_table(results)]
    if results.trips:
        lines += ["### Round trips per test (PostgreSQL, counted on the wire)", "", *_trips_table(results)]
    lines += ["### The core, one statement at a time", "", *_micro_table(results)]
    lines += [
        "### Every run in detail",
        "",
        *_detail_tables(results, "main"),
        *_detail_tables(results, "scaling"),
    ]
    return "\n".join([*lines, END])


def write_page(page: Path, text: str) -> None:
    """Replace the generated part of ``page`` (between the BEGIN and END markers) with ``text``."""
    current = page.read_text() if page.exists() else ""
    if BEGIN not in current or END not in current:
        raise SystemExit(
            f"{page} has no {BEGIN} ... {END} markers; add them where the results go (see docs/benchmarks.md)"
        )
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    page.write_text(head + text + tail)
