"""import_matrix with broken CSVs: one PepppError and not one row written to the store."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from hypothesis import example, given

from peppp.tracking import import_matrix, rebuild_matrices, transfer
from properties.support import Refused, budget, csv_bytes, outcome, paper_slice

ERROR = paper_slice("error.csv")
MEMORY = paper_slice("memory_mb.csv")
TABLES = ("experiments", "runs", "tags", "params", "metrics", "latest_metrics")
_counter = itertools.count()


def _rows(db: Path) -> dict[str, int]:
    """Rows per MLflow table, read with sqlite itself: deleted runs and experiments count too."""
    with sqlite3.connect(db) as connection:
        return {table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}


@pytest.fixture
def store(store_uri) -> tuple[str, Path]:
    return store_uri, Path(store_uri.removeprefix("sqlite:///"))


@budget(60)
@given(csv_bytes(ERROR), csv_bytes(MEMORY))
@example(ERROR, MEMORY)
@example(ERROR, b"dataset,e3m1/e6m7\n")
@example(ERROR.replace(b"0.8549", b"-0.1"), MEMORY)
def test_a_broken_import_writes_nothing(store, error_bytes, memory_bytes):
    uri, db = store
    i = next(_counter)
    error_csv, memory_csv = db.parent / f"error{i}.csv", db.parent / f"memory{i}.csv"
    error_csv.write_bytes(error_bytes)
    memory_csv.write_bytes(memory_bytes)
    before = _rows(db)
    experiment = f"import-{i}"
    written = outcome(lambda: import_matrix(error_csv, memory_csv, experiment=experiment, tracking_uri=uri))
    after = _rows(db)
    if isinstance(written, Refused):
        assert after == before, f"refused ({written.message}) but the store changed: {before} -> {after}"
        return
    # Accepted: one parent run and one run per measured cell, holding exactly the CSV's measured cells.
    assert after["runs"] == before["runs"] + written + 1
    expected = transfer.read_matrix_csv(error_csv).stack().dropna()
    error, _ = rebuild_matrices(experiment, role="meta", recipe="imported", tracking_uri=uri)
    rebuilt = error.stack().dropna()
    assert written == len(expected)
    assert rebuilt.sort_index().to_dict() == expected.sort_index().to_dict()


def test_a_repeated_import_is_refused_before_anything_is_written(store):
    uri, db = store
    error_csv, memory_csv = db.parent / "error.csv", db.parent / "memory.csv"
    error_csv.write_bytes(ERROR)
    memory_csv.write_bytes(MEMORY)
    assert import_matrix(error_csv, memory_csv, experiment="paper", tracking_uri=uri) == 18
    before = _rows(db)
    refused = outcome(lambda: import_matrix(error_csv, memory_csv, experiment="paper", tracking_uri=uri))
    assert isinstance(refused, Refused) and "already holds 18 of these 18 cells" in refused.message
    assert _rows(db) == before
