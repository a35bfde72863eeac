"""`peppp report`: a table on stdout, a `report` run with CSV and PNG artifacts; bad input is one line, exit 2."""

from __future__ import annotations

import pytest

from peppp.cli import main

CONFIGS = ["mxfp4.e2m1/bf16", "fp8.e4m3/bf16", "mxint8/fp16"]


@pytest.fixture
def store_uri(flag_only_store) -> str:
    return flag_only_store


@pytest.fixture
def modern(store_uri, tmp_path) -> str:
    error = tmp_path / "error.csv"
    memory = tmp_path / "memory.csv"
    error.write_text("dataset," + ",".join(CONFIGS) + "\na,0.3,0.1,0.2\nb,0.5,0.45,0.05\n")
    memory.write_text("dataset," + ",".join(CONFIGS) + "\na,4,8,8.5\nb,4,8,8.5\n")
    argv = ["import-matrix", "--error", str(error), "--memory", str(memory), "--experiment", "modern"]
    assert main(argv + ["--tracking-uri", store_uri]) == 0
    return store_uri


def test_report_prints_and_logs_a_run(modern, capsys):
    import mlflow

    assert main(["report", "--experiment", "modern", "--budgets", "5,8.2,100", "--tracking-uri", modern]) == 0
    out = capsys.readouterr().out
    assert "2 datasets of 'modern'" in out and "mxfp4.e2m1" in out and "best@8.2MB" in out and "report run" in out
    client = mlflow.MlflowClient(modern)
    exp = client.get_experiment_by_name("modern")
    runs = client.search_runs([exp.experiment_id], "tags.`peppp.kind` = 'report'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id, "report")}
    assert names == {"report/formats.csv", "report/families.csv", "report/best_picks.csv", "report/report.png"}
    assert runs[0].data.metrics["frontier_share.mxfp4.e2m1"] == 1.0
    # the report run is no cell: the matrices and a second report are unchanged by it
    assert main(["report", "--experiment", "modern", "--no-log", "--tracking-uri", modern]) == 0
    assert len(client.search_runs([exp.experiment_id], "tags.`peppp.kind` = 'report'")) == 1


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "no experiment named 'nope'"),
    (["--experiment", "empty"], "no cell runs"),
    (["--experiment", "modern", "--budgets", "5,,6"], "empty entry"),
    (["--experiment", "modern", "--budgets", "-1"], "positive"),
    (["--experiment", "modern", "--frontiers-only"], "--frontier"),
])
def test_bad_input_is_one_line(modern, capsys, args, message):
    import mlflow

    mlflow.MlflowClient(modern).create_experiment("empty")
    assert main(["report", *args, "--tracking-uri", modern]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err


def test_report_with_a_registered_frontier(modern, capsys):
    from peppp.frontier import Frontier, FrontierPoint
    from peppp.registry import register_frontier
    from peppp.tracking import end_run, start_parent_run

    frontier = Frontier(dataset="c", meta_experiment="modern", points=(
        FrontierPoint(config="mxfp6.e3m2/bf16", memory_mb=6.0, error=0.01, error_std=0.01, measured=False),
        FrontierPoint(config="mxfp4.e2m1/bf16", memory_mb=4.0, error=0.3, error_std=0.01, measured=False),
    ))
    run_id = start_parent_run("modern", kind="frontier", tracking_uri=modern)
    name, _ = register_frontier(frontier, run_id=run_id, tracking_uri=modern)
    end_run(run_id, tracking_uri=modern)
    argv = ["report", "--experiment", "modern", "--budgets", "7", "--no-log", "--tracking-uri", modern]
    assert main(argv + ["--frontier", name]) == 0
    out = capsys.readouterr().out
    assert "3 datasets" in out and "mxfp6.e3m2" in out
    assert main(argv + ["--frontier", name, "--frontiers-only"]) == 0
    out = capsys.readouterr().out
    assert "1 datasets" in out and "mxint8" not in out
