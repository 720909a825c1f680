"""The targets of issues 6, 14 (async) and 15 (speed), evaluated on the samples of a run: met, missed, or not
measured. Where issue 15 set a new limit for an older target, the new limit is the one checked."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.analysis import BACKENDS, Key, Results, X, fmt_time, largest
from benchmarks.suites import STRATEGIES


@dataclass(frozen=True)
class Target:
    """One target of the issue, evaluated on one backend."""

    name: str
    backend: str
    measured: str
    limit: str
    met: bool | None


def status(met: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "not measured"}[met]


def targets(results: Results) -> list[Target]:
    """Every target of issues 6 and 14 that the run measured, met or missed, with the figure."""
    out: list[Target] = []
    backends = [b for b in BACKENDS if any(k[1] == b for k in results.cells) or b in results.micro]
    for backend in backends:
        name = BACKENDS[backend]
        trip = results.micro_median(backend, "select_raw")
        key = largest(results, "main", backend)
        if key is not None:
            for strategy in ("txscope", "txscope-nosp"):
                over = results.overhead(key, strategy)
                if over is None:
                    continue
                label = "per-test isolation overhead" + (
                    " (statement savepoints off)" if "nosp" in strategy else ""
                )
                if backend == "sqlite-memory":
                    out.append(
                        Target(
                            label,
                            name,
                            f"{fmt_time(over.median)} (N = {key[3]})",
                            "≤ 60 µs",
                            over.median <= 60e-6,
                        )
                    )
                elif trip:
                    trips = over.median / trip
                    out.append(
                        Target(
                            label,
                            name,
                            f"{fmt_time(over.median)} = {trips:.1f} round trips (N = {key[3]})",
                            "≤ 2 round trips",
                            trips <= 2,
                        )
                    )
            out += _suite_ratio(results, key, "txscope", f"whole {key[3]}-test suite against no isolation")
            out += _peer_targets(results, key)
        if key is not None:
            out += _aio_targets(results, key)
        out += _trips_targets(results, backend)
        out += _scaling_targets(results, backend)
        out += _micro_targets(results, backend, trip)
        out += _xdist_targets(results, backend)
    return out


LONG_SUITE = 5.0
"""Seconds of serial wall time from which issue 15 wants ``-n 2`` to be faster ("longer than a few seconds")."""


def _xdist_targets(results: Results, backend: str) -> list[Target]:
    """Issue 15: ``-n 2`` faster than serial for every suite measured whose serial run is longer than a few
    seconds."""
    out = []
    for key in (k for k in results.keys("xdist") if k[1] == backend):
        serial, ratio = results.wall(key, "xdist-serial"), results.paired(key, "xdist-n2", "wall", "ratio")
        if serial is None or ratio is None or serial.median < LONG_SUITE:
            continue
        out.append(
            Target(
                f"`-n 2` wall time against serial (N = {key[3]}, serial {serial.median:.1f} s)",
                BACKENDS[backend],
                f"{ratio.median:.2f}{X}",
                f"< 1{X}",
                ratio.median < 1,
            )
        )
    return out


PEERS = (
    ("txscope", "django", "db_session overhead against pytest-django's `db`'s"),
    ("txscope", "delete", "db_session overhead against DELETE's"),
    ("txscope", "truncate", "db_session overhead against TRUNCATE's"),
    ("txscope-orm", "sa-recipe", "sa_session overhead against the SQLAlchemy recipe's"),
)
"""Issue 15's peers measured on the main suite: (ours, theirs, target), each overhead over its own baseline."""


def _peer_targets(results: Results, key: Key) -> list[Target]:
    """Issue 15: ahead of every peer on the same workload (each overhead over its own baseline), and
    ``sa_session`` no slower than SQLAlchemy's recipe on the ORM workload."""
    out = []
    name = BACKENDS[key[1]]
    template = largest(results, "template", key[1])
    for ours_key, peer, label in PEERS:
        ours, theirs = results.overhead(key, ours_key), results.overhead(key, peer)
        if ours is None or theirs is None:
            continue
        out.append(
            Target(
                label,
                name,
                f"{fmt_time(ours.median)} against {fmt_time(theirs.median)}",
                "≤",
                ours.median <= theirs.median,
            )
        )
    ours = results.overhead(key, "txscope")
    theirs = results.overhead(template, "pgdatabase") if template is not None else None
    if ours is not None and theirs is not None:
        out.append(
            Target(
                "db_session overhead against pytest-postgresql's per-test database's",
                name,
                f"{fmt_time(ours.median)} against {fmt_time(theirs.median)}",
                "≤",
                ours.median <= theirs.median,
            )
        )
    return out


TRIP_PAIRS = (
    ("txscope", "db_session"),
    ("txscope-orm", "sa_session"),
    ("txscope-aio", "async, app's engine"),
)


def _trips_targets(results: Results, backend: str) -> list[Target]:
    """Issue 15: no extra round trip per statement on PostgreSQL; BEGIN and the final ROLLBACK cost at most one
    each: at most 2 round trips per test over the baseline's, counted on the wire."""
    if backend != "postgresql":
        return []
    out = []
    for key, label in TRIP_PAIRS:
        base = STRATEGIES[key].baseline
        if key not in results.trips or base not in results.trips:
            continue
        extra = results.trips[key] - results.trips[base]
        out.append(
            Target(
                f"round trips per test over {base}'s ({label}; counted)",
                BACKENDS[backend],
                f"{results.trips[key]:.1f} against {results.trips[base]:.1f} ({extra:+.1f})",
                "≤ +2",
                extra <= 2,
            )
        )
    return out


