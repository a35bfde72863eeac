"""The chip designer's report: which number formats (and families) are on datasets' memory/error
frontiers, and at which memory budgets each is the best pick.

Input is one `DatasetPoints` per dataset: the configurations measured on it (a row of a meta-experiment's
error and memory matrices) or a registered frontier's points. A configuration counts for both its
formats, by role: the low format (activations, weights, gradients: what the chip computes in) and the
high one (master weights, momentum). Pure numpy/pandas; the PNG needs matplotlib.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from peppp.errors import PepppError
from peppp.formats import PrecisionConfig, parse_config
from peppp.pareto import best_for_budget, pareto_mask

ROLES = ("low", "high")
DEFAULT_BUDGET_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class DatasetPoints:
    """One dataset's configurations with their memory (MB) and error (measured or estimated)."""

    dataset: str
    configs: tuple[str, ...]
    memory_mb: tuple[float, ...]
    error: tuple[float, ...]
    source: str = "measured"

    def __post_init__(self) -> None:
        if not (len(self.configs) == len(self.memory_mb) == len(self.error)):
            raise PepppError(f"dataset {self.dataset!r}: configs, memory_mb and error differ in length")
        if not self.configs:
            raise PepppError(f"dataset {self.dataset!r} has no configurations")


def points_from_matrices(error: pd.DataFrame, memory_mb: pd.DataFrame, *, source: str = "measured") -> list[DatasetPoints]:
    """One `DatasetPoints` per row of the (error, memory_mb) matrices, the measured cells only."""
    points = []
    for dataset in error.index:
        e = error.loc[dataset].to_numpy(dtype=float)
        m = memory_mb.loc[dataset].reindex(error.columns).to_numpy(dtype=float)
        keep = np.isfinite(e) & np.isfinite(m)
        if keep.any():
            cols = [str(c) for c, k in zip(error.columns, keep) if k]
            points.append(DatasetPoints(str(dataset), tuple(cols), tuple(m[keep]), tuple(e[keep]), source))
    return points


def points_from_frontier(frontier) -> DatasetPoints:
    """A registered frontier (`peppp.frontier.Frontier`) as the points it holds (estimates included)."""
    pts = list(frontier.points)
    return DatasetPoints(frontier.dataset, tuple(p.config for p in pts), tuple(float(p.memory_mb) for p in pts),
                         tuple(float(p.error) for p in pts), source="registered")


@dataclass(frozen=True)
class FormatReport:
    """Per (role, format) and per (role, family): on how many datasets' frontiers it appears and on how
    many it is (part of) the best pick at each budget; `best` is the pick per dataset and budget."""

    formats: pd.DataFrame
    families: pd.DataFrame
    best: pd.DataFrame
    budgets_mb: tuple[float, ...]
    datasets: tuple[str, ...]

    def table(self) -> str:
        """The two tables as aligned text."""
        return "\n\n".join(_text_table(frame) for frame in (self.formats, self.families))


def _budget_label(budget: float) -> str:
    return f"best@{budget:.4g}MB"


def default_budgets(points: Sequence[DatasetPoints], quantiles: Sequence[float] = DEFAULT_BUDGET_QUANTILES) -> tuple[float, ...]:
    """Budgets at quantiles of every measured memory (distinct, increasing)."""
    memory = np.concatenate([np.asarray(p.memory_mb, dtype=float) for p in points])
    return tuple(sorted({float(f"{q:.6g}") for q in np.quantile(memory, quantiles)}))


