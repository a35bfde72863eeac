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
