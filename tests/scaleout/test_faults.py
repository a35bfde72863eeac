"""Faults during a sweep: a Dask worker SIGKILLed mid-sweep, two sweeps over one grid at once, a cell
held by another sweep, the MLflow server restarted mid-sweep. Each ends with every cell present once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from peppp.errors import PepppError
from peppp.tracking import (
    claim_cell,
    list_claims,
    load_cells,
    release_claim,
    start_parent_run,
)

pytestmark = pytest.mark.slow  # real sweeps in subprocesses and on Dask: minutes

DATASETS = ["digits[0,1]", "digits[2,3]", "digits[4,5]"]
CONFIGS = ["fp32", "e5m2/e8m7", "e4m3/e7m9"]
GRID = len(DATASETS) * len(CONFIGS)


def _ok_counts(uri: str, experiment: str) -> dict[str, int]:
    cells = load_cells(experiment, tracking_uri=uri)
    return cells[cells["status"] == "ok"].groupby("cell_key").size().to_dict() if len(cells) else {}


def _all_runs(uri: str, experiment: str) -> int:
    return len(load_cells(experiment, tracking_uri=uri))


def _sweep_command(experiment: str, uri: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "peppp.cli", "meta-train", "--experiment", experiment,
        "--datasets", ",".join(DATASETS), "--configs", ",".join(CONFIGS), "--recipe", "tiny",
        "--tracking-uri", uri, "--no-progress", "--json", *extra,
    ]


def _wait_for_cells(uri: str, experiment: str, n: int, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(PepppError):  # the experiment may not exist yet
            if _all_runs(uri, experiment) >= n:
                return
        time.sleep(0.2)
    raise AssertionError(f"no {n} cells in {experiment} within {timeout_s} s")


@pytest.fixture
def sqlite_uri(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/peppp/torch_extensions"))
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    # Each sweep starts its own temporary Prefect server; on a loaded machine two at once need longer.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    return env


def test_sigkill_of_a_dask_worker_mid_sweep_leaves_every_cell_once(sqlite_uri, capsys):
    from distributed import Client, LocalCluster

    from flows._runner import task_runner
    from flows.meta_train import meta_train

    experiment = f"kill-{uuid.uuid4().hex[:8]}"
    killed: list[int] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:

        def kill_a_busy_worker() -> None:
            _wait_for_cells(sqlite_uri, experiment, 1)
            busy = [addr for addr, keys in client.processing().items() if keys] or list(client.scheduler_info()["workers"])
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        flow = meta_train.with_options(task_runner=task_runner(dask_address=cluster.scheduler_address))
        try:
            first = flow(experiment, DATASETS, CONFIGS, recipe="tiny", tracking_uri=sqlite_uri)
            first_outcome = f"trained {first.trained}, failed {len(first.failed)}"
        except Exception as exc:  # noqa: BLE001 - the outcome is reported; the rerun must finish the grid
            first_outcome = f"raised {type(exc).__name__}"
        killer.join(timeout=60)
        rerun = flow(experiment, DATASETS, CONFIGS, recipe="tiny", tracking_uri=sqlite_uri)
    counts = _ok_counts(sqlite_uri, experiment)
    with capsys.disabled():
        print(f"\n[sigkill] killed worker pid {killed}; first sweep {first_outcome}; rerun trained {rerun.trained}; "
              f"cells expected {GRID} / present {len(counts)} / duplicated {sum(c > 1 for c in counts.values())}")
    assert killed
    assert len(counts) == GRID and set(counts.values()) == {1}


def test_two_sweeps_at_once_train_each_cell_once(sqlite_uri, capsys):
    experiment = f"twice-{uuid.uuid4().hex[:8]}"
    # The store exists (and is migrated) before the race, as a shared store would.
    claim_cell("warm-up", "k", owner="x", tracking_uri=sqlite_uri)
    sweeps = [subprocess.Popen(_sweep_command(experiment, sqlite_uri), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(2)]
    summaries = []
    for sweep in sweeps:
        out, err = sweep.communicate(timeout=400)
        assert sweep.returncode == 0, err[-2000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    cells = load_cells(experiment, tracking_uri=sqlite_uri)
    counts = cells.groupby("cell_key").size()
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_uri)
    parents = {client.get_run(r).data.tags["mlflow.parentRunId"] for r in cells["run_id"]}
    with capsys.disabled():
        print(f"\n[two sweeps] trained {[s['trained'] for s in summaries]}; cells expected {GRID} / present "
              f"{len(counts)} / duplicated {int((counts > 1).sum())}")
    assert len(counts) == GRID and (counts == 1).all()
    assert sum(s["trained"] for s in summaries) == GRID
    assert parents <= {s["parent_run_id"] for s in summaries if s["parent_run_id"]}
    assert list_claims(experiment, tracking_uri=sqlite_uri) == []


def test_a_cell_claimed_by_another_sweep_is_left_to_it(sqlite_uri):
    from flows._sweep import claim_key
    from peppp.tracking.liveness import process_tag
    from peppp.tracking.tags import TAG_PROCESS
    from flows.meta_train import meta_train, plan_cells

    experiment = f"held-{uuid.uuid4().hex[:8]}"
    held = claim_key(plan_cells(DATASETS[:1], CONFIGS[:1], [0])[0], "tiny", "meta")
    # The other sweep is alive: its parent run is RUNNING and names a live process (this one); a crashed
    # sweep's parent is closed by recover_orphans and its claims are freed at once.
    elsewhere = start_parent_run(experiment, kind="sweep", tags={TAG_PROCESS: process_tag()}, tracking_uri=sqlite_uri)
    assert claim_cell(experiment, held, owner=elsewhere, tracking_uri=sqlite_uri)
    first = meta_train(experiment, DATASETS[:1], CONFIGS[:2], recipe="tiny", tracking_uri=sqlite_uri)
    assert (first.planned, first.trained, first.skipped) == (2, 1, 1)
    assert [c.owner for c in list_claims(experiment, tracking_uri=sqlite_uri)] == [elsewhere]
    assert release_claim(experiment, held, owner=elsewhere, tracking_uri=sqlite_uri)
    second = meta_train(experiment, DATASETS[:1], CONFIGS[:2], recipe="tiny", tracking_uri=sqlite_uri)
    assert (second.trained, second.skipped) == (1, 1)
    assert set(_ok_counts(sqlite_uri, experiment).values()) == {1}


def test_server_restart_mid_sweep_keeps_every_cell_once(server, tmp_path, capsys):
    experiment = f"restart-{uuid.uuid4().hex[:8]}"
    env = _env()
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "10"
    env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    outcomes = []
    sweep = subprocess.Popen(_sweep_command(experiment, server.uri), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    _wait_for_cells(server.uri, experiment, 1)
    before = _all_runs(server.uri, experiment)
    server.restart()
    out, _ = sweep.communicate(timeout=400)
    failed = len(json.loads(out.strip().splitlines()[-1])["failed"]) if sweep.returncode == 0 else None
    outcomes.append(f"exit {sweep.returncode}, {failed} cells failed on the outage")
    if sweep.returncode != 0 or failed:  # a sweep may stop or record failures on the outage; a rerun finishes
        rerun = subprocess.run(_sweep_command(experiment, server.uri), capture_output=True, text=True, env=env,
                               cwd=tmp_path, timeout=400, check=False)
        outcomes.append(f"rerun exit {rerun.returncode}")
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    counts = _ok_counts(server.uri, experiment)
    with capsys.disabled():
        print(f"\n[server restart] {before} cells before the restart; {outcomes}; cells expected {GRID} / "
              f"present {len(counts)} / duplicated {sum(c > 1 for c in counts.values())}")
    assert len(counts) == GRID and set(counts.values()) == {1}
