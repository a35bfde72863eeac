"""What a person sees, checked in a real browser (headless Chromium, Debian's package): the MLflow UI on a
store the flows wrote, and the Prefect UI of the server those flows ran on. Slow: servers and a browser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.services import free_port, start_mlflow_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (Debian: apt-get install chromium; .ci/run installs it)"),
]


def rendered(url: str) -> str:
    """The page's DOM after its scripts ran (headless Chromium, 20 s of virtual time)."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,2400",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    return done.stdout


def peppp(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "peppp.cli", *args, "--no-progress"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def api(base: str, path: str, body: dict) -> list:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A Prefect server (with its UI), a small store written through it by `peppp meta-train` and
    `peppp search --register`, and an MLflow server on that store."""
    tmp = tmp_path_factory.mktemp("ui")
    port = free_port()
    prefect_api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_API_URL": prefect_api,
           "PREFECT_UI_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    mlflow = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{prefect_api}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
        peppp(env, "meta-train", "--experiment", "seen", "--datasets", "digits[0-4],digits[5-9],digits",
              "--configs", "fp32,e4m3/e7m9,e3m1/e6m7", "--recipe", "tiny", "--tracking-uri", store)
        peppp(env, "search", "--dataset", "digits[3,5,8,9]", "--meta-experiment", "seen", "--n", "2", "--rank", "2",
              "--register", "--tracking-uri", store)
        mlflow = start_mlflow_server(store, tmp / "mlruns" / "served-artifacts")
        yield {"prefect": prefect_api, "prefect_ui": f"http://127.0.0.1:{port}", "mlflow": mlflow.uri, "store": store}
    finally:
        if mlflow is not None:
            mlflow.stop()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_mlflow_shows_training_runs_their_metrics_the_frontier_plot_and_the_champion(served):
    from mlflow import MlflowClient

    client = MlflowClient(served["store"])
    experiment = client.get_experiment_by_name("seen")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    cell = next(r for r in runs if r.data.tags.get("peppp.role") == "meta")
    round_run = next(r for r in runs if r.data.tags.get("peppp.kind") == "round")
    base, ml = served["mlflow"], "?workflowType=machine_learning"

    page = rendered(f"{base}/#/experiments/{experiment.experiment_id}/runs{ml}")
    assert "A peppp meta-dataset" in page and "sweep 9 cells" in page and "round 1" in page
    page = rendered(f"{base}/#/experiments/{experiment.experiment_id}/runs/{cell.info.run_id}{ml}")
    assert "test_error" in page and "memory_mb" in page and "meta-training cell" in page
    page = rendered(f"{base}/#/experiments/{experiment.experiment_id}/runs/{round_run.info.run_id}/artifacts{ml}")
    assert "frontier.png" in page  # each round's estimated frontier
    page = rendered(f"{base}/#/models/peppp-frontier-digits-3-5-8-9{ml}")
    assert "champion" in page


def test_prefect_shows_the_sweeps_task_runs_and_its_artifacts(served):
    runs = api(served["prefect"], "/flow_runs/filter", {"sort": "START_TIME_ASC", "limit": 10})
    sweep = runs[0]  # meta-train ran first: 3 store steps + 9 trainings + 9 loggings
    page = rendered(f"{served['prefect_ui']}/runs/flow-run/{sweep['id']}")
    assert "21 Task runs" in page and "meta-train" in page
    artifacts = {a["key"]: a for a in api(served["prefect"], "/artifacts/filter", {"limit": 10})}
    table = rendered(f"{served['prefect_ui']}/artifacts/artifact/{artifacts['meta-train-seen']['id']}")
    assert "test_error" in table and "trained 9" in table and "digits[5-9]" in table
    page = rendered(f"{served['prefect_ui']}/artifacts/artifact/{artifacts['frontier-digits-3-5-8-9']['id']}")
    assert "champion" in page and "budget" in page
