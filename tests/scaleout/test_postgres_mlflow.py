"""peppp's tracking against a real MLflow tracking server on PostgreSQL, with the server's artifact store.

Cells and imports go in through the server (REST, one run at a time) and, for an import, straight into
PostgreSQL (the bulk SQL path); matrices come back out both ways and must agree. A frontier is
registered and fetched through the server. The server is restarted, stopped, and killed in the middle
of a cell to see what a sweep would see.
"""

from __future__ import annotations

import math
import pickle
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.frontier import Frontier, FrontierPoint
from peppp.registry import fetch_frontier, register_frontier
from devtools.services import free_port, start_postgres
from peppp.tracking import (
    connect,
    export_matrix,
    finished_cells,
    get_or_create_experiment,
    import_matrix,
    load_cells,
    rebuild_matrices,
    log_cell,
    log_cells_batch,
    parent_run,
    read_matrix_csv,
)
from peppp.tracking.matrix import read_cells

pytestmark = pytest.mark.slow  # a PostgreSQL, an MLflow server and several restarts of it: minutes

PAPER = Path(__file__).resolve().parents[2].parent / "shared" / "meta" / "paper88x99"


def cell(dataset: str, config: str = "e4m3/e7m9", error: float = 0.25, memory_mb: float = 100.0, *,
         seed: int = 0, status: str = "ok") -> CellResult:
    return CellResult(dataset=dataset, config=config, recipe="quick", network="resnet18", seed=seed, error=error,
                      memory_mb=memory_mb, train_seconds=2.5, final_loss=math.nan if status == "failed" else 0.7,
                      status=status)


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    # An experiment made by a client straight on postgresql:// records ./mlruns of the working
    # directory as its artifact location (MLflow's default): keep anything written there in tmp_path.
    monkeypatch.chdir(tmp_path)


def _paper_rows(tmp_path: Path, first: int, last: int, tag: str) -> tuple[Path, Path]:
    """Data lines first..last (1-based) of the paper's CSVs, with the header, byte for byte."""
    paths = []
    for name in ("error.csv", "memory_mb.csv"):
        lines = (PAPER / name).read_text().splitlines(keepends=True)
        path = tmp_path / f"{tag}_{name}"
        path.write_text(lines[0] + "".join(lines[first : last + 1]))
        paths.append(path)
    return paths[0], paths[1]


def test_cells_logged_through_the_server_rebuild_the_same_over_http_and_from_postgres(server, postgres):
    with parent_run("cells", kind="sweep", tracking_uri=server.uri) as parent:
        log_cells_batch(
            "cells",
            [
                cell("a", "e3m1/e6m7", 0.4, 10.0, seed=0),
                cell("a", "e3m1/e6m7", 0.6, 10.0, seed=1),
                cell("b", "e4m3/e7m9", 0.2, 20.0),
                cell("b", "e3m1/e6m7", math.nan, 10.0, status="failed"),
            ],
            parent_run_id=parent,
            tracking_uri=server.uri,
        )
        log_cell("cells", cell("a", "e4m3/e7m9", 0.3, 20.0), role="probe", parent_run_id=parent,
                 tracking_uri=server.uri)
    expected = pd.DataFrame(
        [[0.5, math.nan], [math.nan, 0.2]],
        index=pd.Index(["a", "b"], name="dataset"),
        columns=["e3m1/e6m7", "e4m3/e7m9"],
    )
    finished = {"a|e3m1/e6m7|quick", "b|e4m3/e7m9|quick", "a|e4m3/e7m9|quick"}
    for uri in (server.uri, postgres.uri):
        error, memory = rebuild_matrices("cells", tracking_uri=uri)
        pd.testing.assert_frame_equal(error, expected)
        assert memory.at["b", "e4m3/e7m9"] == 20.0
        assert finished_cells("cells", tracking_uri=uri) == finished
    served, direct = connect(server.uri), connect(postgres.uri, create=False)
    experiment_id = get_or_create_experiment("cells", create=False, client=served)
    over_http = read_cells(served, experiment_id, reader="search").sort_values("run_id", ignore_index=True)
    in_database = read_cells(direct, experiment_id, reader="sql").sort_values("run_id", ignore_index=True)
    pd.testing.assert_frame_equal(over_http, in_database)
    assert served.get_run(parent).info.status == "FINISHED"


