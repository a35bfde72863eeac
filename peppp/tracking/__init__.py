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

# Names load their module on first use (module __getattr__), so `import peppp.tracking` stays light:
# a registered frontier is read from a sqlite store without importing MLflow at all.
_LAZY = {
    "Claim": "peppp.tracking.claims",
    "ExportedMatrix": "peppp.tracking.transfer",
    "ROLES": "peppp.tracking.runs",
    "SearchCells": "peppp.tracking.matrix",
    "cell_run_name": "peppp.tracking.runs",
    "claim_cell": "peppp.tracking.claims",
    "config_sort_key": "peppp.tracking.matrix",
    "connect": "peppp.tracking.store",
    "delete_run": "peppp.tracking.runs",
    "end_run": "peppp.tracking.runs",
    "experiment_report": "peppp.tracking.summaries",
    "export_matrix": "peppp.tracking.transfer",
    "finished_cells": "peppp.tracking.matrix",
    "finished_seeds": "peppp.tracking.matrix",
    "free_dead_claims": "peppp.tracking.liveness",
    "get_or_create_experiment": "peppp.tracking.store",
    "import_matrix": "peppp.tracking.transfer",
    "list_claims": "peppp.tracking.claims",
    "load_cells": "peppp.tracking.matrix",
    "log_cell": "peppp.tracking.runs",
    "log_cells_batch": "peppp.tracking.runs",
    "log_files": "peppp.tracking.runs",
    "log_format_report": "peppp.tracking.summaries",
    "log_frontier_plot": "peppp.tracking.summaries",
    "log_metrics": "peppp.tracking.runs",
    "log_params": "peppp.tracking.runs",
    "log_sweep_summary": "peppp.tracking.summaries",
    "matrices_from_cells": "peppp.tracking.matrix",
    "parent_run": "peppp.tracking.runs",
    "read_matrix_csv": "peppp.tracking.transfer",
    "rebuild_matrices": "peppp.tracking.matrix",
    "recover_orphans": "peppp.tracking.liveness",
    "release_claim": "peppp.tracking.claims",
    "resolve_tracking_uri": "peppp.tracking.store",
    "round_methods": "peppp.tracking.runs",
    "run_link": "peppp.tracking.store",
    "search_cells": "peppp.tracking.matrix",
    "start_parent_run": "peppp.tracking.runs",
}


__all__ = [
    "ROLES",
    "SearchCells",
    "finished_seeds",
    "free_dead_claims",
    "log_files",
    "log_format_report",
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
    "experiment_report",
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


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'peppp.tracking' has no attribute {name!r}")
