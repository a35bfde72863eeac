"""CSV meta-datasets into the store and back out, checked against the paper's released matrices."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from peppp.errors import PepppError
from peppp.tracking import connect, export_matrix, import_matrix, load_cells, rebuild_matrices, read_matrix_csv

PAPER = Path(__file__).resolve().parents[2].parent / "shared" / "meta" / "paper88x99"


def _paper_slice(tmp_path: Path, rows: int) -> tuple[Path, Path]:
    """The first `rows` data lines of the paper's CSVs, byte for byte."""
    paths = []
    for name in ("error.csv", "memory_mb.csv"):
        lines = (PAPER / name).read_text().splitlines(keepends=True)[: rows + 1]
        path = tmp_path / f"in_{name}"
        path.write_text("".join(lines))
        paths.append(path)
    return paths[0], paths[1]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_paper_slice_imports_rebuilds_and_exports_unchanged(store_uri, tmp_path):
    error_csv, memory_csv = _paper_slice(tmp_path, rows=5)
    assert import_matrix(error_csv, memory_csv, experiment="paper", recipe="paper-resnet18") == 5 * 99
    error, memory = rebuild_matrices("paper")
    pd.testing.assert_frame_equal(error, read_matrix_csv(error_csv))
    pd.testing.assert_frame_equal(memory, read_matrix_csv(memory_csv))
    exported = export_matrix("paper", tmp_path / "out")
    assert (exported.n_datasets, exported.n_configs, exported.n_measured) == (5, 99, 495)
    assert exported.error_csv.read_text() == error_csv.read_text()
    assert exported.memory_csv.read_text() == memory_csv.read_text()


def test_imported_cells_are_runs_under_one_import_run(store_uri, tmp_path):
    error_csv, memory_csv = _paper_slice(tmp_path, rows=1)
    import_matrix(error_csv, memory_csv, experiment="paper", network="resnet18")
    client = connect()
    experiment_id = client.get_experiment_by_name("paper").experiment_id
    (parent,) = client.search_runs([experiment_id], filter_string="tags.`peppp.kind` = 'import'")
    assert parent.info.status == "FINISHED" and parent.data.tags["peppp.shape"] == "1x99"
    cells = load_cells("paper")
    assert len(cells) == 99 and set(cells["role"]) == {"meta"} and set(cells["recipe"]) == {"imported"}
    child = client.get_run(cells["run_id"].iloc[0])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.params["network"] == "resnet18" and child.data.params["seed"] == "-1"


def test_missing_cells_are_not_imported_and_come_back_empty(store_uri, tmp_path):
    error_csv = _write(tmp_path, "e.csv", "dataset,e3m1/e6m7,e4m3/e7m9\na,0.5,\nb,,0.25\n")
    memory_csv = _write(tmp_path, "m.csv", "dataset,e3m1/e6m7,e4m3/e7m9\na,10,20\nb,10,20\n")
    assert import_matrix(error_csv, memory_csv, experiment="sparse") == 2
    exported = export_matrix("sparse", tmp_path / "out")
    assert exported.error_csv.read_text() == "dataset,e3m1/e6m7,e4m3/e7m9\na,0.5,\nb,,0.25\n"
    assert exported.memory_csv.read_text() == "dataset,e3m1/e6m7,e4m3/e7m9\na,10.0,\nb,,20.0\n"


def test_reimport_is_refused_and_adds_nothing(store_uri, tmp_path):
    error_csv, memory_csv = _paper_slice(tmp_path, rows=2)
    import_matrix(error_csv, memory_csv, experiment="paper")
    with pytest.raises(PepppError, match="already holds 198 of these 198 cells"):
        import_matrix(error_csv, memory_csv, experiment="paper")
    assert len(load_cells("paper")) == 198
    assert import_matrix(error_csv, memory_csv, experiment="paper", recipe="second-look") == 198


HEADER = "dataset,e3m1/e6m7,e4m3/e7m9\n"
GOOD_MEMORY = HEADER + "a,10,20\nb,10,20\n"