def test_a_paper_slice_imported_through_the_server_and_directly_rebuilds_the_same_both_ways(server, postgres, tmp_path):
    served_csvs = _paper_rows(tmp_path, 1, 2, "served")
    direct_csvs = _paper_rows(tmp_path, 3, 6, "direct")
    began = time.monotonic()
    assert import_matrix(*served_csvs, experiment="paper-served", recipe="paper-resnet18",
                         tracking_uri=server.uri) == 2 * 99
    served_seconds = time.monotonic() - began
    # Created through the server, so its artifacts would go to the server's store; the cells then go
    # straight into PostgreSQL in one transaction.
    get_or_create_experiment("paper-direct", tracking_uri=server.uri)
    began = time.monotonic()
    assert import_matrix(*direct_csvs, experiment="paper-direct", recipe="paper-resnet18",
                         tracking_uri=postgres.uri) == 4 * 99
    direct_seconds = time.monotonic() - began
    print(f"import through the server: {served_seconds:.1f} s for 198 cells; "
          f"straight into PostgreSQL: {direct_seconds:.2f} s for 396 cells")
    for experiment, (error_csv, memory_csv) in (("paper-served", served_csvs), ("paper-direct", direct_csvs)):
        for uri in (server.uri, postgres.uri):
            error, memory = rebuild_matrices(experiment, tracking_uri=uri)
            pd.testing.assert_frame_equal(error, read_matrix_csv(error_csv))
            pd.testing.assert_frame_equal(memory, read_matrix_csv(memory_csv))
        exported = export_matrix(experiment, tmp_path / experiment, tracking_uri=server.uri)
        assert exported.error_csv.read_text() == error_csv.read_text()
        assert exported.memory_csv.read_text() == memory_csv.read_text()


FRONTIER = Frontier(
    dataset="served-dataset",
    meta_experiment="paper-served",
    method="ed",
    points=(
        FrontierPoint("e3m1/e6m7", 100.0, 0.40, 0.05, False, ("fit",)),
        FrontierPoint("e4m3/e8m7", 150.0, 0.30, 0.0, True, ("r1",)),
    ),
)


class _Bait:
    """Unpickling this writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


def _artifact_gets(log_text: str) -> list[str]:
    return re.findall(r'"GET (/api/2\.0/mlflow-artifacts/artifacts/\S+) HTTP', log_text)


def test_a_frontier_registers_and_fetches_through_the_server_reading_only_its_json(
    server, postgres, service_folder, tmp_path
):
    client = MlflowClient(server.uri)
    run_id = client.create_run(get_or_create_experiment("frontiers", client=client)).info.run_id
    marker = tmp_path / "executed"
    bait = tmp_path / "bait"
    bait.mkdir()
    (bait / "python_model.pkl").write_bytes(pickle.dumps(_Bait(marker)))
    (bait / "bait_loader.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    (bait / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: bait_loader\n    code: .\n")
    client.log_artifacts(run_id, str(bait), "frontier")
    name, version = register_frontier(FRONTIER, run_id=run_id, client=client)
    assert (name, version) == ("peppp-frontier-served-dataset", 1)
    # The files live in the server's artifact store, uploaded through the server.
    stored = {p.name for p in (service_folder / "artifacts").rglob("*") if run_id in p.parts}
    assert {"frontier.json", "frontier.csv", "frontier.png", "python_model.pkl", "bait_loader.py", "MLmodel"} <= stored

    log_before = server.log_path.stat().st_size
    assert fetch_frontier(name, tracking_uri=server.uri) == FRONTIER
    assert not marker.exists()
    deadline = time.monotonic() + 10
    while not (gets := _artifact_gets(server.log_path.read_bytes()[log_before:].decode(errors="replace"))):
        assert time.monotonic() < deadline, "the server logged no artifact download for the fetch"
        time.sleep(0.2)
    assert gets and all(path.endswith("/frontier/frontier.json") for path in gets), gets

    # Straight from PostgreSQL the version's mlflow-artifacts: source has no server to resolve it.
    with pytest.raises(PepppError, match="cannot download frontier.json"):
        fetch_frontier(name, tracking_uri=postgres.uri)


def test_cells_logged_before_and_after_a_server_restart_are_all_there(server, postgres):
    log_cell("restart", cell("before"), tracking_uri=server.uri)
    old = server.pid
    server.restart()
    assert server.pid != old
    log_cell("restart", cell("after", error=0.5), tracking_uri=server.uri)
    for uri in (server.uri, postgres.uri):
        error, _ = rebuild_matrices("restart", tracking_uri=uri)
        assert error["e4m3/e7m9"].to_dict() == {"before": 0.25, "after": 0.5}


@pytest.mark.parametrize("patience_s", [0, 6])
def test_log_cell_while_the_server_is_down_is_one_pepppError_after_the_patience_and_writes_nothing(
    server, postgres, monkeypatch, patience_s
):
    # A store that answered before is waited for $PEPPP_STORE_PATIENCE_S (default 90 s: a restart), then
    # it is one PepppError; never MLflow's minutes of retries.
    monkeypatch.setenv("PEPPP_STORE_PATIENCE_S", str(patience_s))
    experiment = f"down-{patience_s}"
    log_cell(experiment, cell("first"), tracking_uri=server.uri)
    server.stop()
    try:
        began = time.monotonic()
        with pytest.raises(PepppError, match=r"tracking server http://127\.0\.0\.1:\d+ is unreachable"):
            log_cell(experiment, cell("lost"), tracking_uri=server.uri)
        assert patience_s - 8.5 <= time.monotonic() - began < patience_s + 10
        assert list(load_cells(experiment, tracking_uri=postgres.uri)["dataset"]) == ["first"]
    finally:
        server.start()


def _stop_server_before_log_batch(monkeypatch, server, *, then=None):
    """Fault injection: the server goes away after the cell's run was created, before its metrics go in."""
    real = MlflowClient.log_batch

    def stop_then_log_batch(self, *args, **kwargs):
        server.stop()
        if then is not None:
            then()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", stop_then_log_batch)


