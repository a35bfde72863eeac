"""What a flow run shows in Prefect's UI: log lines through the run logger, and artifacts (a table per
sweep, a markdown page per registered frontier)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import MissingContextError


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The current flow's or task's run logger (its lines show on the run's page), else a plain logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("peppp.flows")


def artifact_key(*parts: str) -> str:
    """An artifact key Prefect accepts (lower-case letters, digits and dashes) from free text."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return key[:100] or "peppp"


def sweep_table(experiment: str, rows: Sequence[dict], *, totals: dict) -> None:
    """A table artifact of a sweep: one row per cell trained (dataset, configuration, seed, status,
    test error, memory, run id) and the totals in its description."""
    summary = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in totals.items())
    create_table_artifact(
        key=artifact_key("meta-train", experiment),
        table=list(rows) or [{"cells": "none trained: every planned cell was already in the store"}],
        description=f"meta-train sweep into MLflow experiment `{experiment}`: {summary}",
    )


def frontier_page(*, dataset: str, name: str, version: int, alias: str, frontier, run_link: str) -> None:
    """A markdown artifact of a registered frontier: its points, the pick per budget, the MLflow run."""
    lines = [
        f"# Frontier of `{dataset}`: registered `{name}` version {version} (alias `{alias}`)",
        "",
        f"Method `{frontier.method}`, meta-experiment `{frontier.meta_experiment}`. MLflow run: {run_link}",
        "",
        "| configuration | memory MB | error | std | measured | on the frontier |",
        "|---|---|---|---|---|---|",
    ]
    pareto = set(p.config for p in frontier.pareto())
    for p in sorted(frontier.points, key=lambda p: (p.memory_mb, p.config)):
        std = "" if p.error_std is None else f"{p.error_std:.4f}"
        lines.append(f"| {p.config} | {p.memory_mb:.4f} | {p.error:.4f} | {std} | {'yes' if p.measured else ''} |"
                     f" {'yes' if p.config in pareto else ''} |")
    lines += ["", "## The pick for each budget (the memory of each frontier point)", "",
              "| budget MB | pick | estimated error | P(best) |", "|---|---|---|---|"]
    for point in frontier.pareto():
        pick = frontier.best_for(point.memory_mb)
        sure = "" if pick.probability_best is None else f"{pick.probability_best:.2f}"
        lines.append(f"| {point.memory_mb:.4f} | {pick.point.config} | {pick.point.error:.4f} | {sure} |")
    create_markdown_artifact(key=artifact_key("frontier", dataset), markdown="\n".join(lines),
                             description=f"{name} version {version}")


def report_page(*, experiment: str, report, run_link: str) -> None:
    """A markdown artifact of a format report: the per-format and per-family tables, the MLflow run."""

    def markdown(frame) -> list[str]:
        header = [str(c) for c in frame.columns]
        rows = [[f"{v:g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]

    lines = [
        f"# Number formats on the frontiers of `{experiment}` ({len(report.datasets)} datasets)",
        "",
        "`on frontier`: datasets whose Pareto frontier (memory, error) holds a configuration with the format in "
        "that role; `best@B`: datasets where it is in the least-error configuration within B MB.",
        "",
        *markdown(report.formats),
        "",
        *markdown(report.families),
        "",
        f"MLflow run (formats.csv, families.csv, best_picks.csv, report.png): {run_link}",
    ]
    create_markdown_artifact(key=artifact_key("format-report", experiment), markdown="\n".join(lines),
                             description=f"format report of MLflow experiment `{experiment}`")
