"""What a parent run shows when it ends: summary metrics, and the matrices or frontier it produced."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from peppp.errors import PepppError
from peppp.tracking.matrix import rebuild_matrices
from peppp.tracking.runs import log_files, log_metrics


def log_sweep_summary(
    run_id: str,
    *,
    experiment: str,
    datasets: Sequence[str],
    configs: Sequence[str],
    recipe: str,
    counts: Mapping[str, float],
    tracking_uri: str | None = None,
) -> bool:
    """Log a sweep's counts as metrics and, as artifacts, the error and memory matrices of its
    datasets x configurations as the store holds them now (CSV at full precision, and a heatmap with
    the missing cells visible). Returns whether the matrices were logged (False when no cell of the
    grid is in the store yet)."""
    from peppp.plots import error_heatmap

    log_metrics(run_id, counts, tracking_uri=tracking_uri)
    try:
        error, memory = rebuild_matrices(experiment, recipe=recipe, tracking_uri=tracking_uri)
    except PepppError:
        return False  # nothing finished yet (every cell failed, say): the counts tell it
    error = error.reindex(index=list(datasets), columns=list(configs))
    memory = memory.reindex(index=list(datasets), columns=list(configs))
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "error.csv", Path(tmp) / "memory_mb.csv", Path(tmp) / "error_heatmap.png"]
        error.to_csv(paths[0])  # pandas writes floats so that they read back exactly
        memory.to_csv(paths[1])
        error_heatmap(error, paths[2], title=f"{experiment} ({recipe})")
        log_files(run_id, paths, tracking_uri=tracking_uri, folder="matrices")
    return True


def log_frontier_plot(run_id: str, frontier, *, tracking_uri: str | None = None, name: str = "frontier.png",
                      budget_mb: float | None = None) -> None:
    """Attach the plot of an estimated frontier to a run (a search round's, say)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = frontier.plot(Path(tmp) / name, budget_mb=budget_mb)
        log_files(run_id, [path], tracking_uri=tracking_uri)


def experiment_report(
    experiment: str,
    *,
    budgets_mb: Sequence[float] | None = None,
    frontiers: Sequence[str] = (),
    measured: bool = True,
    recipe: str | None = None,
    tracking_uri: str | None = None,
):
    """The format report (`peppp.report.format_report`) of `experiment`'s measured meta cells
    (`rebuild_matrices`) and/or the registered frontiers named in `frontiers` (registered model names,
    their `champion` alias); a registered frontier stands in for its dataset's measured cells."""
    from peppp.registry import load_registered_frontier
    from peppp.report import format_report, points_from_frontier, points_from_matrices

    points = []
    if measured:
        error, memory = rebuild_matrices(experiment, recipe=recipe, tracking_uri=tracking_uri)
        points = points_from_matrices(error, memory)
    for name in frontiers:
        frontier = load_registered_frontier(name, tracking_uri=tracking_uri).frontier
        points = [p for p in points if p.dataset != frontier.dataset] + [points_from_frontier(frontier)]
    return format_report(points, budgets_mb=budgets_mb)


def log_format_report(experiment: str, report, *, tracking_uri: str | None = None) -> str:
    """A `report` parent run in `experiment` holding the report as CSV and PNG artifacts, its budgets and
    datasets as parameters and, per low format, the share of datasets whose frontier holds it as metrics.
    Returns the run id."""
    from peppp.report import write_report
    from peppp.tracking.runs import log_params, parent_run
    from peppp.tracking.tags import KIND_REPORT

    description = (f"Which number formats are on the memory/error frontiers of {len(report.datasets)} datasets "
                   f"of `{experiment}`, and where each is the best pick: formats.csv, families.csv, "
                   "best_picks.csv, report.png")
    with parent_run(experiment, kind=KIND_REPORT, name="report", tracking_uri=tracking_uri,
                    description=description) as run_id:
        log_params(run_id, {"datasets": len(report.datasets),
                            "budgets_mb": ",".join(f"{b:g}" for b in report.budgets_mb)}, tracking_uri=tracking_uri)
        low = report.formats[report.formats["role"] == "low"]
        log_metrics(run_id, {f"frontier_share.{f}": s for f, s in zip(low["format"], low["share on frontier"])},
                    tracking_uri=tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            log_files(run_id, write_report(report, tmp), tracking_uri=tracking_uri, folder="report")
    return run_id