@pytest.fixture(scope="module")
def died_mid_request(server, postgres):
    """A cell whose server dies between creating its run and logging its metrics, without retries."""
    log_cell("mid-request", cell("kept"), tracking_uri=server.uri)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        _stop_server_before_log_batch(patch, server)
        try:
            log_cell("mid-request", cell("lost"), tracking_uri=server.uri)
            raised = None
        except Exception as exc:  # noqa: BLE001 - the test below says which kind it must be
            raised = exc
        finally:
            server.start()
    return raised


def test_a_cell_whose_server_dies_mid_request_is_one_pepppError(died_mid_request):
    assert isinstance(died_mid_request, PepppError), repr(died_mid_request)
    assert re.fullmatch(r"cannot log cell lost\|e4m3/e7m9\|quick: API request to \S+ failed .*", str(died_mid_request))


def test_a_cell_whose_server_dies_mid_request_does_not_count(died_mid_request, server):
    assert "lost|e4m3/e7m9|quick" not in finished_cells("mid-request", tracking_uri=server.uri)
    assert list(load_cells("mid-request", tracking_uri=server.uri)["dataset"]) == ["kept"]


def test_a_request_that_fails_while_the_server_restarts_is_retried_and_the_cell_lands_whole(
    server, postgres, monkeypatch
):
    # MLflow's client retries a refused request with exponential backoff (1+2+4+... s here, about
    # 2 minutes in all); a server back within that time gets the cell as if nothing happened.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "8")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    restarted = threading.Thread(target=server.start, daemon=True)
    _stop_server_before_log_batch(monkeypatch, server, then=restarted.start)
    try:
        run_id = log_cell("retried", cell("survivor", error=0.125), tracking_uri=server.uri)
    finally:
        restarted.join(timeout=300)
        monkeypatch.undo()
        server.start()  # a no-op when the thread brought it back
    run = MlflowClient(server.uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_error"] == 0.125
    assert finished_cells("retried", tracking_uri=postgres.uri) == {"survivor|e4m3/e7m9|quick"}


@pytest.fixture(scope="module")
def stopped_postgres(service_folder):
    """A second PostgreSQL with one cell logged straight into it, then stopped."""
    pg = start_postgres(service_folder / "postgres-stopped", durable=False)
    try:
        log_cell("gone", cell("a"), tracking_uri=pg.uri)
    finally:
        pg.stop()
    return pg


def test_reading_from_a_postgres_that_went_away_is_one_pepppError(stopped_postgres):
    with pytest.raises(PepppError):
        rebuild_matrices("gone", tracking_uri=stopped_postgres.uri)


def test_the_cli_on_an_unreachable_postgres_fails_within_seconds(tmp_path):
    uri = f"postgresql://peppp@127.0.0.1:{free_port()}/mlflow"
    command = [sys.executable, "-c", "import sys; from peppp.cli import main; sys.exit(main(sys.argv[1:]))",
               "matrix", "--experiment", "x", "--out", str(tmp_path), "--tracking-uri", uri]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("peppp matrix on an unreachable PostgreSQL was still running after 30 s")
    assert done.returncode == 2 and "is unreachable" in done.stderr, done.stderr
