"""Input checked before any work, strictly, in one line (issue 15, probes 3, 4, 5, 8, 9)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from peppp import _checks as checks
from peppp.cli import main
from peppp.errors import PepppError
from peppp.matrices import MAX_CSV_BYTES, read_matrix_csv


def _one_line_exit_2(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- probe 3: one configuration, two spellings ---------------------------------------------------------


def test_two_spellings_of_one_configuration_are_one_column(tmp_path):
    path = _csv(tmp_path, "e.csv", "dataset,e3m1/e7m9,E3M1/E7M9\na,0.5,0.25\n")
    with pytest.raises(PepppError, match=r"'e3m1/e7m9' appears twice \('e3m1/e7m9' and 'E3M1/E7M9' are one"):
        read_matrix_csv(path, what="error")


def test_configuration_labels_come_back_canonical(tmp_path):
    frame = read_matrix_csv(_csv(tmp_path, "e.csv", "dataset,E4M3/E7M9, FP32\na,0.5,0.25\n"))
    assert list(frame.columns) == ["e4m3/e7m9", "fp32"]


def test_import_of_two_spellings_is_refused_and_evaluate_agrees(store_uri, tmp_path, capsys):
    error = _csv(tmp_path, "e.csv", "dataset,e3m1/e7m9,E3M1/E7M9\na,0.5,0.25\nb,0.4,0.3\n")
    memory = _csv(tmp_path, "m.csv", "dataset,e3m1/e7m9,E3M1/E7M9\na,1,1\nb,1,1\n")
    _one_line_exit_2(capsys, ["import-matrix", "--error", str(error), "--memory", str(memory), "--experiment", "x"],
                     "appears twice")
    _one_line_exit_2(capsys, ["evaluate", "--error", str(error), "--memory", str(memory)], "appears twice")


# ---- probe 4: labels longer than the store keeps ------------------------------------------------------


def test_over_long_labels_are_refused_not_cut(store_uri, tmp_path, capsys):
    long = "d" * (checks.MAX_LABEL_CHARS + 1)
    error = _csv(tmp_path, "e.csv", f"dataset,e3m1/e7m9\n{long}a,0.5\n{long}b,0.4\n")
    memory = _csv(tmp_path, "m.csv", f"dataset,e3m1/e7m9\n{long}a,1\n{long}b,1\n")
    _one_line_exit_2(capsys, ["import-matrix", "--error", str(error), "--memory", str(memory), "--experiment", "x"],
                     "characters long")
    ok_error = _csv(tmp_path, "e2.csv", "dataset,e3m1/e7m9\na,0.5\n")
    ok_memory = _csv(tmp_path, "m2.csv", "dataset,e3m1/e7m9\na,1\n")
    _one_line_exit_2(capsys, ["import-matrix", "--error", str(ok_error), "--memory", str(ok_memory),
                              "--experiment", "x", "--recipe", "r" * 9000], "--recipe", "characters long")
    _one_line_exit_2(capsys, ["matrix", "--experiment", "x", "--out", str(tmp_path / "o"), "--recipe", "r" * 9000],
                     "characters long")


def test_a_cell_result_refuses_a_label_the_store_would_cut():
    from peppp.cells import CellResult

    with pytest.raises(PepppError, match="characters long"):
        CellResult(dataset="d" * 8001, config="fp32", recipe="cpu", network="n", seed=0, error=0.1, memory_mb=1.0,
                   train_seconds=1.0, final_loss=0.1)


# ---- probe 5 and 6: values checked before any work -----------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["demo", "--budget", "nan"], ["--budget", "not a number"]),
        (["demo", "--budget", "-1"], ["--budget", "MB > 0"]),
        (["demo", "--budget", "inf"], ["--budget"]),
        (["meta-train", "--experiment", "x", "--datasets", "digits", "--configs", "fp32", "--seeds", "-1"], ["--seeds"]),
        (["meta-train", "--experiment", "x", "--datasets", "digits", "--configs", "fp32", "--seeds", "1,1"], ["twice"]),
        (["evaluate", "--error", "e.csv", "--memory", "m.csv", "--seed", "-5"], ["--seed", "0 to"]),
        (["search", "--dataset", "d", "--meta-experiment", "m", "--n", "1_0"], ["--n", "not an integer"]),
        (["search", "--dataset", "d", "--meta-experiment", "m", "--cap", "nan"], ["--cap"]),
        (["evaluate", "--error", "e.csv", "--memory", "m.csv", "--n", "３"], ["--n"]),
        (["frontier", "--name", "x", "--budget", "1e999"], ["--budget"]),
        (["train", "--dataset", "digits", "--config", "fp32", "--epochs", "0"], ["--epochs"]),
    ],
)
def test_bad_values_are_refused_before_anything_starts(capsys, argv, words):
    start = time.perf_counter()
    _one_line_exit_2(capsys, argv, *words)
    assert time.perf_counter() - start < 5  # refused by the parser: nothing was imported, trained or opened


def test_flows_check_the_same_values_before_any_work(monkeypatch):
    import flows.demo
    import flows.meta_train

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the values were checked")

    monkeypatch.setattr(flows.demo, "meta_train", no_work)
    with pytest.raises(PepppError, match="budget_mb nan"):
        flows.demo.demo.fn(budget_mb=math.nan)
    with pytest.raises(PepppError, match="budget_mb -1"):
        flows.demo.demo.fn(budget_mb=-1)
    monkeypatch.setattr(flows.meta_train, "recover_task", no_work)
    with pytest.raises(PepppError, match="seeds"):
        flows.meta_train.meta_train.fn(experiment="x", datasets=["digits"], configs=["fp32"], seeds=[-1])
    from flows.active_search import active_search

    with pytest.raises(PepppError, match="seed -5"):
        active_search.fn(dataset="digits", meta_experiment="m", seed=-5)


# ---- probe 8 and 9: bounded, strict CSV reading --------------------------------------------------------


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "1_0e-1", "０.5", "0x1", "1e", "--1", "0.5 0.5"])
def test_a_cell_that_is_not_an_ascii_decimal_is_refused(tmp_path, cell):
    path = _csv(tmp_path, "e.csv", f"dataset,e3m1/e7m9,e4m3/e7m9\na,{cell},0.5\n")
    with pytest.raises(PepppError, match="is not a number"):
        read_matrix_csv(path)


@pytest.mark.parametrize("cell, value", [("0.5", 0.5), (" 1e-3", 1e-3), ("+2.", 2.0), (".25", 0.25), ("", math.nan)])
def test_ascii_decimals_and_empty_cells_still_read(tmp_path, cell, value):
    frame = read_matrix_csv(_csv(tmp_path, "e.csv", f"dataset,e3m1/e7m9\na,{cell}\n"))
    got = frame.iloc[0, 0]
    assert (math.isnan(got) and math.isnan(value)) or got == value


def test_full_width_digits_are_no_format(tmp_path):
    from peppp.formats import parse_config

    with pytest.raises(PepppError):
        parse_config("e４m3/e7m9")
    frame = read_matrix_csv(_csv(tmp_path, "e.csv", "dataset,e４m3/e7m9\na,0.5\n"))
    assert list(frame.columns) == ["e４m3/e7m9"]  # kept as written: the import then refuses it


def test_an_endless_or_huge_csv_is_refused_after_a_bounded_read(tmp_path, capsys):
    start = time.perf_counter()
    with pytest.raises(PepppError, match="larger than"):
        read_matrix_csv("/dev/zero")
    big = tmp_path / "big.csv"
    with big.open("w") as handle:
        handle.write("dataset,e3m1/e7m9\n")
        handle.write("a,0.5\n" * (MAX_CSV_BYTES // 6 + 10))
    _one_line_exit_2(capsys, ["evaluate", "--error", str(big), "--memory", str(big)], "larger than")
    assert time.perf_counter() - start < 10
