"""Cell runs and parent runs as MLflow sees them."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from mlflow.exceptions import MlflowException

from peppp._checks import MAX_LABEL_CHARS
from peppp.errors import PepppError
from peppp.tracking import (
    connect,
    get_or_create_experiment,
    log_cell,
    log_cells_batch,
    parent_run,
    start_parent_run,
)
from peppp.tracking.runs import _record, _write_each


def test_log_cell_writes_params_metrics_tags_and_a_readable_name(store_uri, cell):
    result = cell("fashion-mnist[0,1]", "e4m3/e7m9", 0.125, 321.5, seed=3, train_seconds=12.0, final_loss=0.4)
    run = connect().get_run(log_cell("meta", result))
    assert run.info.run_name == "fashion-mnist[0,1]|e4m3/e7m9"
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "dataset": "fashion-mnist[0,1]",
        "config": "e4m3/e7m9",
        "low": "e4m3",
        "high": "e7m9",
        "network": "resnet18",
        "recipe": "quick",
        "seed": "3",
    }
    assert run.data.metrics == {"test_error": 0.125, "memory_mb": 321.5, "train_seconds": 12.0, "final_loss": 0.4}
    tags = run.data.tags
    assert tags["peppp.cell_key"] == "fashion-mnist[0,1]|e4m3/e7m9|quick"
    assert (tags["peppp.status"], tags["peppp.role"]) == ("ok", "meta")
    assert tags["peppp.dataset"] == "fashion-mnist[0,1]"
    assert (tags["peppp.config"], tags["peppp.recipe"]) == ("e4m3/e7m9", "quick")
    assert run.info.end_time - run.info.start_time == 12_000


def test_failed_cell_is_a_failed_run_without_unmeasured_metrics(store_uri, cell):
    result = cell(error=math.nan, status="failed", message="CUDA out of memory\nat step 3")
    run = connect().get_run(log_cell("meta", result, role="probe"))
    assert run.info.status == "FAILED"
    assert "test_error" not in run.data.metrics and "final_loss" not in run.data.metrics
    assert run.data.tags["peppp.message"].startswith("CUDA out of memory")
    assert run.data.tags["peppp.role"] == "probe"


def test_cells_nest_under_a_parent_run(store_uri, cell):
    with parent_run("meta", kind="sweep", name="sweep 1", tags={"peppp.grid": "paper"}) as parent_id:
        child = log_cell("meta", cell(), parent_run_id=parent_id)
    client = connect()
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "sweep 1"
    assert parent.data.tags["peppp.kind"] == "sweep" and parent.data.tags["peppp.grid"] == "paper"
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == parent_id


def test_parent_run_fails_when_its_body_raises(store_uri):
    with pytest.raises(RuntimeError), parent_run("meta", kind="round") as parent_id:
        raise RuntimeError("training crashed")
    assert connect().get_run(parent_id).info.status == "FAILED"


@pytest.mark.parametrize("kind", ["", "Sweep", "a b", 3])
def test_bad_parent_kind(store_uri, kind):
    with pytest.raises(PepppError, match="kind"):
        start_parent_run("meta", kind=kind)


def test_bad_role(store_uri, cell):
    with pytest.raises(PepppError, match="role 'train'"):
        log_cell("meta", cell(), role="train")


def _as_seen(run) -> tuple:
    info, data = run.info, run.data
    return (info.run_name, info.status, info.lifecycle_stage, info.user_id, data.params, data.metrics, data.tags)


def test_bulk_batch_reads_back_exactly_like_runs_logged_one_by_one(store_uri, cell):
    results = [
        cell("digits", "e3m1/e6m7", 0.5, 10.0),
        cell("digits", "e5m3/e8m11", math.nan, 30.0, status="failed", message="boom"),
        cell("mnist", "fp32", 0.9, 50.0, status="diverged", final_loss=math.inf),
    ]
    client = connect()
    parent = start_parent_run("bulk", kind="import")
    bulk_ids = log_cells_batch("bulk", results, parent_run_id=parent)
    experiment_id = get_or_create_experiment("one-by-one")
    records = [_record(r, role="meta", parent_run_id=parent, start_ms=1, end_ms=1) for r in results]
    single_ids = _write_each(client, experiment_id, records)
    for bulk_id, single_id in zip(bulk_ids, single_ids):
        bulk, single = client.get_run(bulk_id), client.get_run(single_id)
        assert _as_seen(bulk) == _as_seen(single)
        assert bulk.info.artifact_uri.endswith(f"/{bulk_id}/artifacts")
    query = "tags.`peppp.status` = 'diverged' and metrics.test_error > 0.8"
    found = client.search_runs([get_or_create_experiment("bulk")], filter_string=query)
    assert [r.info.run_id for r in found] == [bulk_ids[2]]


def test_long_labels_are_refused_not_truncated(store_uri, cell):
    # MLflow keeps 6000 characters of a param value: two networks sharing them would become one
    # (issue 15, probe 4), so a label longer than peppp keeps is refused before anything is logged.
    with pytest.raises(PepppError, match="7000 characters long"):
        replace(cell(), network="x" * 7000)
    longest = replace(cell(), network="x" * MAX_LABEL_CHARS)
    client = connect()
    bulk = client.get_run(log_cells_batch("bulk", [longest])[0])
    single = client.get_run(log_cell("single", longest))
    assert bulk.data.params["network"] == single.data.params["network"] == "x" * MAX_LABEL_CHARS


def _with_params(record, **params):
    return replace(record, params={**record.params, **params})


def test_bulk_batch_is_all_or_nothing(store_uri, cell, monkeypatch):
    import peppp.tracking.runs as runs

    record = runs._record
    # A NULL param value passes MLflow's validation but not the params table: the failure comes
    # after the runs and tags of this batch are already inserted, so only a rollback can undo them.
    def record_with_a_null_param(result, **kwargs):
        built = record(result, **kwargs)
        return _with_params(built, seed=None) if result.dataset == "mnist" else built

    monkeypatch.setattr(runs, "_record", record_with_a_null_param)
    with pytest.raises(PepppError, match="cannot log 3 cells"):
        log_cells_batch("meta", [cell("digits"), cell("cifar10"), cell("mnist")])
    assert connect().search_runs([get_or_create_experiment("meta")]) == []


def test_one_by_one_writer_deletes_what_it_wrote_when_a_run_fails(store_uri, cell):
    client = connect()
    experiment_id = get_or_create_experiment("meta")
    good, bad = (
        _record(c, role="meta", parent_run_id=None, start_ms=1, end_ms=1) for c in (cell("digits"), cell("mnist"))
    )
    bad = replace(bad, metrics={"test_error": "not a number"})
    with pytest.raises(MlflowException):
        _write_each(client, experiment_id, [good, bad])
    assert client.search_runs([experiment_id]) == []