def format_report(points: Sequence[DatasetPoints], *, budgets_mb: Iterable[float] | None = None) -> FormatReport:
    """Count, over datasets, where each format and family is on the Pareto frontier and the best pick.

    A format is on a dataset's frontier when a non-dominated configuration uses it (in its role); it is
    the best pick at budget B when the least-error configuration of memory <= B uses it. A dataset whose
    configurations all exceed B has no pick at B.
    """
    points = list(points)
    if not points:
        raise PepppError("no datasets to report on: the experiment has no measured cells and no frontiers were given")
    names = [p.dataset for p in points]
    if len(set(names)) != len(names):
        raise PepppError(f"dataset {next(n for n in names if names.count(n) > 1)!r} appears twice")
    budgets = default_budgets(points) if budgets_mb is None else tuple(_check_budget(b) for b in budgets_mb)
    if not budgets:
        raise PepppError("give at least one memory budget (MB)")
    parsed: dict[str, PrecisionConfig] = {}
    on_frontier: dict[tuple[str, str], set[str]] = {}
    present: dict[tuple[str, str], set[str]] = {}
    best_counts: dict[tuple[str, str], list[int]] = {}
    best_rows = []
    family_of: dict[str, str] = {}
    for p in points:
        memory, error = np.asarray(p.memory_mb, float), np.asarray(p.error, float)
        frontier = pareto_mask(memory, error)
        picks = [best_for_budget(memory, error, b) for b in budgets]
        best_rows.append([p.configs[i] if i is not None else "" for i in picks])
        for j, text in enumerate(p.configs):
            cfg = parsed.setdefault(text, parse_config(text))
            for role, fmt in zip(ROLES, (cfg.low, cfg.high)):
                key = (role, str(fmt))
                family_of[str(fmt)] = fmt.family
                present.setdefault(key, set()).add(p.dataset)
                if frontier[j]:
                    on_frontier.setdefault(key, set()).add(p.dataset)
                counts = best_counts.setdefault(key, [0] * len(budgets))
                for k, i in enumerate(picks):
                    counts[k] += int(i == j)
    n = len(points)

    def rows(group) -> pd.DataFrame:
        table: dict[tuple[str, str], dict] = {}
        for (role, fmt), datasets in present.items():
            key = group(role, fmt)
            row = table.setdefault(key, {"datasets measured": set(), "on frontier": set(), "counts": [0] * len(budgets)})
            row["datasets measured"] |= datasets
            row["on frontier"] |= on_frontier.get((role, fmt), set())
            row["counts"] = [a + b for a, b in zip(row["counts"], best_counts[(role, fmt)])]
        records = []
        for (role, name), row in table.items():
            record = {"role": role, "name": name}
            if group is _by_format:
                record["family"] = family_of[name]
            record["datasets"] = len(row["datasets measured"])
            record["on frontier"] = len(row["on frontier"])
            record["share on frontier"] = round(len(row["on frontier"]) / n, 3)
            for b, c in zip(budgets, row["counts"]):
                record[_budget_label(b)] = c
            records.append(record)
        frame = pd.DataFrame.from_records(records)
        frame = frame.sort_values(["role", "on frontier", "name"], ascending=[False, False, True], kind="stable")
        return frame.reset_index(drop=True)

    def _by_family(role: str, fmt: str) -> tuple[str, str]:
        return role, family_of[fmt]

    formats = rows(_by_format).rename(columns={"name": "format"})
    families = rows(_by_family).rename(columns={"name": "family"})
    best = pd.DataFrame(best_rows, index=pd.Index(names, name="dataset"), columns=[_budget_label(b) for b in budgets])
    return FormatReport(formats=formats, families=families, best=best, budgets_mb=budgets, datasets=tuple(names))


def _by_format(role: str, fmt: str) -> tuple[str, str]:
    return role, fmt


def _check_budget(value) -> float:
    try:
        budget = float(value)
    except (TypeError, ValueError):
        raise PepppError(f"memory budget {value!r} is not a number of MB") from None
    if not math.isfinite(budget) or budget <= 0:
        raise PepppError(f"memory budget {value!r} must be a positive number of MB")
    return budget


def _text_table(frame: pd.DataFrame) -> str:
    cells = [[str(c) for c in frame.columns]] + [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _cell(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_report(report: FormatReport, folder: str | os.PathLike) -> list[Path]:
    """formats.csv, families.csv, best_picks.csv and report.png in `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "formats.csv", folder / "families.csv", folder / "best_picks.csv"]
    report.formats.to_csv(paths[0], index=False)
    report.families.to_csv(paths[1], index=False)
    report.best.to_csv(paths[2])
    paths.append(report_plot(report, folder / "report.png"))
    return paths


def report_plot(report: FormatReport, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """A PNG: per (role, format), the share of datasets whose frontier holds it (bars) and the number of
    datasets on which it is the best pick at each budget (heatmap)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frame = report.formats
    labels = [f"{r.role}: {r.format}" for r in frame.itertuples(index=False)]
    budget_cols = [_budget_label(b) for b in report.budgets_mb]
    counts = frame[budget_cols].to_numpy(dtype=float)
    height = max(3.0, 0.32 * len(labels) + 1.6)
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(11, height), sharey=True,
                                     gridspec_kw={"width_ratios": [1, max(1.0, 0.45 * len(budget_cols))]})
    y = np.arange(len(labels))
    bars.barh(y, frame["on frontier"].to_numpy(dtype=float), color="#4c72b0")
    bars.set_yticks(y)
    bars.set_yticklabels(labels, fontsize=8)
    bars.invert_yaxis()
    n = len(report.datasets)
    bars.set_xlim(0, n)
    bars.set_xlabel(f"datasets whose frontier holds it (of {n})")
    image = heat.imshow(counts, aspect="auto", cmap="Greens", vmin=0, vmax=max(1, n), interpolation="nearest")
    for (i, j), value in np.ndenumerate(counts):
        heat.text(j, i, f"{value:g}", ha="center", va="center", fontsize=7)
    heat.set_xticks(range(len(budget_cols)))
    heat.set_xticklabels([f"{b:.4g}" for b in report.budgets_mb], rotation=45, fontsize=8)
    heat.set_xlabel("memory budget (MB): datasets where it is the best pick")
    fig.colorbar(image, ax=heat, fraction=0.04, pad=0.02, label="datasets")
    fig.suptitle(f"number formats on the frontier: {n} datasets")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
