"""Fetching a registered frontier reads its run's frontier.json and nothing else (issue 15, probes 6, 8, 11)."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from peppp.errors import PepppError
from peppp.frontier import MAX_JSON_BYTES, Frontier, FrontierPoint
from peppp.registry import fetch_frontier, register_frontier
from peppp.tracking.store import get_or_create_experiment

FRONTIER = Frontier(dataset="confined", meta_experiment="meta", method="ed", points=(
    FrontierPoint("e3m1/e6m7", 100.0, 0.40, 0.05, False, ("fit",)),
    FrontierPoint("e4m3/e8m7", 150.0, 0.30, 0.0, True, ("r1",)),
))
_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, Path)):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def registered(store_uri):
    client = MlflowClient(store_uri)
    run_id = client.create_run(get_or_create_experiment("frontiers", client=client)).info.run_id
    name, version = register_frontier(FRONTIER, run_id=run_id, client=client)
    db = Path(store_uri.removeprefix("sqlite:///"))
    folder = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://")) / "frontier"
    return {"uri": store_uri, "client": client, "name": name, "version": version, "db": db, "folder": folder}


def _set_source(db: Path, name: str, source: str) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("update model_versions set source = ? where name = ?", (source, name))


@pytest.mark.parametrize("via_mlflow", [False, True])
@pytest.mark.parametrize("where", ["dotdot", "outside", "http"])
def test_a_source_outside_the_run_s_frontier_folder_is_refused(registered, tmp_path, where, via_mlflow):
    outside = tmp_path / "elsewhere" / "frontier"
    shutil.copytree(registered["folder"], outside)  # a frontier.json that passes the checksum: only where it lies is wrong
    source = {
        "dotdot": f"{registered['folder'].as_uri()}/../../../../elsewhere/frontier",
        "outside": outside.as_uri(),
        "http": "http://127.0.0.1:9/frontier",
    }[where]
    _set_source(registered["db"], registered["name"], source)
    client = registered["client"] if via_mlflow else None
    with pytest.raises(PepppError, match="is not the frontier folder of its run"):
        fetch_frontier(registered["name"], tracking_uri=registered["uri"], client=client)


def test_the_frontier_folder_of_its_run_is_still_fetched(registered):
    assert fetch_frontier(registered["name"], client=registered["client"]) == FRONTIER
    assert fetch_frontier(registered["name"], tracking_uri=registered["uri"]) == FRONTIER


@pytest.mark.parametrize("via_mlflow", [False, True])
def test_a_huge_artifact_is_refused_without_reading_it(registered, via_mlflow):
    global _opened
    big = registered["folder"] / "frontier.json"
    with big.open("r+b") as handle:
        handle.truncate(1024**3)  # sparse: 1 GB that takes no disk
    assert big.stat().st_size > MAX_JSON_BYTES
    client = registered["client"] if via_mlflow else None
    _opened = []
    try:
        with pytest.raises(PepppError, match="too large"):
            fetch_frontier(registered["name"], tracking_uri=registered["uri"], client=client)
    finally:
        opened, _opened = _opened, None
    # The fast path reads at most MAX_JSON_BYTES + 1 of it; through MLflow it is not opened (nor copied) at all.
    if via_mlflow:
        assert not any(Path(p).name == "frontier.json" for p in opened), opened
