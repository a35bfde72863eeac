"""`peppp meta-train`, `peppp search`, `peppp register`: real flows from the command line, a sweep killed
with SIGKILL and resumed, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from mlflow import MlflowClient
from mlflow.entities import ViewType

from peppp.cli import main

DATASETS = "digits,digits[0,1,2,3,4]"
CONFIGS = "fp32,e3m1/e6m7"



def finished_cell_keys(uri: str, experiment: str) -> list[str]:
    """The cell key of every active cell run, failing if any is not FINISHED."""
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], "tags.`peppp.role` = 'meta'", ViewType.ACTIVE_ONLY, max_results=1000)
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    return sorted(r.data.tags["peppp.cell_key"] for r in runs)


def test_meta_train_then_rerun_prints_what_it_did(store_uri, capsys):
    args = ["meta-train", "--experiment", "cli", "--datasets", DATASETS, "--configs", CONFIGS, "--recipe", "tiny"]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cli: 4 cells planned, 0 already in the store, 4 trained (0 failed, 0 diverged)" in out
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "4 already in the store, 0 trained" in captured.out
    assert finished_cell_keys(store_uri, "cli") == sorted(
        f"{d}|{c}|tiny" for d in ("digits", "digits[0-4]") for c in ("fp32", "e3m1/e6m7")
    )


def test_search_then_register_from_the_command_line(store_uri, capsys):
    meta = ["meta-train", "--experiment", "meta", "--datasets", "digits,digits[0-4],digits[5-9]",
            "--configs", "e3m1/e6m7,e5m3/e8m11,fp32", "--recipe", "tiny", "--no-progress"]
    assert main(meta) == 0
    capsys.readouterr()
    search = ["search", "--dataset", "digits[3,5,8,9]", "--meta-experiment", "meta", "--n", "2", "--rank", "2"]
    assert main([*search, "--register", "--json", "--no-progress"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["trained"] == 2 and len(payload["measured"]) == 2
    assert payload["registered"] == {"name": "peppp-frontier-digits-3-5-8-9", "version": 1}
    assert {p["config"] for p in payload["frontier"]["points"] if p["measured"]} == set(payload["measured"])

    assert main(search) == 0
    captured = capsys.readouterr()
    assert "2 configurations measured (0 trained now, 2 from earlier runs" in captured.out
    assert "registered" not in captured.out

    assert main(["register", "--dataset", "digits[3,5,8,9]", "--meta-experiment", "meta", "--rank", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("registered peppp-frontier-digits-3-5-8-9 version 2")
    assert out[1].split() == ["memory_mb", "error", "±", "std", "source", "config"]
    assert main(["frontier", "--dataset", "digits[3,5,8,9]"]) == 0
    assert "version 2 (champion)" in capsys.readouterr().out

    # Bad input found inside the flow is one line too, without Prefect's traceback.
    for extra, message in (
        (["--method", "nosuch"], "unknown method 'nosuch'"),
        (["--rank", "7"], "rank 7 must be an integer between 1 and 3"),
        (["--n", "0"], "--n: 0 must be a positive integer"),
        (["--n", "1000"], "n 1000 is more than the"),
    ):
        assert main([*search, *extra, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err
    assert main(["search", "--dataset", "nosuchset", "--meta-experiment", "meta", "--no-progress"]) == 2
    assert "unknown dataset 'nosuchset'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--datasets", "nosuchset", "--configs", CONFIGS], "unknown dataset 'nosuchset'"),
        (["--datasets", "digits", "--configs", "e9m1/e6m7"], "e9m1"),
        (["--datasets", "digits", "--configs", CONFIGS, "--recipe", "huge"], "unknown recipe 'huge'"),
        (["--tasks", "0", "--configs", CONFIGS], "--tasks: 0 must be a positive integer"),
    ],
)
def test_meta_train_bad_input_is_one_line(store_uri, capsys, args, message):
    assert main(["meta-train", "--experiment", "bad", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_unreachable_servers_are_one_line(store_uri, capsys, monkeypatch):
    args = ["meta-train", "--experiment", "x", "--datasets", "digits", "--configs", "fp32", "--no-progress"]
    assert main([*args, "--tracking-uri", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unreachable" in err and "\n" not in err
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Prefect server http://127.0.0.1:9/api is unreachable" in err and "\n" not in err


@pytest.mark.parametrize("command", ["search", "register"])
def test_missing_store_or_experiment_is_one_line(store_uri, tmp_path, capsys, command):
    base = [command, "--dataset", "digits[3,5,8,9]", "--meta-experiment"]
    assert main([*base, "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no experiment named 'nosuch'" in err and "\n" not in err
    missing = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    assert main([*base, "nosuch", "--tracking-uri", missing]) == 2
    err = capsys.readouterr().err.strip()
    assert "no tracking store" in err and "\n" not in err
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_leaves_every_cell_exactly_once(store_uri, tmp_path):
    """Kill the whole `peppp meta-train` process group with SIGKILL after a few cells are logged, rerun
    it, and find each of the 6 cells exactly once, every run FINISHED."""
    db = Path(store_uri.removeprefix("sqlite:///"))
    command = [
        sys.executable, "-m", "peppp.cli", "meta-train", "--experiment", "killed",
        "--datasets", "digits,digits[5-9]", "--configs", "fp32,e3m1/e6m7,e5m3/e8m11", "--recipe", "cpu",
        "--no-progress",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    logged = 0
    try:
        while logged < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            logged = _count_cell_runs(db)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert 2 <= logged < 6, (logged, (tmp_path / "first.log").read_text()[-2000:])

    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "6 cells planned" in rerun.stdout
    keys = finished_cell_keys(store_uri, "killed")
    expected = sorted(f"{d}|{c}|cpu" for d in ("digits", "digits[5-9]") for c in ("fp32", "e3m1/e6m7", "e5m3/e8m11"))
    assert keys == expected
    # The killed sweep's parent run was closed by the rerun, not left RUNNING forever.
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("killed").experiment_id
    sweeps = client.search_runs([experiment_id], "tags.`peppp.kind` = 'sweep'", max_results=10)
    assert sorted(r.info.status for r in sweeps) == ["FINISHED", "KILLED"]


def _count_cell_runs(db: Path) -> int:
    """Cell runs written so far (any state), read straight from the sqlite file without locking it long."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            row = connection.execute("select count(*) from tags where key = 'peppp.cell_key'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])
