"""`peppp import-matrix` and `peppp matrix`: parse, call the tracking layer, print; exit 2 on bad input."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from peppp.cli import main

PAPER = Path(__file__).resolve().parents[2].parent / "shared" / "meta" / "paper88x99"


@pytest.fixture
def store_uri(flag_only_store) -> str:
    return flag_only_store


@pytest.fixture
def slice_csvs(tmp_path) -> tuple[Path, Path]:
    paths = []
    for name in ("error.csv", "memory_mb.csv"):
        path = tmp_path / f"in_{name}"
        path.write_text("".join((PAPER / name).read_text().splitlines(keepends=True)[:4]))
        paths.append(path)
    return paths[0], paths[1]


def test_import_then_export_round_trip(store_uri, slice_csvs, tmp_path, capsys):
    error_csv, memory_csv = slice_csvs
    argv = ["import-matrix", "--error", str(error_csv), "--memory", str(memory_csv), "--experiment", "paper"]
    assert main(argv + ["--tracking-uri", store_uri]) == 0
    assert f"imported 297 cells into experiment 'paper' at {store_uri}" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["matrix", "--experiment", "paper", "--out", str(out), "--tracking-uri", store_uri]) == 0
    printed = capsys.readouterr().out
    assert "3 datasets x 99 configs (297 cells measured)" in printed and str(out / "error.csv") in printed
    assert (out / "error.csv").read_text() == error_csv.read_text()
    assert (out / "memory_mb.csv").read_text() == memory_csv.read_text()


def test_environment_names_the_store(store_uri, slice_csvs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    error_csv, memory_csv = slice_csvs
    assert main(["import-matrix", "--error", str(error_csv), "--memory", str(memory_csv), "--experiment", "e"]) == 0
    assert main(["matrix", "--experiment", "e", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "error.csv").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"peppp {command}: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--experiment", "nope"], "no experiment named 'nope'"),
        (["--experiment", "paper", "--tracking-uri", "sqlite:///{tmp}/absent/mlflow.db"], "no tracking store"),
        (["--experiment", "paper", "--tracking-uri", "http://127.0.0.1:{port}"], "unreachable"),
        (["--experiment", "empty"], "no cell runs at all"),
    ],
)
def test_matrix_bad_input_is_one_line_and_status_2(store_uri, tmp_path, capsys, argv, match):
    from peppp.tracking import get_or_create_experiment

    get_or_create_experiment("empty", tracking_uri=store_uri)
    argv = [a.format(tmp=tmp_path, port=_closed_port()) for a in argv]
    if "--tracking-uri" not in argv:
        argv += ["--tracking-uri", store_uri]
    out = tmp_path / "out"
    assert main(["matrix", "--out", str(out)] + argv) == 2
    assert match in _one_error_line(capsys, "matrix")
    assert not out.exists()
    assert not (tmp_path / "absent").exists()


def test_import_bad_csv_is_one_line_and_status_2(store_uri, tmp_path, capsys):
    error_csv = tmp_path / "e.csv"
    error_csv.write_text("dataset,e3m1/e6m7\na,1.7\n")
    memory_csv = tmp_path / "m.csv"
    memory_csv.write_text("dataset,e3m1/e6m7\na,10\n")
    argv = ["import-matrix", "--error", str(error_csv), "--memory", str(memory_csv), "--experiment", "x"]
    assert main(argv + ["--tracking-uri", store_uri]) == 2
    assert "= 1.7 is outside [0, 1]" in _one_error_line(capsys, "import-matrix")


def test_import_to_unreachable_server(tmp_path, slice_csvs, capsys):
    error_csv, memory_csv = slice_csvs
    uri = f"http://127.0.0.1:{_closed_port()}"
    argv = ["import-matrix", "--error", str(error_csv), "--memory", str(memory_csv), "--experiment", "x"]
    assert main(argv + ["--tracking-uri", uri]) == 2
    assert "unreachable" in _one_error_line(capsys, "import-matrix")
