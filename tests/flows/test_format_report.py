"""The format-report flow: the report from the store, logged as a `report` run, returned to the caller."""

from __future__ import annotations

import shutil

import pytest

from flows.format_report import format_report_flow
from peppp.errors import PepppError
from peppp.tracking import import_matrix


@pytest.fixture
def store_uri(tmp_path, _migrated_db):
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_db, db)
    uri = f"sqlite:///{db}"
    configs = ["mxfp6.e2m3/bf16", "fp8.e5m2/fp16", "e4m3/e7m9"]
    (tmp_path / "e.csv").write_text("dataset," + ",".join(configs) + "\nx,0.2,0.1,0.3\ny,0.1,0.2,0.3\nz,0.4,0.1,0.05\n")
    (tmp_path / "m.csv").write_text("dataset," + ",".join(configs) + "\nx,6,8,9\ny,6,8,9\nz,6,8,9\n")
    import_matrix(tmp_path / "e.csv", tmp_path / "m.csv", experiment="hw", tracking_uri=uri)
    return uri


def test_flow_logs_the_report(store_uri):
    import mlflow

    summary = format_report_flow("hw", budgets_mb=[7, 8.5, 10], tracking_uri=store_uri)
    f = summary.report.formats.set_index(["role", "format"])
    assert f.loc[("low", "mxfp6.e2m3"), "on frontier"] == 3  # the smallest everywhere
    assert list(f.loc[("low", "fp8.e5m2"), ["best@7MB", "best@8.5MB", "best@10MB"]]) == [0, 2, 1]
    assert f.loc[("low", "e4m3"), "best@10MB"] == 1
    run = mlflow.MlflowClient(store_uri).get_run(summary.run_id)
    assert run.data.tags["peppp.kind"] == "report" and run.info.status == "FINISHED"
    assert run.data.params["budgets_mb"] == "7,8.5,10"


def test_unknown_experiment_fails_in_one_line(store_uri):
    with pytest.raises(PepppError, match="no experiment named 'nope'"):
        format_report_flow("nope", tracking_uri=store_uri)
