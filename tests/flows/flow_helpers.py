"""Shared by the flow tests (the `store_uri` fixture itself is in tests/conftest.py). The flows run on
Prefect's real engine and its temporary local server (started once per test process)."""

from __future__ import annotations

import os

# Prefect's INFO lines (e.g. "Stopping temporary server" at exit, after pytest has closed the captured
# stream) only add noise to test output. Set before the test modules import prefect.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def cell_counts(uri: str, experiment: str, *, role: str = "meta") -> dict[str, int]:
    """How many finished cell runs each cell key has in the store."""
    from peppp.tracking import load_cells

    cells = load_cells(experiment, role=role, tracking_uri=uri)
    return cells.groupby("cell_key").size().to_dict()
