"""The meta_train flow: every cell trained and logged once, resume skips what the store holds, failed
cells are recorded, and a crashed sweep's leftovers are cleaned up (real Prefect, real training, sqlite)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from flow_helpers import cell_counts
from mlflow import MlflowClient

from peppp.tracking.liveness import process_gone, process_tag
from peppp.tracking.tags import TAG_PROCESS
from flows.meta_train import meta_train, plan_cells
from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.tracking import load_cells, rebuild_matrices, log_cell, start_parent_run
from peppp.tracking.runs import TAG_CELL_KEY, TAG_STATUS

DATASETS = ["digits", "digits[0-4]"]
CONFIGS = ["fp32", "e3m1/e6m7"]


def test_sweep_trains_each_cell_once_and_a_rerun_only_the_new_ones(store_uri):
    first = meta_train("sweep", DATASETS, CONFIGS, recipe="tiny", tracking_uri=store_uri)
    assert (first.planned, first.skipped, first.trained, first.failed) == (4, 0, 4, ())
    error, memory = rebuild_matrices("sweep", tracking_uri=store_uri)
    assert list(error.index) == ["digits", "digits[0-4]"]
    assert sorted(error.columns) == sorted(CONFIGS)
    assert error.notna().all().all() and (memory > 0).all().all()

    second = meta_train("sweep", DATASETS, [*CONFIGS, "e5m3/e8m11"], recipe="tiny", tracking_uri=store_uri)
    assert (second.planned, second.skipped, second.trained) == (6, 4, 2)
    assert set(cell_counts(store_uri, "sweep").values()) == {1}
    assert len(cell_counts(store_uri, "sweep")) == 6

    third = meta_train("sweep", DATASETS, CONFIGS, recipe="tiny", tracking_uri=store_uri)
    assert (third.trained, third.parent_run_id) == (0, None)

    # Every cell run nests under its sweep's parent run, which ended FINISHED.
    client = MlflowClient(store_uri)
    for summary in (first, second):
        parent = client.get_run(summary.parent_run_id)
        assert parent.info.status == "FINISHED"
        children = load_cells("sweep", tracking_uri=store_uri).set_index("run_id").loc[list(summary.run_ids)]
        assert len(children) == summary.trained
        for run_id in summary.run_ids:
            assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == summary.parent_run_id


def test_a_cell_that_cannot_train_is_recorded_failed_and_the_sweep_goes_on(store_uri, tmp_path):
    missing = f"npz:{tmp_path / 'missing.npz'}"
    summary = meta_train("broken", ["digits", missing], ["fp32"], recipe="tiny", tracking_uri=store_uri)
    assert summary.trained == 2
    assert summary.failed == (f"{missing}|fp32|tiny",)
    cells = load_cells("broken", tracking_uri=store_uri).set_index("dataset")
    assert cells.loc["digits", "status"] == "ok"
    assert cells.loc[f"{missing}", "status"] == "failed"
    run = MlflowClient(store_uri).get_run(cells.loc[f"{missing}", "run_id"])
    assert run.info.status == "FAILED"
    assert "missing.npz" in run.data.tags["peppp.message"]
    # A failed cell is not finished: the next sweep tries it again.
    again = meta_train("broken", ["digits", missing], ["fp32"], recipe="tiny", tracking_uri=store_uri)
    assert (again.skipped, again.trained, len(again.failed)) == (1, 1, 1)


def test_leftovers_of_a_killed_sweep_are_cleaned_and_the_cell_trained_again(store_uri):
    """A sweep killed between creating a cell run and completing it leaves a RUNNING run (status tag
    already set) under a RUNNING parent whose process is gone: the rerun deletes the half run, closes
    the parent as KILLED and trains the cell once."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_tag = process_tag().rsplit(":", 2)[0] + f":{dead.stdout.strip()}:0"
    assert process_gone(dead_tag)
    parent = start_parent_run("crashed", kind="sweep", tags={TAG_PROCESS: dead_tag}, tracking_uri=store_uri)
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("crashed").experiment_id
    half = client.create_run(
        experiment_id,
        tags={
            TAG_CELL_KEY: "digits|fp32|tiny", TAG_STATUS: "ok", "peppp.role": "meta",
            "peppp.dataset": "digits", "peppp.config": "fp32", "peppp.recipe": "tiny",
            "mlflow.parentRunId": parent,
        },
    ).info.run_id

    summary = meta_train("crashed", ["digits"], ["fp32"], recipe="tiny", tracking_uri=store_uri)
    assert summary.recovered == (1, 1)
    assert (summary.skipped, summary.trained) == (0, 1)
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    assert client.get_run(parent).info.status == "KILLED"
    assert cell_counts(store_uri, "crashed") == {"digits|fp32|tiny": 1}