@pytest.mark.parametrize(
    ("error_text", "memory_text", "match"),
    [
        (HEADER + "a,0.5,1.5\nb,0.1,0.2\n", GOOD_MEMORY, r"\('a', 'e4m3/e7m9'\) = 1.5 is outside \[0, 1\]"),
        (HEADER + "a,0.5,-0.1\nb,0.1,0.2\n", GOOD_MEMORY, "outside"),
        (HEADER + "a,0.5,high\nb,0.1,0.2\n", GOOD_MEMORY, r"\('a', 'e4m3/e7m9'\) = 'high' is not a number"),
        (HEADER + "a,0.5,0.2\nc,0.1,0.2\n", GOOD_MEMORY, "dataset 'c' is in the error matrix only"),
        ("dataset,e3m1/e6m7,e4m3/e7m9,e4m3/e7m9\na,0.5,0.2,0.1\n", GOOD_MEMORY, "'e4m3/e7m9' appears twice"),
        (HEADER + "a,0.5,0.2\na,0.1,0.2\n", GOOD_MEMORY, "dataset 'a' appears twice"),
        ("dataset,e3m1/e6m7,e9m9/e7m9\na,0.5,0.2\nb,0.1,0.2\n", "dataset,e3m1/e6m7,e9m9/e7m9\na,10,20\nb,10,20\n", "e9m9"),
        (HEADER + "a,0.5,0.2\nb,0.1,0.2\n", HEADER + "a,10,0\nb,10,20\n", r"memory cell \('a', 'e4m3/e7m9'\) = 0.0"),
        (HEADER + "a,0.5,0.2\nb,0.1,0.2\n", HEADER + "a,10,\nb,10,20\n", "memory cell"),
        (HEADER + "a,,\nb,,\n", GOOD_MEMORY, "no measured cell"),
        (HEADER, GOOD_MEMORY, "no rows"),
        ("", GOOD_MEMORY, "needs a header"),
    ],
)
def test_bad_csvs_write_nothing(store_uri, tmp_path, error_text, memory_text, match):
    error_csv = _write(tmp_path, "e.csv", error_text)
    memory_csv = _write(tmp_path, "m.csv", memory_text)
    with pytest.raises(PepppError, match=match) as info:
        import_matrix(error_csv, memory_csv, experiment="bad")
    assert "\n" not in str(info.value)
    assert connect().get_experiment_by_name("bad") is None


def test_bad_role_or_recipe_write_nothing(store_uri, tmp_path):
    error_csv, memory_csv = _paper_slice(tmp_path, rows=1)
    with pytest.raises(PepppError, match="role 'train'"):
        import_matrix(error_csv, memory_csv, experiment="bad", role="train")
    with pytest.raises(PepppError, match="recipe '' is empty"):
        import_matrix(error_csv, memory_csv, experiment="bad", recipe="")
    assert connect().get_experiment_by_name("bad") is None


def test_missing_csv_file(store_uri, tmp_path):
    with pytest.raises(PepppError, match="error CSV .*absent.csv does not exist"):
        import_matrix(tmp_path / "absent.csv", tmp_path / "absent.csv", experiment="bad")


def test_export_of_an_unknown_experiment_writes_nothing(store_uri, tmp_path):
    with pytest.raises(PepppError, match="no experiment named"):
        export_matrix("nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_full_paper_matrix_round_trip(store_uri, tmp_path):
    assert import_matrix(PAPER / "error.csv", PAPER / "memory_mb.csv", experiment="paper") == 88 * 99
    exported = export_matrix("paper", tmp_path / "out")
    assert (exported.n_datasets, exported.n_configs, exported.n_measured) == (88, 99, 8712)
    assert exported.error_csv.read_bytes() == (PAPER / "error.csv").read_bytes()
    assert exported.memory_csv.read_bytes() == (PAPER / "memory_mb.csv").read_bytes()
