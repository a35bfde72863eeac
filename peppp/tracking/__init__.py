"""Runs in, matrices out: the MLflow tracking layer.

One experiment per meta-dataset; a parent run per sweep, active-search round or import, and a child
run per trained cell. The error and memory matrices are always rebuilt from the runs.

- `store`: which store (`resolve_tracking_uri`, `connect`) and experiments by name.
- `runs`: logging cells (`log_cell`, `log_cells_batch`) and parent runs.
- `matrix`: cells and matrices back out (`load_cells`, `rebuild_matrices`, `finished_cells`).
- `claims`: one trainer per cell across concurrent sweeps (`claim_cell`, `release_claim`, `list_claims`).
- `liveness`: heartbeats of parent runs, and recovery after dead ones (`recover_orphans`).
- `transfer`: CSV meta-datasets in and out (`import_matrix`, `export_matrix`).
- `tags`: the tag and metric names; `_mlflow_private`: the one place that uses MLflow's internals.
"""

from peppp.tracking.claims import Claim, claim_cell, list_claims, release_claim
from peppp.tracking.liveness import free_dead_claims, recover_orphans
from peppp.tracking.matrix import (
    SearchCells,
    config_sort_key,
    finished_cells,
    finished_seeds,
    load_cells,
    rebuild_matrices,
    matrices_from_cells,
    search_cells,
)
from peppp.tracking.runs import (
    ROLES,
    cell_run_name,
    delete_run,
    end_run,
    log_cell,
    log_cells_batch,
    log_files,
    log_metrics,
    log_params,
    parent_run,
    round_methods,
    start_parent_run,
)
from peppp.tracking.store import connect, get_or_create_experiment, resolve_tracking_uri, run_link
from peppp.tracking.summaries import log_frontier_plot, log_sweep_summary
from peppp.tracking.transfer import ExportedMatrix, export_matrix, import_matrix, read_matrix_csv

__all__ = [
    "ROLES",
    "SearchCells",
    "finished_seeds",
    "free_dead_claims",
    "log_files",
    "log_metrics",
    "log_params",
    "log_frontier_plot",
    "log_sweep_summary",
    "recover_orphans",
    "round_methods",
    "search_cells",
    "Claim",
    "claim_cell",
    "list_claims",
    "release_claim",
    "ExportedMatrix",
    "cell_run_name",
    "config_sort_key",
    "connect",
    "delete_run",
    "end_run",
    "export_matrix",
    "finished_cells",
    "get_or_create_experiment",
    "import_matrix",
    "load_cells",
    "rebuild_matrices",
    "log_cell",
    "log_cells_batch",
    "matrices_from_cells",
    "parent_run",
    "read_matrix_csv",
    "resolve_tracking_uri",
    "run_link",
    "start_parent_run",
]
