"""The charts of the benchmarks page (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.analysis import BACKENDS, Results, largest
from benchmarks.suites import STRATEGIES


def draw(results: Results, directory: Path) -> dict[str, Path]:
    """Draw the overhead chart and the scaling chart (matplotlib, Agg) into ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if _overhead_chart(results, plt, directory / "benchmarks.png"):
        paths["overhead"] = directory / "benchmarks.png"
    if _scaling_chart(results, plt, directory / "benchmarks-scaling.png"):
        paths["scaling"] = directory / "benchmarks-scaling.png"
    return paths


def _overhead_chart(results: Results, plt: Any, path: Path) -> bool:
    cells = {b: key for b in BACKENDS if (key := largest(results, "main", b)) is not None}
    backends = list(cells)
    strategies = [
        s for s in STRATEGIES if STRATEGIES[s].baseline in ("none", "orm-none", "aio-none", "django-none")
    ]
    strategies = [s for s in strategies if any(results.runs(cells[b], s) for b in backends)]
    if backends and strategies:
        fig, ax = plt.subplots(figsize=(9, 0.55 * len(strategies) * len(backends) / 2 + 1.5))
        height = 0.8 / len(backends)
        for j, backend in enumerate(backends):
            key = cells[backend]
            values = []
            for strategy in strategies:
                over = results.overhead(key, strategy)
                values.append(over.median * 1e3 if over else 0.0)
            ys = [i + j * height for i in range(len(strategies))]
            ax.barh(ys, values, height=height, label=f"{BACKENDS[backend]} (N = {key[3]})")
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(strategies))])
        ax.set_yticklabels([STRATEGIES[s].label for s in strategies])
        ax.invert_yaxis()
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("overhead per test against no isolation, ms (symmetric log scale)")
        ax.legend(fontsize="small")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return True
    return False


def _scaling_chart(results: Results, plt: Any, path: Path) -> bool:
    scaled = [b for b in BACKENDS if any(k[1] == b for k in results.keys("scaling"))]
    if not scaled:
        return False
    columns = min(2, len(scaled))
    rows = (len(scaled) + 1) // 2
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows + 0.8), squeeze=False)
    colours = {s: f"C{i}" for i, s in enumerate(s for s in STRATEGIES if s != "none")}
    drawn: dict[str, Any] = {}
    for ax, backend in zip(axes.flat, scaled, strict=False):
        keys = [k for k in results.keys("scaling") if k[1] == backend]
        keys.sort(key=lambda k: ("-r" in k[2], int(k[2].split("-")[0][1:]), k[2], k[3]))
        for strategy, colour in colours.items():
            points = [
                (i, over.median * 1e3) for i, k in enumerate(keys) if (over := results.overhead(k, strategy))
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                (drawn[strategy],) = ax.plot(xs, ys, marker="o", color=colour)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{k[2]}\nN={results.sizes(k)}" for k in keys], fontsize="x-small")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_title(BACKENDS[backend])
        ax.set_ylabel("overhead per test, ms")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(scaled) :]:
        ax.set_visible(False)
    labels = [STRATEGIES[s].label for s in drawn]
    fig.legend(list(drawn.values()), labels, loc="lower center", ncol=len(drawn), fontsize="small")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
