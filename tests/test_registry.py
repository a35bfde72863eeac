"""Register a frontier in a real MLflow registry (sqlite in a temporary folder) and fetch it back."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from peppp.errors import PepppError
from peppp.frontier import Frontier, FrontierPoint
from peppp.registry import (
    fetch_frontier,
    frontier_model_name,
    list_frontier_models,
    load_registered_frontier,
    log_frontier,
    register_frontier,
)
from peppp.tracking.store import get_or_create_experiment

DATASET = "fashion-mnist:0,2,4,6"


def make_frontier(error_b: float, *, dataset: str = DATASET) -> Frontier:
    return Frontier(
        dataset=dataset,
        meta_experiment="meta-paper",
        method="ed",
        points=(
            FrontierPoint("e3m1/e6m7", 100.0, 0.40, 0.05, False, ("fit",)),
            FrontierPoint("e4m3/e8m7", 150.0, error_b, 0.0, True, ("r1", "r2")),
            FrontierPoint("e8m23/e8m23", 500.0, 0.10, 0.02, False, ("fit",)),
        ),
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (each costs a second or two), with two frontiers registered."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = get_or_create_experiment("frontiers", client=client)
    first, second = make_frontier(0.30), make_frontier(0.25)
    runs = [client.create_run(experiment_id).info.run_id for _ in range(2)]
    log_frontier(first, run_id=runs[0], client=client)  # logged first, registered after: logs once
    registered = [
        register_frontier(first, run_id=runs[0], client=client),
        register_frontier(second, run_id=runs[1], tracking_uri=uri),
    ]
    return {"uri": uri, "client": client, "experiment_id": experiment_id, "runs": runs,
            "frontiers": (first, second), "registered": registered}


def test_model_name_per_dataset():
    assert frontier_model_name(DATASET) == "peppp-frontier-fashion-mnist-0-2-4-6"
    assert frontier_model_name("CIFAR100-aquatic_mammals") == "peppp-frontier-cifar100-aquatic-mammals"
    with pytest.raises(PepppError, match="no letters or digits"):
        frontier_model_name(":/")


def test_register_twice_moves_champion_to_the_newest(store):
    name = frontier_model_name(DATASET)
    assert store["registered"] == [(name, 1), (name, 2)]
    client = store["client"]
    assert client.get_registered_model(name).aliases == {"champion": 2}
    version = client.get_model_version(name, "2")
    assert version.run_id == store["runs"][1] and version.source.endswith("/frontier")
    assert version.tags["dataset"] == DATASET and version.tags["schema_version"] == "2"
    files = {f.path for f in client.list_artifacts(store["runs"][1], "frontier")}
    assert files == {"frontier/frontier.json", "frontier/frontier.csv", "frontier/frontier.png"}
    assert list_frontier_models(client=client) == [name]


def test_fetch_returns_the_champion_and_older_versions(store):
    first, second = store["frontiers"]
    name = frontier_model_name(DATASET)
    assert fetch_frontier(name, tracking_uri=store["uri"]) == second
    assert fetch_frontier(name, version=1, client=store["client"]) == first
    loaded = load_registered_frontier(name, client=store["client"])
    assert (loaded.version, loaded.aliases, loaded.run_id) == (2, ("champion",), store["runs"][1])
    assert loaded.frontier.best_for(200).point.config == "e4m3/e8m7"


def test_a_run_holds_one_frontier(store):
    with pytest.raises(PepppError, match="already holds a different frontier"):
        register_frontier(make_frontier(0.2), run_id=store["runs"][0], client=store["client"])
    assert store["client"].get_registered_model(frontier_model_name(DATASET)).aliases == {"champion": 2}


def test_unknown_name_alias_version_and_store(store, tmp_path):
    client = store["client"]
    name = frontier_model_name(DATASET)
    with pytest.raises(PepppError, match=f"no registered frontier named 'nope'.*registered frontiers: {name}"):
        fetch_frontier("nope", client=client)
    with pytest.raises(PepppError, match="has no alias 'staging'; its aliases: champion -> version 2"):
        fetch_frontier(name, "staging", client=client)
    with pytest.raises(PepppError, match="alias 'v2' must be a name"):
        fetch_frontier(name, "v2", client=client)
    with pytest.raises(PepppError, match="has no version 7"):
        fetch_frontier(name, version=7, client=client)
    with pytest.raises(PepppError, match="no tracking store at"):
        fetch_frontier(name, tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(PepppError, match="unreachable"):
        fetch_frontier(name, tracking_uri="http://127.0.0.1:9")


def _corrupt_and_fetch(store, dataset: str, text: str, *, keep_checksum: bool) -> str:
    client = store["client"]
    run_id = client.create_run(store["experiment_id"]).info.run_id
    name, version = register_frontier(make_frontier(0.3, dataset=dataset), run_id=run_id, client=client)
    if not keep_checksum:
        client.delete_model_version_tag(name, str(version), "frontier_sha256")
    artifact_dir = client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    Path(artifact_dir, "frontier", "frontier.json").write_text(text)
    with pytest.raises(PepppError) as info:
        fetch_frontier(name, client=client)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_corrupt_or_unknown_schema_artifact_is_refused(store):
    message = _corrupt_and_fetch(store, "altered", '{"schema": "peppp.frontier"', keep_checksum=True)
    assert "does not match the checksum" in message
    message = _corrupt_and_fetch(store, "truncated", '{"schema": "peppp.frontier"', keep_checksum=False)
    assert message.startswith("'peppp-frontier-truncated' version 1: frontier JSON is corrupt")
    future = json.loads(make_frontier(0.3).to_json()) | {"schema_version": 99}
    message = _corrupt_and_fetch(store, "future", json.dumps(future), keep_checksum=False)
    assert "schema_version 99 is unknown" in message


def test_a_local_sqlite_store_is_read_without_mlflow_and_agrees_with_it(store):
    """The fast path (registry tables and frontier.json read directly) gives what MLflow's client gives,
    and never imports MLflow (2-3 s of the 7 s a lookup used to take)."""
    import subprocess
    import sys

    name = store["registered"][0][0]
    for kwargs in ({"alias": "champion"}, {"version": 1}, {"version": 2}):
        fast = load_registered_frontier(name, tracking_uri=store["uri"], **kwargs)
        slow = load_registered_frontier(name, client=store["client"], **kwargs)
        assert fast == slow
    code = (
        "import sys; from peppp.registry import fetch_frontier; "
        f"f = fetch_frontier({name!r}, tracking_uri={store['uri']!r}); "
        "print(f.best_for(200).point.config, 'mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["e4m3/e8m7", "False"]
