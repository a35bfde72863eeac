"""`peppp frontier`: a registered frontier as a table or JSON, the pick within a budget, one-line errors."""

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import PAPER_DIR
from peppp.cli import main
from peppp.frontier import Frontier
from peppp.registry import register_frontier
from peppp.tracking.store import get_or_create_experiment

DATASET = "cifar10"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The paper's cifar10 row as a frontier (8 cells measured, the rest 'estimated' with a std), registered."""
    error = pd.read_csv(PAPER_DIR / "error.csv", index_col=0).loc[DATASET]
    memory = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0).loc[DATASET]
    measured = np.zeros(len(error), dtype=bool)
    measured[np.random.default_rng(0).choice(len(error), size=8, replace=False)] = True
    frontier = Frontier.from_estimates(
        dataset=DATASET,
        meta_experiment="paper88x99",
        configs=list(error.index),
        memory_mb=memory.to_numpy(),
        error=error.to_numpy(),
        error_std=np.where(measured, 0.0, 0.03),
        measured=measured,
        method="ed",
    )
    folder = tmp_path_factory.mktemp("frontier_cmd")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(get_or_create_experiment("frontiers", client=client)).info.run_id
    name, _ = register_frontier(frontier, run_id=run_id, client=client)
    return {"uri": uri, "name": name, "frontier": frontier, "error": error, "memory": memory}


def test_table_of_the_frontier(store, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    assert main(["frontier", "--dataset", DATASET]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("peppp-frontier-cifar10 version 1 (champion): dataset cifar10")
    pareto = store["frontier"].pareto()
    rows = out[3:]
    assert len(rows) == len(pareto)
    assert [row.split()[-1] for row in rows] == [p.config for p in pareto]
    assert all(("measured" in row) == p.measured for row, p in zip(rows, pareto))


def test_budget_and_json(store, capsys):
    error, memory = store["error"], store["memory"]
    budget = float(memory.median())
    where = ["--name", store["name"], "--tracking-uri", store["uri"]]
    assert main(["frontier", *where, "--budget", str(budget), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    best = error[memory <= budget].idxmin()  # every error is exact here, so the pick is the true best
    rec = out["recommendation"]
    assert rec["point"]["config"] == best and rec["budget_mb"] == budget
    assert rec["candidates"] == int((memory <= budget).sum())
    assert 0 < rec["probability_best"] <= 1 and rec["expected_regret"] >= 0
    assert Frontier.from_dict(out["frontier"]) == store["frontier"]
    assert out["pareto"] == [p.config for p in store["frontier"].pareto()]

    assert main(["frontier", *where, "--budget", str(budget), "--all"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 3 + len(error) + 2
    assert text[-1].startswith(f"within {budget:g} MB: {best} (")


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--budget", "10"], "budget 10 MB is below every configuration's memory; the cheapest"),
        (["--alias", "staging"], "has no alias 'staging'"),
        (["--version", "3"], "has no version 3"),
    ],
    ids=["budget-too-small", "unknown-alias", "unknown-version"],
)
def test_errors_are_one_line_and_exit_2(store, capsys, extra, words):
    assert main(["frontier", "--name", store["name"], "--tracking-uri", store["uri"], *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and words in captured.err
    assert captured.err.startswith("peppp frontier: error: ")


def test_unknown_name_and_unreachable_store(store, capsys):
    assert main(["frontier", "--name", "nope", "--tracking-uri", store["uri"]]) == 2
    err = capsys.readouterr().err
    assert "no registered frontier named 'nope'" in err and store["name"] in err
    assert main(["frontier", "--name", store["name"], "--tracking-uri", "http://127.0.0.1:9"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "unreachable" in captured.err
