"""An MLflow sqlite store migrated once for the property tests (migrations take seconds), copied per use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="package")
def migrated_db(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def store_uri(tmp_path, migrated_db) -> str:
    """A sqlite URI of an empty, migrated store in this test's tmp_path (artifacts go beside it)."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(migrated_db, db)
    return f"sqlite:///{db}"
