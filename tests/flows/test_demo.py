"""The main job: the demo flow on a small grid (fast), and `peppp demo` on its embedded defaults from a
fresh folder (slow), each run twice: the rerun trains nothing and registers a new frontier version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from mlflow import MlflowClient

from flows.demo import DEMO_CONFIGS, DEMO_META_TASKS, demo
from peppp.training.datasets import list_tasks


def test_demo_defaults_are_offline_tasks_and_a_valid_grid():
    from peppp.formats import parse_config

    assert set(DEMO_META_TASKS) <= set(list_tasks())
    assert [str(parse_config(c)) for c in DEMO_CONFIGS] == list(DEMO_CONFIGS)


def test_demo_flow_builds_searches_registers_and_resumes(tmp_path, _migrated_db):
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_db, db)
    uri = f"sqlite:///{db}"
    small = {
        "experiment": "demo", "meta_datasets": ["digits", "digits[0-4]", "digits[5-9]"], "held_out": "digits[1,4,7]",
        "configs": ["e3m1/e6m7", "e5m3/e8m11", "fp32"], "recipe": "tiny", "n": 2, "rank": 2, "tracking_uri": uri,
    }
    first = demo(**small)
    assert (first.sweep.trained, first.search.trained) == (9, 2)
    assert first.search.registered == ("peppp-frontier-digits-1-4-7", 1)
    memory = sorted(p.memory_mb for p in first.search.frontier.points)
    assert first.budget_mb == memory[1]  # the median of three
    assert first.recommendation.point.memory_mb <= first.budget_mb

    second = demo(**small, budget_mb=memory[-1])
    assert (second.sweep.trained, second.sweep.skipped, second.search.trained, second.search.reused) == (0, 9, 0, 2)
    assert second.search.registered == ("peppp-frontier-digits-1-4-7", 2)
    assert second.budget_mb == memory[-1]
    # One experiment holding sweeps, rounds and frontier runs; a registered model with both versions.
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("demo").experiment_id
    kinds = [r.data.tags.get("peppp.kind") for r in client.search_runs([experiment_id], "tags.`peppp.kind` != ''")]
    assert sorted(set(kinds)) == ["frontier", "round", "sweep"]
    assert len(client.search_model_versions("name = 'peppp-frontier-digits-1-4-7'")) == 2


@pytest.mark.slow
def test_peppp_demo_from_a_fresh_folder(tmp_path):
    """The README's line 1 without setup: real cpu-recipe training of the embedded defaults, then a rerun."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "peppp.cli", "demo", "--no-progress"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    cells = len(DEMO_META_TASKS) * len(DEMO_CONFIGS)
    assert f"peppp-demo: {cells} cells planned, 0 already in the store, {cells} trained" in out
    assert "registered peppp-frontier-digits-3-5-8-9 version 1" in out
    assert re.search(r"recommendation within [\d.]+ MB: \S+ \([\d.]+ MB\), error", out)
    store = tmp_path / "mlruns" / "mlflow.db"
    assert f"ui --backend-store-uri sqlite:///{store}" in out
    seconds = int(re.search(r"done in (\d+) s", out).group(1))
    print(f"peppp demo: {seconds} s")  # the budget is 5 minutes on 2 cores; the machine may be shared

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{cells} already in the store, 0 trained" in again.stdout
    assert "(0 trained now, 4 from earlier runs)" in again.stdout
    assert "registered peppp-frontier-digits-3-5-8-9 version 2" in again.stdout
