"""A store that answered before is waited for with backoff when it stops answering (issue 15, probe 13).

The real thing (a 30 s MLflow server restart in the middle of a sweep) is the slow test at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from peppp.errors import PepppError
from peppp.tracking import store


class _Flaky:
    """A check that fails `failures` times, on a fake clock that `sleep` advances."""

    def __init__(self, failures: int):
        self.failures, self.calls, self.now, self.slept = failures, 0, 0.0, []

    def check(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise PepppError("tracking server is unreachable")

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_a_store_never_reached_fails_at_once(monkeypatch):
    monkeypatch.setattr(store, "_answered", set())
    flaky = _Flaky(failures=1)
    with pytest.raises(PepppError):
        store._patiently("http://x", flaky.check, sleep=flaky.sleep, clock=lambda: flaky.now)
    assert flaky.calls == 1 and flaky.slept == []


def test_an_outage_of_a_store_that_answered_is_waited_out_with_backoff(monkeypatch):
    monkeypatch.setattr(store, "_answered", {"http://x"})
    flaky = _Flaky(failures=9)  # about 50 s down
    store._patiently("http://x", flaky.check, sleep=flaky.sleep, clock=lambda: flaky.now)
    assert flaky.calls == 10 and flaky.slept[:5] == [0.5, 1.0, 2.0, 4.0, 8.0] and set(flaky.slept[5:]) == {8.0}


def test_patience_has_an_end(monkeypatch):
    monkeypatch.setattr(store, "_answered", {"http://x"})
    monkeypatch.setenv(store.PATIENCE_ENV, "20")
    flaky = _Flaky(failures=1000)
    with pytest.raises(PepppError, match="unreachable"):
        store._patiently("http://x", flaky.check, sleep=flaky.sleep, clock=lambda: flaky.now)
    assert flaky.now <= 20


# The sweep's training replaced by a 2 s stand-in, so that the sweep claims and logs a cell every 2 s
# all through the outage (a real cell may train through all of it and never meet the outage).
_SWEEP = """
import sys, time
import peppp.training.engine as engine
from peppp.cells import CellResult

def train_cell(dataset, config, *, recipe, seed=None, **kwargs):
    time.sleep(2.0)
    return CellResult(dataset=dataset, config=config, recipe=recipe, network="stand-in", seed=seed or 0, error=0.5,
                      memory_mb=1.0, train_seconds=2.0, final_loss=0.1)

engine.train_cell = train_cell
from peppp.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_30_s_server_restart_mid_sweep_loses_and_duplicates_nothing(tmp_path, capsys):
    """A sweep over an MLflow server on PostgreSQL; the server is stopped for 30 s after the first cell."""
    import tempfile
    from pathlib import Path

    from devtools.services import postgres_bin_dir, start_mlflow_server, start_postgres
    from peppp.tracking import load_cells
    from tests.robustness.helpers import cli_env

    try:
        postgres_bin_dir()
    except PepppError as exc:
        pytest.skip(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="peppp-patience-"))
    folder.chmod(0o711)
    datasets = [f"digits[{i},{i + 1}]" for i in range(0, 10, 2)]
    configs = ["fp32", "e5m2/e8m7", "e4m3/e7m9"]
    experiment = f"restart-{uuid.uuid4().hex[:8]}"
    with start_postgres(folder / "pg", durable=False) as pg, \
            start_mlflow_server(pg.uri, folder / "artifacts", log_path=folder / "mlflow.log") as server:
        command = [sys.executable, "-c", _SWEEP, "meta-train", "--experiment", experiment, "--datasets",
                   ",".join(datasets), "--configs", ",".join(configs), "--recipe", "tiny", "--workers", "1",
                   "--tracking-uri", server.uri, "--no-progress", "--json"]
        sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                                 cwd=tmp_path)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if len(load_cells(experiment, tracking_uri=server.uri)) >= 1:
                    break
            except PepppError:
                pass
            time.sleep(0.2)
        before = len(load_cells(experiment, tracking_uri=server.uri))
        server.stop()
        time.sleep(30)
        server.start()
        out, err = sweep.communicate(timeout=600)
        cells = load_cells(experiment, tracking_uri=server.uri)
        ok = cells[cells["status"] == "ok"].groupby("cell_key").size()
        failed = json.loads(out.strip().splitlines()[-1])["failed"] if sweep.returncode == 0 else None
        with capsys.disabled():
            print(f"\n[30 s restart] {before} cells before; sweep exit {sweep.returncode}, failed {failed}; "
                  f"cells {len(datasets) * len(configs)} expected / {len(ok)} present / {int((ok > 1).sum())} "
                  f"duplicated; {err.strip().splitlines()[-1] if err.strip() else ''}")
        assert sweep.returncode == 0, err[-3000:]
        assert failed == [] and len(ok) == len(datasets) * len(configs) and set(ok) == {1}