def test_a_live_sweeps_runs_are_left_alone(store_uri):
    from peppp.tracking import recover_orphans

    parent = start_parent_run("live", kind="sweep", tags={TAG_PROCESS: process_tag()}, tracking_uri=store_uri)
    assert recover_orphans("live", tracking_uri=store_uri) == (0, 0)
    assert MlflowClient(store_uri).get_run(parent).info.status == "RUNNING"


def test_resume_counts_finished_meta_runs_per_seed(store_uri):
    from peppp.tracking import finished_seeds

    def cell(seed, status="ok"):
        return CellResult(
            dataset="digits", config="fp32", recipe="tiny", network="convnet4", seed=seed, error=0.1,
            memory_mb=1.0, train_seconds=1.0, final_loss=0.5, status=status,
        )

    log_cell("seeds", cell(0), tracking_uri=store_uri)
    log_cell("seeds", cell(1, "diverged"), tracking_uri=store_uri)
    log_cell("seeds", cell(2, "failed"), tracking_uri=store_uri)
    log_cell("seeds", cell(3), role="probe", tracking_uri=store_uri)
    assert finished_seeds("seeds", role="meta", tracking_uri=store_uri) == {"digits|fp32|tiny": {0, 1}}
    summary = meta_train("seeds", ["digits"], ["fp32"], recipe="tiny", seeds=[0, 1, 2], tracking_uri=store_uri)
    assert (summary.skipped, summary.trained) == (2, 1)


def test_plan_checks_every_name_before_training():
    specs = plan_cells(["digits[0,1,2,3,4]", "digits[0-4]", "digits"], ["e4m3/e7m9", "fp32"], [0, 1])
    assert [s.dataset for s in specs[::4]] == ["digits[0-4]", "digits"]
    assert len(specs) == 8
    for datasets, configs, seeds, word in (
        ([], ["fp32"], [0], "datasets"),
        (["nosuchset"], ["fp32"], [0], "nosuchset"),
        (["digits"], ["e9m1/e6m7"], [0], "e9m1"),
        (["digits"], [], [0], "configs"),
        (["digits"], ["fp32"], [], "seeds"),
    ):
        with pytest.raises(PepppError, match=word):
            plan_cells(datasets, configs, seeds)


def test_a_sweep_leaves_its_summary_matrices_and_a_prefect_table(store_uri, tmp_path):
    """The parent run holds the counts as metrics and the grid's matrices (CSV, heatmap) as artifacts;
    the cell runs and the experiment describe themselves; Prefect keeps a table of the cells."""
    import pandas as pd
    from prefect.client.orchestration import get_client

    from peppp.tracking.tags import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND, TAG_NOTE

    summary = meta_train("shown", ["digits[0-4]", "digits[5-9]"], ["fp32", "e4m3/e7m9"], recipe="tiny",
                         tracking_uri=store_uri)
    client = MlflowClient(store_uri)
    parent = client.get_run(summary.parent_run_id)
    metrics = parent.data.metrics
    assert (metrics["planned"], metrics["trained"], metrics["skipped"], metrics["failed"]) == (4, 4, 0, 0)
    assert metrics["seconds"] > 0 and "sweep" in parent.data.tags[TAG_NOTE]
    listed = {a.path for a in client.list_artifacts(parent.info.run_id, "matrices")}
    assert listed == {"matrices/error.csv", "matrices/memory_mb.csv", "matrices/error_heatmap.png"}
    local = client.download_artifacts(parent.info.run_id, "matrices", str(tmp_path))
    error = pd.read_csv(f"{local}/error.csv", index_col=0)
    stored, _ = rebuild_matrices("shown", tracking_uri=store_uri)
    assert error.shape == (2, 2)
    assert error.loc["digits[0-4]", "fp32"] == stored.loc["digits[0-4]", "fp32"]  # not rounded
    experiment = client.get_experiment_by_name("shown")
    assert experiment.tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING and experiment.tags[TAG_NOTE]
    cell_run = client.get_run(summary.run_ids[0])
    assert "trained" in cell_run.data.tags[TAG_NOTE] and cell_run.data.params["config"] in cell_run.data.tags[TAG_NOTE]

    async def table():
        async with get_client() as prefect:
            return await prefect.read_latest_artifacts()

    import asyncio

    artifacts = {a.key: a for a in asyncio.run(table())}
    assert "meta-train-shown" in artifacts and "trained 4" in artifacts["meta-train-shown"].description
