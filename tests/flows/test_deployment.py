"""prefect.yaml for real: a local Prefect server, a process work pool, `prefect deploy --all`, one run of
the meta-train deployment picked up by a worker, its cells in the MLflow store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from peppp.tracking import load_cells

PREFECT = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on 127.0.0.1 in its own process group, with its own home; killed after."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "COLUMNS": "200",  # wide enough that `prefect flow-run ls` prints states in full
        "PWD": str(ROOT),  # prefect.yaml's pull step: runs start in the folder deploy ran in
    }
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"prefect server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()


def prefect(env: dict, *args: str, cwd: Path = ROOT, timeout: float = 120) -> str:
    done = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout[-1500:]} {done.stderr[-1500:]}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_a_deployment_runs_on_a_process_worker(prefect_server, tmp_path, _migrated_db):
    env = prefect_server
    prefect(env, "work-pool", "create", "peppp-process", "--type", "process")
    prefect(env, "--no-prompt", "deploy", "--all")
    listed = prefect(env, "deployment", "ls")
    assert "meta-train/meta-train-refresh" in listed and "register-frontier/reestimate" in listed
    inspected = prefect(env, "deployment", "inspect", "register-frontier/reestimate")
    assert "'cron': '0 4 * * *'" in inspected and "peppp-process" in inspected

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prefect(
        env, "deployment", "run", "meta-train/meta-train-refresh",
        "--param", "experiment=deployed", "--param", 'datasets=["digits", "digits[0-4]"]',
        "--param", 'configs=["fp32", "e4m3/e7m9"]', "--param", "recipe=tiny", "--param", f"tracking_uri={store}",
    )
    # The worker starts elsewhere: the deployment's pull step brings the run back to the repository.
    worker = prefect(env, "worker", "start", "--pool", "peppp-process", "--run-once", cwd=tmp_path, timeout=300)
    assert "Finished in state Completed()" in worker
    assert "COMPLETED" in prefect(env, "flow-run", "ls", "--flow-name", "meta-train")
    cells = load_cells("deployed", tracking_uri=store)
    assert sorted(cells["cell_key"]) == sorted(
        f"{d}|{c}|tiny" for d in ("digits", "digits[0-4]") for c in ("fp32", "e4m3/e7m9")
    )
    assert set(cells["status"]) == {"ok"}
