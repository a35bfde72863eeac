"""A meta-training sweep on a Dask cluster, logging through an MLflow server on PostgreSQL, rebuilt from
that server; claims through the server (one winner per cell among racing threads)."""

from __future__ import annotations

import os
import threading
import time
import uuid

import numpy as np
import pytest
from mlflow import MlflowClient

from peppp.tracking import (
    claim_cell,
    list_claims,
    load_cells,
    rebuild_matrices,
    release_claim,
)

pytestmark = pytest.mark.slow  # PostgreSQL, an MLflow server and a Dask cluster: a minute or more

DATASETS = ["digits[0,1]", "digits[2,3]"]
CONFIGS = ["fp32", "e5m2/e8m7"]


@pytest.fixture
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        env={"OMP_NUM_THREADS": "1"},
    ) as local:
        yield local


def test_sweep_on_dask_through_the_server_rebuilds_what_was_trained(server, cluster, monkeypatch, tmp_path):
    from flows._runner import task_runner
    from flows.meta_train import meta_train

    monkeypatch.chdir(tmp_path)
    experiment = f"dask-{uuid.uuid4().hex[:8]}"
    flow = meta_train.with_options(task_runner=task_runner(dask_address=cluster.scheduler_address))
    summary = flow(experiment, DATASETS, CONFIGS, recipe="tiny", tracking_uri=server.uri)
    assert (summary.planned, summary.trained, summary.failed) == (4, 4, ())

    # What was trained: each logged run's own metrics, read run by run.
    client = MlflowClient(server.uri)
    trained = {}
    for run_id in summary.run_ids:
        run = client.get_run(run_id)
        trained[(run.data.params["dataset"], run.data.params["config"])] = (
            run.data.metrics["test_error"], run.data.metrics["memory_mb"]
        )
    error, memory = rebuild_matrices(experiment, tracking_uri=server.uri)
    assert set(error.index) == {d for d, _ in trained} and set(error.columns) == set(CONFIGS)
    assert len(trained) == error.size == 4
    for (dataset, config), (err, mem) in trained.items():
        assert error.loc[dataset, config] == pytest.approx(err)
        assert memory.loc[dataset, config] == pytest.approx(mem)
    assert np.isfinite(error.to_numpy()).all()
    assert load_cells(experiment, tracking_uri=server.uri).groupby("cell_key").size().eq(1).all()
    assert list_claims(experiment, tracking_uri=server.uri) == []  # every finished cell released its claim

    # The workers reported to this process's Prefect server: none started a temporary server of its own.
    import psutil
    from distributed import Client

    with Client(cluster) as dask_client:
        pids = dask_client.run(os.getpid)
    servers = [c.pid for pid in pids.values() for c in psutil.Process(pid).children(recursive=True)
               if "uvicorn" in " ".join(c.cmdline())]
    assert servers == []

    # A second sweep over the same grid through the same cluster trains nothing.
    again = flow(experiment, DATASETS, CONFIGS, recipe="tiny", tracking_uri=server.uri)
    assert (again.trained, again.skipped) == (0, 4)


def test_claims_through_the_server_have_one_winner(server):
    experiment = f"claims-{uuid.uuid4().hex[:8]}"
    keys = [f"meta/digits|fp32|tiny/seed={i}" for i in range(3)]
    won: dict[str, list[bool]] = {}
    barrier = threading.Barrier(4)

    def race(owner: str) -> None:
        barrier.wait()
        won[owner] = [claim_cell(experiment, k, owner=owner, tracking_uri=server.uri) for k in keys]

    threads = [threading.Thread(target=race, args=(f"sweep-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(won) == 4
    holders = {c.cell_key: c.owner for c in list_claims(experiment, tracking_uri=server.uri)}
    for i, key in enumerate(keys):
        assert sum(w[i] for w in won.values()) == 1
        assert won[holders[key]][i]
    # Released claims are free again; an expired one is taken over.
    owner = holders[keys[0]]
    assert release_claim(experiment, keys[0], owner=owner, tracking_uri=server.uri)
    assert claim_cell(experiment, keys[0], owner="late", ttl_s=0.05, tracking_uri=server.uri)
    time.sleep(0.1)
    assert claim_cell(experiment, keys[0], owner="later", tracking_uri=server.uri)
    assert {c.cell_key: c.owner for c in list_claims(experiment, tracking_uri=server.uri)}[keys[0]] == "later"
