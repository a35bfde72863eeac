"""The active_search flow against a real meta-dataset in sqlite: its picks are the library's, each probe is
a run under its round, resume trains nothing twice, cap and budget hold, the frontier registers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from mlflow import MlflowClient

from flows.active_search import active_search
from flows.meta_train import meta_train
from peppp.active import ActiveSearch, embed_meta_matrix
from peppp.errors import PepppError
from peppp.registry import fetch_frontier
from peppp.tracking import load_cells, rebuild_matrices

META = ["digits", "digits[0-4]", "digits[5-9]"]
CONFIGS = ["e3m1/e6m7", "e4m3/e7m9", "e5m3/e8m11", "fp32"]
HELD_OUT = "digits[3,5,8,9]"


@pytest.fixture(scope="module")
def meta_store(tmp_path_factory, _migrated_db):
    """A store with a 3 x 4 meta-training matrix (tiny recipe), built once for the module."""
    db = tmp_path_factory.mktemp("search") / "mlflow.db"
    shutil.copyfile(_migrated_db, db)
    uri = f"sqlite:///{db}"
    meta_train("meta", META, CONFIGS, recipe="tiny", tracking_uri=uri)
    return {"uri": uri, "db": db}


@pytest.fixture
def store_uri(meta_store, tmp_path):
    """A private copy of the meta store for one test."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(meta_store["db"], db)
    return f"sqlite:///{db}"


def library_picks(uri: str, n: int, *, rank: int, memory: np.ndarray, **kwargs) -> list[str]:
    error, _ = rebuild_matrices("meta", tracking_uri=uri)
    meta = embed_meta_matrix(error.to_numpy(), rank=rank)
    search = ActiveSearch(list(error.columns), meta.embeddings, memory, n=n, **kwargs)
    return [str(error.columns[i]) for i in search.next_batch(n)]


def test_probes_are_the_designs_picks_logged_under_their_rounds(store_uri):
    summary = active_search(HELD_OUT, "meta", n=2, rank=2, method="ed", tracking_uri=store_uri)
    memory = np.array([p.memory_mb for p in summary.frontier.points])
    assert list(summary.measured) == library_picks(store_uri, 2, rank=2, memory=memory)
    assert (summary.trained, summary.reused, summary.failed) == (2, 0, ())
    assert summary.registered is None and len(summary.round_run_ids) == 2

    probes = load_cells("meta", role="probe", tracking_uri=store_uri)
    assert sorted(probes["config"]) == sorted(summary.measured)
    assert set(probes["dataset"]) == {"digits[3,5,8,9]"}
    client = MlflowClient(store_uri)
    for round_id, config in zip(summary.round_run_ids, summary.measured):
        round_run = client.get_run(round_id)
        assert round_run.info.status == "FINISHED"
        assert round_run.data.tags["peppp.kind"] == "round"
        assert round_run.data.metrics["n_measured"] >= 1
        child = probes[probes["config"] == config].iloc[0]
        assert client.get_run(child["run_id"]).data.tags["mlflow.parentRunId"] == round_id

    frontier = summary.frontier
    assert frontier.dataset == "digits[3,5,8,9]" and frontier.recipe == "tiny" and frontier.method == "ed"
    assert [p.config for p in frontier.points] == CONFIGS
    measured = {p.config: p for p in frontier.points if p.measured}
    assert set(measured) == set(summary.measured)
    for config, point in measured.items():
        assert point.error == probes.set_index("config").loc[config, "test_error"]


def test_rerun_reuses_the_stored_probes_and_trains_only_new_ones(store_uri):
    first = active_search(HELD_OUT, "meta", n=2, rank=2, tracking_uri=store_uri)
    again = active_search(HELD_OUT, "meta", n=2, rank=2, tracking_uri=store_uri)
    assert (again.trained, again.reused, again.round_run_ids) == (0, 2, ())
    assert again.measured == first.measured
    more = active_search(HELD_OUT, "meta", n=3, rank=2, batch=2, tracking_uri=store_uri)
    assert (more.trained, more.reused, len(more.round_run_ids)) == (1, 2, 1)
    probes = load_cells("meta", role="probe", tracking_uri=store_uri)
    assert probes.groupby("config").size().max() == 1 and len(probes) == 3


