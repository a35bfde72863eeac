"""`peppp evaluate`: table, JSON and one-line errors with exit status 2."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.cli import main
from peppp.methods import DEFAULT_METHOD

ERROR = str(PAPER_DIR / "error.csv")
MEMORY = str(PAPER_DIR / "memory_mb.csv")


def test_json_output_on_the_paper_matrix(capsys):
    code = main(["evaluate", "--error", ERROR, "--memory", MEMORY, "--exclude", "deca-08",
                 "--method", "ed", "--n", "3,5", "--rank", "5", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "ed" and out["n"] == [3, 5] and out["folds"] == 87
    for key in ("regret", "hyperdiff", "convergence"):
        assert len(out[key]) == 2 and all(0 <= v < 1 for v in out[key])


def test_table_output(capsys):
    assert main(["evaluate", "--error", ERROR, "--memory", MEMORY, "--exclude", "deca-08", "--method", "ed", "--n", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("method ed, rank 5") and "regret" in out and "87 folds" in out


def write(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index_label="dataset")
    return str(path)


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    e = pd.DataFrame(rng.uniform(0, 1, (6, 8)), [f"d{i}" for i in range(6)], [f"c{j}" for j in range(8)])
    m = pd.DataFrame(np.tile(np.arange(1, 9) * 10.0, (6, 1)), e.index, e.columns)
    return tmp_path, e, m


def setcell(frame, value):
    frame = frame.copy()
    frame.loc["d1", "c2"] = value
    return frame


def run_bad(capsys, args):
    code = main(["evaluate", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "mutate, extra, message",
    [
        (lambda e, m: (e, m.rename(columns={"c3": "zz"})), [], "configuration 'c3' is in the error matrix only"),
        (lambda e, m: (e, m.rename(index={"d2": "zz"})), [], "dataset 'd2' is in the error matrix only"),
        (lambda e, m: (e, m.iloc[:, :5]), [], "configuration 'c5' is in the error matrix only"),
        (lambda e, m: (setcell(e.astype(object), "abc"), m), [], "'abc' is not a number"),
        (lambda e, m: (setcell(e, 1.5), m), [], "outside \\[0, 1\\]"),
        (lambda e, m: (e, setcell(m, np.nan)), [], "must be a finite number of MB"),
        (lambda e, m: (e, m), ["--n", "9"], "larger than the 8 configurations"),
        (lambda e, m: (e, m), ["--rank", "6"], "rank 6 must be between"),
        (lambda e, m: (e, m), ["--method", "magic"], "unknown method 'magic'"),
        (lambda e, m: (e, m), ["--exclude", "nope"], "not a row"),
        (lambda e, m: (e, m), ["--n", "x"], "not a comma-separated list"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, small, mutate, extra, message):
    tmp_path, e, m = small
    e, m = mutate(e, m)
    args = ["--error", write(tmp_path, "e.csv", e), "--memory", write(tmp_path, "m.csv", m), "--rank", "2", "--n", "3", *extra]
    err = run_bad(capsys, args)
    assert __import__("re").search(message, err), err


def test_missing_file(capsys, tmp_path):
    err = run_bad(capsys, ["--error", str(tmp_path / "none.csv"), "--memory", MEMORY])
    assert "does not exist" in err


def test_compare_prints_one_table_with_every_method_side_by_side(capsys, small):
    tmp_path, e, m = small
    args = ["evaluate", "--error", write(tmp_path, "e.csv", e), "--memory", write(tmp_path, "m.csv", m),
            "--rank", "2", "--n", "2,4", "--compare", "ed,random,adaptive"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "6 folds" in lines[0]
    header = lines[2].split()
    assert header == ["n", "ed", "random", "adaptive", "ed", "random", "adaptive"]
    rows = {int(line.split()[0]): [float(v) for v in line.split()[1:]] for line in lines[3:5]}
    assert sorted(rows) == [2, 4] and all(len(v) == 6 and all(0 <= x <= 1 for x in v) for v in rows.values())
    assert lines[5].startswith("s/fold") and len(lines[5].split()) == 4


def test_compare_numbers_match_single_method_runs(capsys, small):
    tmp_path, e, m = small
    base = ["evaluate", "--error", write(tmp_path, "e.csv", e), "--memory", write(tmp_path, "m.csv", m),
            "--rank", "2", "--n", "3", "--json"]
    assert main([*base, "--compare", "ed,adaptive"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["methods"] == ["ed", "adaptive"]
    for name, result in zip(both["methods"], both["results"]):
        assert main([*base, "--method", name]) == 0
        alone = json.loads(capsys.readouterr().out)
        assert result["method"] == name
        assert result["regret"] == alone["regret"] and result["hyperdiff"] == alone["hyperdiff"]


@pytest.mark.parametrize(
    "compare, message",
    [("ed,magic", "unknown method 'magic'"), ("ed,ed", "names a method twice"), (",", "not a comma-separated list")],
)
def test_compare_bad_names_are_one_line_and_exit_2(capsys, small, compare, message):
    tmp_path, e, m = small
    args = ["--error", write(tmp_path, "e.csv", e), "--memory", write(tmp_path, "m.csv", m), "--rank", "2",
            "--n", "3", "--compare", compare]
    assert message in run_bad(capsys, args)


def test_the_default_method_is_peppps_default(capsys, small):
    tmp_path, e, m = small
    base = ["evaluate", "--error", write(tmp_path, "e.csv", e), "--memory", write(tmp_path, "m.csv", m),
            "--rank", "2", "--n", "3", "--json"]
    assert main(base) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["method"] == DEFAULT_METHOD
    assert main([*base, "--method", DEFAULT_METHOD]) == 0
    assert json.loads(capsys.readouterr().out)["regret"] == default["regret"]


def test_help_names_every_method_and_the_default_n():
    """The parser spells the names out (no numpy for every command): they must stay the registry's."""
    from peppp.commands.evaluate import DEFAULT_N, METHOD_NAMES
    from peppp.evaluate import loocv
    from peppp.methods import METHODS

    assert list(METHOD_NAMES) == sorted(METHODS)
    import inspect

    assert tuple(inspect.signature(loocv).parameters["n"].default) == DEFAULT_N


