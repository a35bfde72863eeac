"""An external meta-dataset into the store as runs (import), and the store's matrices out as CSVs (export).

The CSV layout is the paper's: first column `dataset` (row labels), then one column per configuration
(`LOW/HIGH`), an empty cell for a missing measurement.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from peppp import _checks as checks
from peppp._io import atomic_write_text
from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.formats import parse_config
from peppp.matrices import read_matrix_csv
from peppp.matrices import validate_matrices
from peppp.tracking.claims import claim_cell, list_claims, release_claim
from peppp.tracking.liveness import recover_orphans
from peppp.tracking.matrix import rebuild_matrices, read_cells
from peppp.tracking.runs import ROLES, log_cells_batch, parent_run
from peppp.tracking.tags import KIND_IMPORT
from peppp.tracking.store import connect

IMPORTED_SEED = -1  # an imported cell's seed is unknown
# The claim an import holds on its experiment (a cell key is dataset|config|recipe: no clash).
IMPORT_CLAIM_KEY = "peppp-import"
IMPORT_CLAIM_TTL_S = 3600.0  # a dead import's claim is freed at once by recovery; this is the backstop


def validate_import(error: pd.DataFrame, memory: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check an (error, memory_mb) pair for import; returns them aligned to the error matrix's labels.

    As `peppp.matrices.validate_matrices` (missing cells allowed), and every configuration label must
    be a valid `LOW/HIGH` (its formats are logged as params).
    """
    error, memory = validate_matrices(error, memory)
    for config in error.columns:
        parse_config(config)  # one line naming the bad configuration and the syntax allowed
    return error, memory


def import_matrix(
    error_csv: str | os.PathLike,
    memory_csv: str | os.PathLike,
    *,
    experiment: str,
    recipe: str = "imported",
    network: str = "unknown",
    role: str = "meta",
    tracking_uri: str | None = None,
) -> int:
    """Import a meta-dataset as runs: one parent `import` run, one child run per measured cell.

    Everything is checked before anything is written. Re-importing is refused: if `experiment`
    already holds any of these cell keys (dataset|config|recipe) the import stops, so a matrix is
    never counted twice; delete those runs or import into a new experiment. Cells with a memory but
    no error are not imported (a run is a measurement). Returns the number of cell runs written.
    """
    error, memory = validate_import(
        read_matrix_csv(error_csv, what="error"), read_matrix_csv(memory_csv, what="memory")
    )
    experiment = checks.label(experiment, "experiment")
    recipe, network = checks.label(recipe, "recipe"), checks.label(network, "network")
    if role not in ROLES:
        raise PepppError(f"role {role!r} is not one of {', '.join(ROLES)}")
    results = [
        CellResult(
            dataset=dataset,
            config=str(parse_config(config)),
            recipe=recipe,
            network=network,
            seed=IMPORTED_SEED,
            error=float(error.at[dataset, config]),
            memory_mb=float(memory.at[dataset, config]),
            train_seconds=math.nan,
            final_loss=math.nan,
        )
        for dataset in error.index
        for config in error.columns
        if not math.isnan(error.at[dataset, config])
    ]
    client = connect(tracking_uri)
    # An import killed mid-way left its parent RUNNING (and perhaps its claim): closed as KILLED first.
    recover_orphans(experiment, tracking_uri=client.tracking_uri)
    _refuse_duplicates(client, experiment, results)  # a repeated import: refused before anything is written
    tags = {
        "peppp.source.error": str(Path(error_csv).resolve()),
        "peppp.source.memory": str(Path(memory_csv).resolve()),
        "peppp.shape": f"{error.shape[0]}x{error.shape[1]}",
    }
    # All or nothing: a failed import's parent run is deleted with it (its cells never went in).
    with parent_run(experiment, kind=KIND_IMPORT, name=f"import {Path(error_csv).name}", tags=tags,
                    tracking_uri=client.tracking_uri, delete_on_error=True) as parent:
        # One import into an experiment at a time: the claim is one atomic write, so of two imports
        # started together exactly one goes on to the duplicate check and the write.
        _claim_experiment(client, experiment, parent)
        try:
            _refuse_duplicates(client, experiment, results)
            run_ids = log_cells_batch(experiment, results, role=role, parent_run_id=parent,
                                      tracking_uri=client.tracking_uri)
        finally:
            release_claim(experiment, IMPORT_CLAIM_KEY, owner=parent, tracking_uri=client.tracking_uri)
    return len(run_ids)


def _claim_experiment(client, experiment: str, parent: str) -> None:
    """Hold the experiment's import claim for run `parent`, or fail naming the import that holds it."""
    if claim_cell(experiment, IMPORT_CLAIM_KEY, owner=parent, ttl_s=IMPORT_CLAIM_TTL_S,
                  tracking_uri=client.tracking_uri):
        return
    holder = next((c.owner for c in list_claims(experiment, tracking_uri=client.tracking_uri)
                   if c.cell_key == IMPORT_CLAIM_KEY), None)
    what = f"run {holder}"
    with contextlib.suppress(Exception):  # the holder may finish between the claim and this look-up
        run = client.get_run(holder)
        source = run.data.tags.get("peppp.source.error", "")
        what = f"run {holder} ({run.info.run_name or 'import'}{', from ' + source if source else ''})"
    raise PepppError(
        f"another import into experiment {experiment!r} is running: {what}; wait for it to finish, then import "
        "again (cells it wrote are refused as duplicates) or import into another experiment"
    )


def _refuse_duplicates(client, experiment: str, results: list[CellResult]) -> None:
    existing = client.get_experiment_by_name(experiment)
    if existing is None or existing.lifecycle_stage != "active":
        return
    present = set(read_cells(client, existing.experiment_id)["cell_key"])
    overlap = [str(r.key) for r in results if str(r.key) in present]
    if overlap:
        raise PepppError(
            f"experiment {experiment!r} already holds {len(overlap)} of these {len(results)} cells "
            f"(e.g. {overlap[0]}); import into a new experiment or delete those runs first"
        )


@dataclass(frozen=True)
class ExportedMatrix:
    """Where `export_matrix` wrote the matrices, and what they hold."""

    error_csv: Path
    memory_csv: Path
    n_datasets: int
    n_configs: int
    n_measured: int


def export_matrix(
    experiment: str,
    out_dir: str | os.PathLike,
    *,
    role: str | None = "meta",
    recipe: str | None = None,
    tracking_uri: str | None = None,
) -> ExportedMatrix:
    """Write `error.csv` and `memory_mb.csv` (the paper's layout) rebuilt from the experiment's runs.

    The matrices are rebuilt first and each file is written whole (temporary file, then rename), so a
    bad experiment or a crash leaves no half-written CSV.
    """
    error, memory = rebuild_matrices(experiment, role=role, recipe=recipe, tracking_uri=tracking_uri)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PepppError(f"cannot create the output folder {out}: {exc.strerror}") from exc
    paths = (out / "error.csv", out / "memory_mb.csv")
    for matrix, path in zip((error, memory), paths):
        _write_csv(matrix, path)
    return ExportedMatrix(
        error_csv=paths[0],
        memory_csv=paths[1],
        n_datasets=error.shape[0],
        n_configs=error.shape[1],
        n_measured=int(error.notna().to_numpy().sum()),
    )


def _write_csv(matrix: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, matrix.to_csv(index_label="dataset", na_rep="", lineterminator="\n"))
