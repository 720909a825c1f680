"""The samples of a harness run, grouped and summarised: medians, min-max, overheads and ratios paired by run.

Everything here reads the JSON the harness writes (``benchmarks/results.json``), so that the page can be
regenerated without running again: ``python -m benchmarks.run --from-json benchmarks/results.json``.

Overheads and ratios are paired run by run: repetition ``r`` of a strategy is compared with repetition ``r``
of its baseline (run just before it, in the same round), and the median over repetitions is reported with the
min-max range. The "time per test" is measured inside the pytest process (from the start of the second test to
the end of the next-to-last one), so interpreter and plugin start-up and the first connection do not count;
"wall" is the whole pytest process.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from benchmarks.suites import STRATEGIES

BACKENDS = {
    "sqlite-file": "SQLite file",
    "sqlite-memory": "SQLite :memory:",
    "postgresql": "PostgreSQL",
    "mysql": "MariaDB",
}
X, DASH = "\u00d7", "\u2013"  # the multiplication sign and the en dash of the published tables
Key = tuple[str, str, str, int]  # experiment, backend, config, n


@dataclass(frozen=True)
class Spread:
    """The median of some samples, with their minimum and maximum."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        """The spread of ``values``, or None when there are none."""
        data = list(values)
        if not data:
            return None
        return cls(statistics.median(data), min(data), max(data))


def fmt_time(seconds: float | None) -> str:
    """``seconds`` in a readable unit: µs, ms or s, about three significant digits."""
    if seconds is None:
        return DASH
    size = abs(seconds)
    if size < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if size < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_spread(spread: Spread | None, *, ratio: bool = False) -> str:
    """A spread as ``median (min to max)``, in time units or as a ratio."""
    if spread is None:
        return DASH
    if ratio:
        return f"{spread.median:.2f}{X} ({spread.low:.2f}{DASH}{spread.high:.2f})"
    return f"{fmt_time(spread.median)} ({fmt_time(spread.low)} {DASH} {fmt_time(spread.high)})"


# ------------------------------------------------------------------------------------------- analysis
class Results:
    """The samples of one harness run, grouped by cell and strategy."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.meta: dict[str, Any] = data["meta"]
        self.micro: dict[str, dict[str, list[float]]] = data.get("micro", {})
        self.trips: dict[str, float] = data.get("trips", {})
        """PostgreSQL: round trips per test of each strategy, counted on the wire (exact, not timed)."""
        self.cells: dict[Key, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
        self.failures: list[dict[str, Any]] = []
        for sample in data["samples"]:
            key = (sample["experiment"], sample["backend"], sample["config"], sample["n"])
            if sample["ok"]:
                self.cells[key][sample["strategy"]][sample["rep"]] = sample
            else:
                self.failures.append(sample)

    def keys(self, experiment: str) -> list[Key]:
        """The cells of one experiment, in the order of `BACKENDS`, then by N."""
        order = list(BACKENDS)
        found = [k for k in self.cells if k[0] == experiment]
        return sorted(found, key=lambda k: (order.index(k[1]), k[3], k[2]))

    def runs(self, key: Key, strategy: str) -> dict[int, dict[str, Any]]:
        """The samples of ``strategy`` in a cell, by repetition."""
        return self.cells.get(key, {}).get(strategy, {})

    def per_test(self, key: Key, strategy: str) -> Spread | None:
        """The in-process time per test."""
        return Spread.of(
            s["per_test"] for s in self.runs(key, strategy).values() if s["per_test"] is not None
        )

    def wall(self, key: Key, strategy: str) -> Spread | None:
        """The wall time of the whole pytest process."""
        return Spread.of(s["wall"] for s in self.runs(key, strategy).values())

    def paired(self, key: Key, strategy: str, field: str, how: str, base: str | None = None) -> Spread | None:
        """``strategy`` against its baseline (or ``base``), repetition by repetition: ``diff`` or ``ratio``."""
        base = base or STRATEGIES[strategy].baseline
        if base is None:
            return None
        mine, theirs = self.runs(key, strategy), self.runs(key, base)
        values = []
        for rep, sample in mine.items():
            other = theirs.get(rep)
            if other is None or sample[field] is None or other[field] is None:
                continue
            if how == "diff":
                values.append(sample[field] - other[field])
            elif other[field] > 0:
                values.append(sample[field] / other[field])
        return Spread.of(values)

    def overhead(self, key: Key, strategy: str) -> Spread | None:
        """In-process time per test minus the baseline's, paired."""
        return self.paired(key, strategy, "per_test", "diff")

    def sizes(self, key: Key) -> str:
        """The N of a cell, and the smaller N its slowest strategies ran with, if any (``50 (DELETE...: 4)``)."""
        smaller = {
            s.get("tests", key[3]) for runs in self.cells.get(key, {}).values() for s in runs.values()
        } - {key[3]}
        return f"{key[3]} (cleaning: {min(smaller)})" if smaller else str(key[3])

    def micro_median(self, backend: str, op: str) -> float | None:
        """The median seconds per call of a micro-benchmark operation."""
        values = self.micro.get(backend, {}).get(op)
        return statistics.median(values) if values else None


def largest(results: Results, experiment: str, backend: str, config: str = "t3") -> Key | None:
    """The cell of ``experiment`` on ``backend`` and ``config`` with the largest N, if any."""
    keys = [k for k in results.keys(experiment) if k[1] == backend and k[2] == config]
    return max(keys, key=lambda k: k[3]) if keys else None