def test_cap_and_budget_bound_what_is_trained(store_uri):
    capped = active_search(HELD_OUT, "meta", n=4, rank=2, cap_mb=1.0, tracking_uri=store_uri)
    memory = {p.config: p.memory_mb for p in capped.frontier.points}
    assert capped.measured and all(memory[c] <= 1.0 for c in capped.measured)
    assert len(capped.measured) == sum(m <= 1.0 for m in memory.values())
    cheapest_two = sum(sorted(memory.values())[:2])
    budget = active_search("digits[1,4,7]", "meta", n=4, rank=2, budget_mb=cheapest_two, tracking_uri=store_uri)
    assert 1 <= len(budget.measured) and budget.spent_mb <= cheapest_two


def test_register_publishes_the_frontier(store_uri):
    summary = active_search(HELD_OUT, "meta", n=2, rank=2, register_frontier=True, tracking_uri=store_uri)
    name, version = summary.registered
    assert (name, version) == ("peppp-frontier-digits-3-5-8-9", 1)
    fetched = fetch_frontier(name, tracking_uri=store_uri)
    assert fetched.to_json() == summary.frontier.to_json()
    # The estimated points name the run that estimated them: a finished `frontier` run holding the artifacts.
    fit_runs = {p.run_ids for p in fetched.points if not p.measured}
    assert len(fit_runs) == 1
    (fit_run_id,) = fit_runs.pop()
    client = MlflowClient(store_uri)
    run = client.get_run(fit_run_id)
    assert run.data.tags["peppp.kind"] == "frontier" and run.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(fit_run_id, "frontier")) == [
        "frontier/frontier.csv", "frontier/frontier.json", "frontier/frontier.png",
    ]


def test_bad_input_is_a_one_line_error(store_uri):
    for kwargs, message in (
        ({"dataset": "nosuchset"}, "unknown dataset 'nosuchset'"),
        ({"rank": 4}, "rank 4 must be an integer between 1 and 3"),
        ({"meta_experiment": "empty"}, "no experiment named 'empty'"),
        ({"method": "nosuch"}, "unknown method 'nosuch'"),
        ({"cap_mb": 0.01}, "below every configuration's memory"),
    ):
        args = {"dataset": HELD_OUT, "meta_experiment": "meta", "n": 2, "rank": 2, **kwargs}
        with pytest.raises(PepppError, match=message):
            active_search(**args, tracking_uri=store_uri)
    assert load_cells("meta", role="probe", tracking_uri=store_uri).empty


def test_rounds_and_the_registered_frontier_explain_themselves(store_uri):
    """Each round: a description, its counts and the frontier plot; the frontier run: params and
    metrics; Prefect: a markdown page of the registered frontier with the pick per budget."""
    import asyncio

    from prefect.client.orchestration import get_client

    from peppp.tracking.tags import TAG_NOTE

    summary = active_search(HELD_OUT, "meta", n=2, rank=2, method="ed", register_frontier=True, tracking_uri=store_uri)
    client = MlflowClient(store_uri)
    for round_id in summary.round_run_ids:
        run = client.get_run(round_id)
        assert "picked" in run.data.tags[TAG_NOTE]
        assert run.data.metrics["trained"] == 1 and run.data.metrics["seconds"] > 0
        assert [a.path for a in client.list_artifacts(round_id)] == ["frontier.png"]
    name, version = summary.registered
    frontier_run = client.get_run(client.get_model_version(name, str(version)).run_id)
    assert frontier_run.data.params["method"] == "ed" and frontier_run.data.params["dataset"] == HELD_OUT
    assert frontier_run.data.metrics["n_measured"] == 2 and frontier_run.data.metrics["pareto_points"] >= 1

    async def artifacts():
        async with get_client() as prefect:
            return await prefect.read_latest_artifacts()

    pages = {a.key: a for a in asyncio.run(artifacts())}
    page = pages["frontier-digits-3-5-8-9"]
    assert f"version {version}" in page.data and "pick" in page.data and frontier_run.info.run_id in page.data
