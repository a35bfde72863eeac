"""Fixtures shared by the command tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def flag_only_store(tmp_path, monkeypatch, _migrated_db) -> str:
    """An empty store passed by --tracking-uri only (copied from conftest's migrated template;
    MLFLOW_TRACKING_URI unset, so a command that ignored the flag would not find it)."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(_migrated_db, db)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{db}"
