"""The harness's unit of measurement: a cell (strategies compared together, interleaved, on one backend,
configuration and N), and how long planned cells should take."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from benchmarks.suites import Config

__all__ = ["BIG_ROWS", "CLEANING", "Cell", "estimate"]

BIG_ROWS = 100_000
"""Seed rows from which a configuration runs with ``--big-n`` tests (as do 100 tables or more), and its
cleaning strategies with ``--huge-n`` (each of their tests reloads every seed row: seconds to minutes)."""
CLEANING = ("delete", "truncate", "dropcreate")


@dataclass(frozen=True)
class Cell:
    """The strategies compared together (interleaved) on one backend, configuration and N."""

    experiment: str
    backend: str
    config: Config
    n: int
    strategies: tuple[str, ...]
    repeats: int
    slow_n: int = 0
    """When not 0, the number of tests of the cleaning strategies (`CLEANING`)."""

    def tests(self, strategy: str) -> int:
        """How many tests ``strategy``'s suite has in this cell."""
        return self.slow_n if self.slow_n and strategy in CLEANING else self.n

    @property
    def name(self) -> str:
        """A directory name for the cell's suites."""
        return f"{self.experiment}-{self.backend}-{self.config.key}-n{self.n}"


def estimate(cells: list[Cell], data: dict[str, Any]) -> float:
    """Seconds the planned ``cells`` should take, extrapolated from the samples of an earlier (quick) run.

    A configuration the earlier run lacks is scaled from the largest one of its kind it has: linearly in the
    number of tables or of seed rows for the strategies whose cost grows with them, unchanged for the others.
    """
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for sample in data["samples"]:
        if sample["ok"]:
            grouped.setdefault((sample["backend"], sample["strategy"], sample["config"]), []).append(sample)

    def seconds(backend: str, strategy: str, config: Config, tests: int) -> float:
        known = {
            Config(s[0]["tables"], s[0]["rows"]): s
            for (b, k, _), s in grouped.items()
            if (b, k) == (backend, strategy)
        }
        if not known:
            return 0.0
        grows = strategy in (*CLEANING, "template", "pgdatabase")
        same_kind = [c for c in known if (c.rows > 0) == (config.rows > 0)] if grows else []
        base = (
            config if config in known else max(same_kind, key=lambda c: (c.rows, c.tables), default=Config())
        )
        samples = known.get(base) or next(iter(known.values()))
        wall = float(statistics.median(s["wall"] for s in samples))
        runs = float(statistics.median(s.get("tests", s["n"]) for s in samples))
        per_test = float(statistics.median(s["per_test"] or 0.0 for s in samples))
        if not per_test:  # under xdist: only the wall time, proportional to the tests
            return wall * tests / runs
        scale = 1.0
        if grows and base != config:
            scale = max(config.rows, 1) / max(base.rows, 1) if config.rows else config.tables / base.tables
        return (wall - runs * per_test) + tests * per_test * scale

    total = 0.0
    for cell in cells:
        for strategy in cell.strategies:
            total += cell.repeats * seconds(cell.backend, strategy, cell.config, cell.tests(strategy))
    return total