def test_the_help_states_the_auto_jobs_threshold_the_library_uses():
    from peppp.commands.evaluate import AUTO_JOBS_MIN_CELLS as shown
    from peppp.evaluate import AUTO_JOBS_MIN_CELLS

    assert shown == AUTO_JOBS_MIN_CELLS


def test_compare_prints_paired_differences_a_caption_and_writes_folds_and_a_plot(capsys, tmp_path):
    out_dir = tmp_path / "out" / "here"
    code = main(["evaluate", "--error", ERROR, "--memory", MEMORY, "--exclude", "deca-08", "--compare", "ed,random",
                 "--n", "3,5", "--out", str(out_dir), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "paired differences against ed" in text and "lower is better" in text
    # ED-MF at n = 3 (below its rank 5) states no std nor probability: "-", as in the legend, not "nan"
    assert "nan" not in text
    lines = text.splitlines()
    below = lines[next(i for i, line in enumerate(lines) if "calib.err" in line and "coverage" in line):]
    row = next(line.split() for line in below if line.split()[:1] == ["3"])
    assert row[1] == "-" and row[3] == "-"  # ed's coverage and calib.err
    folds = pd.read_csv(out_dir / "folds.csv")
    assert list(folds.columns) == ["dataset", "method", "n", "regret", "hyperdiff", "coverage"]
    assert len(folds) == 87 * 2 * 2
    assert (out_dir / "regret.png").read_bytes()[:4] == b"\x89PNG"
    assert (out_dir / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # the printed paired difference is the mean over the folds of random minus ed, in the same folds
    wide = folds.pivot_table(index=["dataset", "n"], columns="method", values="regret")
    diff = (wide["random"] - wide["ed"]).groupby("n").agg(["mean", "std", "count"])
    mean, se = diff.loc[3, "mean"], diff.loc[3, "std"] / np.sqrt(diff.loc[3, "count"])
    line = next(line for line in text.splitlines() if line.strip().startswith("3 ") and "±" in line)
    assert f"{mean:+.4f} ± {se:.4f}" in line


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--out", "/proc/no/such/dir"], "--out '/proc/no/such/dir' cannot be written"),
     (["--compare", "ed,nosuch"], "unknown method 'nosuch'")],
)
def test_bad_out_or_method_is_one_line_before_any_work(extra, message, capsys):
    assert main(["evaluate", "--error", ERROR, "--memory", MEMORY, "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_folds_by_group_and_calibration_in_table_and_json(capsys, tmp_path):
    """--folds groups trains each fold without the held-out dataset's group; the table and --json carry
    coverage and calibration_error per n."""
    rng = np.random.default_rng(2)
    names = [f"{g}-{i}" for g in ("a", "b", "c") for i in range(4)]
    e = pd.DataFrame(rng.uniform(0.1, 0.9, (12, 10)), names, [f"c{j}" for j in range(10)])
    m = pd.DataFrame(np.tile(np.arange(1, 11) * 10.0, (12, 1)), e.index, e.columns)
    base = ["evaluate", "--error", write(tmp_path, "e.csv", e), "--memory", write(tmp_path, "m.csv", m),
            "--rank", "2", "--n", "3,5", "--no-progress"]
    assert main([*base, "--method", "adaptive", "--folds", "groups"]) == 0
    out = capsys.readouterr().out
    assert "folds by groups, 12 folds" in out
    header = out.splitlines()[1].split()
    assert header[-2:] == ["coverage", "calib.err"]
    assert main([*base, "--compare", "ed,adaptive", "--folds", "groups", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    for result in payload["results"]:
        assert result["fold_scheme"] == "groups"
        assert len(result["coverage"]) == 2 and len(result["calibration_error"]) == 2
    adaptive = payload["results"][1]
    assert all(0 <= v <= 1 for v in adaptive["coverage"] + adaptive["calibration_error"])
    assert main([*base, "--method", "ed", "--folds", "groups", "--json"]) == 0
    by_group = json.loads(capsys.readouterr().out)
    assert main([*base, "--method", "ed", "--json"]) == 0
    by_dataset = json.loads(capsys.readouterr().out)
    assert by_dataset["fold_scheme"] == "datasets" and by_group["regret"] != by_dataset["regret"]


def test_jobs_run_the_folds_in_processes_with_the_same_figures(capsys, small):
    tmp_path, e, m = small
    base = ["evaluate", "--error", write(tmp_path, "e.csv", e), "--memory", write(tmp_path, "m.csv", m),
            "--rank", "2", "--n", "3", "--json", "--no-progress"]
    assert main(base) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main([*base, "--jobs", "2"]) == 0
    shared = json.loads(capsys.readouterr().out)
    for key in ("regret", "hyperdiff", "coverage", "calibration_error"):
        assert shared[key] == alone[key]
    assert alone["jobs"] == 1 and shared["jobs"] == 2  # 6 x 8 is below the auto threshold: one process
    assert main([*base[:-2], "--jobs", "2"]) == 0
    assert "in 2 worker processes" in capsys.readouterr().out.splitlines()[0]
    assert "must be a positive integer (or auto)" in run_bad(capsys, [*base[1:], "--jobs", "0"])
    for bad in ("two", "1.5", "Auto"):
        assert "is not an integer (ASCII digits, e.g. 3) (or auto)" in run_bad(capsys, [*base[1:], "--jobs", bad])


def test_a_reliability_legend_says_dash_where_a_method_stated_no_probabilities():
    from peppp.commands.evaluate import reliability_label

    assert reliability_label("adaptive", 0.0441) == "adaptive (ECE 0.044)"
    assert reliability_label("ed", float("nan")) == "ed (ECE -)"  # ED-MF below its rank, as the table