def _suite_ratio(results: Results, key: Key, strategy: str, label: str) -> list[Target]:
    """The whole suite of ``strategy`` against its baseline's: at most 1.10 times its wall time."""
    wall = results.paired(key, strategy, "wall", "ratio")
    if wall is None:
        return []
    inproc = results.paired(key, strategy, "per_test", "ratio")
    extra = f"; in-process {inproc.median:.2f}{X}" if inproc else ""
    measured = f"{wall.median:.2f}{X} wall{extra}"
    return [Target(label, BACKENDS[key[1]], measured, f"≤ 1.10{X}", wall.median <= 1.10)]


def _aio_targets(results: Results, key: Key) -> list[Target]:
    """Issues 14 and 15: the async suite (``txscope-aio``) within 1.10x of no isolation (``aio-none``), and its
    overhead below that of SQLAlchemy's async recipe (``aio-recipe``); issue 14 asked it on PostgreSQL, issue 15
    on every backend."""
    label = f"async: whole {key[3]}-test suite (txscope-aio) against aio-none"
    out = _suite_ratio(results, key, "txscope-aio", label)
    name = BACKENDS[key[1]]
    ours, theirs = results.overhead(key, "txscope-aio"), results.overhead(key, "aio-recipe")
    if ours is not None and theirs is not None:
        out.append(
            Target(
                "async: txscope-aio overhead against the async SQLAlchemy recipe's",
                name,
                f"{fmt_time(ours.median)} against {fmt_time(theirs.median)}",
                "below",
                ours.median < theirs.median,
            )
        )
    return out


def _scaling_targets(results: Results, backend: str) -> list[Target]:
    out = []
    name = BACKENDS[backend]
    scaling = [k for k in results.keys("scaling") if k[1] == backend]
    tables = [k for k in scaling if "-r" not in k[2] and k[2] != "t3"]
    rows = [k for k in scaling if "-r" in k[2]]
    thirty = [k for k in tables if k[2] == "t30"]
    if thirty:
        ours, theirs = results.overhead(thirty[0], "txscope"), results.overhead(thirty[0], "truncate")
        if ours is not None and theirs is not None:
            out.append(
                Target(
                    "overhead against TRUNCATE's at 30 tables",
                    name,
                    f"{fmt_time(ours.median)} against {fmt_time(theirs.median)}",
                    "≤ ⅒",
                    ours.median <= theirs.median / 10,
                )
            )
    for group, what in ((tables, "tables"), (rows, "rows")):
        if not group:
            continue
        big = max(group, key=lambda k: int(k[2].split("-r")[-1]) if what == "rows" else int(k[2][1:]))
        base = ("scaling", backend, "t3", big[3])
        over, flat = results.overhead(big, "txscope"), results.overhead(base, "txscope")
        if over is None or flat is None:
            continue
        size = (
            big[2][1:] + " tables" if what == "tables" else f"{int(big[2].split('-r')[1]):,} rows per table"
        )
        met: bool | None
        if flat.median > 0 and over.median > 0:
            ratio = over.median / flat.median
            measured, met = (
                f"{ratio:.2f}{X} ({fmt_time(over.median)} against {fmt_time(flat.median)})",
                ratio <= 1.2,
            )
        else:
            # Rolling back was cheaper than committing (at 3 tables, or here): flat if it still is.
            note = (
                "still cheaper than no isolation"
                if over.median <= 0
                else "no overhead at 3 tables to compare"
            )
            measured = f"{fmt_time(over.median)} against {fmt_time(flat.median)} ({note})"
            met = True if over.median <= 0 else None
        out.append(
            Target(
                f"flat: overhead at {size} against 3 empty tables (N = {big[3]})",
                name,
                measured,
                f"≤ 1.2{X}",
                met,
            )
        )
    return out


def _micro_targets(results: Results, backend: str, trip: float | None) -> list[Target]:
    out = []
    name = BACKENDS[backend]
    for what in ("select", "insert"):
        tx = results.micro_median(backend, f"{what}_tx")
        raw = results.micro_median(backend, f"{what}_raw_new_cursor")
        sa = results.micro_median(backend, f"{what}_sa")
        label = "`SELECT 1`" if what == "select" else "one-row INSERT"
        if tx and raw:
            out.append(
                Target(
                    f"core `tx.execute` {label} against the raw cursor",
                    name,
                    f"{tx / raw:.2f}{X}",
                    f"≤ 1.3{X}",
                    tx / raw <= 1.3,
                )
            )
        if tx and sa:
            out.append(
                Target(
                    f"core `tx.execute` {label}: SQLAlchemy Core's time over ours",
                    name,
                    f"{sa / tx:.2f}{X}",
                    f"≥ 2{X}",
                    sa / tx >= 2,
                )
            )
    block, stmt = (
        results.micro_median(backend, "app_commit_block"),
        results.micro_median(backend, "insert_in_block"),
    )
    if block and stmt and trip and not backend.startswith("sqlite"):
        cost = block - stmt
        out.append(
            Target(
                "one app commit inside the sandbox",
                name,
                f"{fmt_time(cost)} = {cost / trip:.2f} round trips",
                "≤ 1 round trip",
                cost <= trip,
            )
        )
    return out
