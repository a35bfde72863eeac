"""An external meta-dataset into the store as runs (import), and the store's matrices out as CSVs (export).

The CSV layout is the paper's: first column `dataset` (row labels), then one column per configuration
(`LOW/HIGH`), an empty cell for a missing measurement.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.formats import parse_config
from peppp.tracking.matrix import load_matrices, read_cells
from peppp.tracking.runs import ROLES, delete_run, end_run, log_cells_batch, start_parent_run
from peppp.tracking.store import connect

IMPORTED_SEED = -1  # an imported cell's seed is unknown


def read_matrix_csv(path: str | os.PathLike, *, what: str = "matrix") -> pd.DataFrame:
    """A matrix CSV as floats (datasets x configs), every label checked; exact round-trip parsing."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
    except OSError as exc:
        raise PepppError(f"cannot read the {what} CSV {path}: {exc.strerror}") from exc
    if not header or len(header) < 2:
        raise PepppError(f"{what} CSV {path} needs a header: dataset, then one column per configuration")
    labels = [h.strip() for h in header[1:]]
    duplicates = sorted({c for c in labels if labels.count(c) > 1})
    if duplicates:
        raise PepppError(f"{what} CSV {path}: configuration {duplicates[0]!r} appears twice; each must appear once")
    try:
        # Text first, then Python's correctly rounded float(): values survive a round trip exactly.
        frame = pd.read_csv(path, index_col=0, dtype=str)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PepppError(f"cannot parse the {what} CSV {path}: {str(exc).splitlines()[0]}") from exc
    frame.columns = labels
    if frame.empty:
        raise PepppError(f"{what} CSV {path} has no rows; it needs one row per dataset")
    names = frame.index.to_series()
    unnamed = names.isna() | (names.str.strip() == "")
    if unnamed.any():
        raise PepppError(f"{what} CSV {path}: data row {int(np.flatnonzero(unnamed)[0]) + 1} has no dataset name")
    frame.index = names.str.strip().to_numpy()
    if frame.index.duplicated().any():
        raise PepppError(f"{what} CSV {path}: dataset {frame.index[frame.index.duplicated()][0]!r} appears twice")
    values = np.full(frame.shape, np.nan)
    for j, config in enumerate(frame.columns):
        for i, text in enumerate(frame[config]):
            if isinstance(text, str):
                try:
                    values[i, j] = float(text)
                except ValueError:
                    raise PepppError(
                        f"{what} CSV {path}: cell ({frame.index[i]}, {config}) = {text!r} is not a number"
                    ) from None
    frame = pd.DataFrame(values, index=frame.index, columns=frame.columns)
    frame.index.name = "dataset"
    return frame


def validate_matrices(error: pd.DataFrame, memory: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check an (error, memory_mb) pair; returns them aligned to the error matrix's labels.

    Labels must match (same datasets, same configurations, each a valid `LOW/HIGH`); errors lie in
    [0, 1]; every measured error has a finite, positive memory. A missing error is a missing cell.
    """
    for axis, a, b in (("dataset", error.index, memory.index), ("configuration", error.columns, memory.columns)):
        only_error = [x for x in a if x not in set(b)]
        only_memory = [x for x in b if x not in set(a)]
        if only_error or only_memory:
            side, label = ("error", only_error[0]) if only_error else ("memory", only_memory[0])
            raise PepppError(f"{axis} {label!r} is in the {side} matrix only; both matrices need the same labels")
    memory = memory.reindex(index=error.index, columns=error.columns)
    for config in error.columns:
        parse_config(config)  # one line naming the bad configuration and the syntax allowed
    values = error.to_numpy()
    bad = ~np.isnan(values) & ((values < 0) | (values > 1) | ~np.isfinite(values))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise PepppError(f"error cell ({error.index[i]}, {error.columns[j]}) = {values[i, j]} is outside [0, 1]")
    mem = memory.to_numpy()
    bad = ~np.isnan(values) & ~(np.isfinite(mem) & (mem > 0))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise PepppError(
            f"memory cell ({error.index[i]}, {error.columns[j]}) = {mem[i, j]} must be a finite number > 0 "
            "where the error is measured"
        )
    if np.isnan(values).all():
        raise PepppError("the error matrix has no measured cell; nothing to import")
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
    error, memory = validate_matrices(
        read_matrix_csv(error_csv, what="error"), read_matrix_csv(memory_csv, what="memory")
    )
    if not isinstance(recipe, str) or not recipe.strip():
        raise PepppError(f"recipe {recipe!r} is empty; give the training recipe's name")
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
    existing = client.get_experiment_by_name(experiment)
    if existing is not None and existing.lifecycle_stage == "active":
        present = set(read_cells(client, existing.experiment_id)["cell_key"])
        overlap = [str(r.key) for r in results if str(r.key) in present]
        if overlap:
            raise PepppError(
                f"experiment {experiment!r} already holds {len(overlap)} of these {len(results)} cells "
                f"(e.g. {overlap[0]}); import into a new experiment or delete those runs first"
            )
    parent = start_parent_run(
        experiment,
        kind="import",
        name=f"import {Path(error_csv).name}",
        tags={
            "peppp.source.error": str(Path(error_csv).resolve()),
            "peppp.source.memory": str(Path(memory_csv).resolve()),
            "peppp.shape": f"{error.shape[0]}x{error.shape[1]}",
        },
        tracking_uri=client.tracking_uri,
    )
    try:
        run_ids = log_cells_batch(
            experiment, results, role=role, parent_run_id=parent, tracking_uri=client.tracking_uri
        )
    except BaseException:
        end_run(parent, status="FAILED", tracking_uri=client.tracking_uri)
        delete_run(parent, tracking_uri=client.tracking_uri)
        raise
    end_run(parent, tracking_uri=client.tracking_uri)
    return len(run_ids)


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
    error, memory = load_matrices(experiment, role=role, recipe=recipe, tracking_uri=tracking_uri)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PepppError(f"cannot create the output folder {out}: {exc.strerror}") from exc
    paths = (out / "error.csv", out / "memory_mb.csv")
    for matrix, path in zip((error, memory), paths):
        _write_csv_atomically(matrix, path)
    return ExportedMatrix(
        error_csv=paths[0],
        memory_csv=paths[1],
        n_datasets=error.shape[0],
        n_configs=error.shape[1],
        n_measured=int(error.notna().to_numpy().sum()),
    )


def _write_csv_atomically(matrix: pd.DataFrame, path: Path) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            matrix.to_csv(stream, index_label="dataset", na_rep="", lineterminator="\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
