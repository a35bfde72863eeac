"""The same layer against a real MLflow tracking server (REST store: one run at a time, search_runs reader)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from peppp.tracking import (
    connect,
    finished_cells,
    get_or_create_experiment,
    load_cells,
    rebuild_matrices,
    log_cell,
    log_cells_batch,
    parent_run,
)
from peppp.tracking.matrix import read_cells

pytestmark = pytest.mark.slow  # starting a server takes 10-40 s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free port over a sqlite file; yields (http URI, sqlite URI of its backend)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = f"sqlite:///{root / 'mlflow.db'}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
    command += ["--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    log = open(root / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield uri, backend
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_cells_through_a_server_rebuild_like_the_database_behind_it(server, cell, monkeypatch):
    uri, backend = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with parent_run("served", kind="sweep") as parent:
        log_cells_batch(
            "served",
            [
                cell("a", "e3m1/e6m7", 0.4, 10.0, seed=0),
                cell("a", "e3m1/e6m7", 0.6, 10.0, seed=1),
                cell("b", "e4m3/e7m9", 0.2, 20.0),
                cell("b", "e3m1/e6m7", math.nan, 10.0, status="failed"),
            ],
            parent_run_id=parent,
        )
        log_cell("served", cell("a", "e4m3/e7m9", 0.3, 20.0), role="probe", parent_run_id=parent)
    error, memory = rebuild_matrices("served")
    expected = pd.DataFrame(
        [[0.5, math.nan], [math.nan, 0.2]],
        index=pd.Index(["a", "b"], name="dataset"),
        columns=["e3m1/e6m7", "e4m3/e7m9"],
    )
    pd.testing.assert_frame_equal(error, expected)
    assert memory.at["b", "e4m3/e7m9"] == 20.0
    assert finished_cells("served") == {"a|e3m1/e6m7|quick", "b|e4m3/e7m9|quick", "a|e4m3/e7m9|quick"}
    assert connect().get_run(parent).info.status == "FINISHED"

    over_http = load_cells("served").sort_values("run_id", ignore_index=True)
    direct = connect(backend, create=False)
    in_database = read_cells(direct, get_or_create_experiment("served", client=direct), reader="sql")
    pd.testing.assert_frame_equal(over_http, in_database.sort_values("run_id", ignore_index=True))
