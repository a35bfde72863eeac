"""Shared by the flow tests: a fresh sqlite MLflow store per test, copied from one migrated once per
session. Imported by name (`from flow_helpers import store_uri`): a conftest.py here would shadow
tests/conftest.py for `from conftest import ...`. The flows run on Prefect's real engine and its
temporary local server (started once per test process)."""

from __future__ import annotations

import os
import shutil

# Prefect's INFO lines (e.g. "Stopping temporary server" at exit, after pytest has closed the captured
# stream) only add noise to test output. Set before the test modules import prefect.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory):
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def store_uri(tmp_path, monkeypatch, _migrated_db) -> str:
    """MLFLOW_TRACKING_URI pointing at an empty store in this test's tmp_path."""
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(_migrated_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def cell_counts(uri: str, experiment: str, *, role: str = "meta") -> dict[str, int]:
    """How many finished cell runs each cell key has in the store."""
    from peppp.tracking import load_cells

    cells = load_cells(experiment, role=role, tracking_uri=uri)
    return cells.groupby("cell_key").size().to_dict()
