"""The chip designer's report: frontier membership and best picks per format and family, by role."""

import numpy as np
import pandas as pd
import pytest

from peppp.errors import PepppError
from peppp.report import DatasetPoints, format_report, points_from_matrices, write_report


def two_datasets() -> list[DatasetPoints]:
    configs = ("mxfp4.e2m1/bf16", "fp8.e4m3/bf16", "mxint8/fp16", "e4m3/e7m9")
    # a: mxfp4 (4 MB) and fp8 (8 MB) on the frontier, mxint8 dominated by fp8, e4m3/e7m9 dominated
    a = DatasetPoints("a", configs, (4.0, 8.0, 8.5, 9.0), (0.30, 0.10, 0.20, 0.40))
    # b: each configuration less error than the smaller ones: all four on the frontier
    b = DatasetPoints("b", configs, (4.0, 8.0, 8.5, 9.0), (0.50, 0.45, 0.05, 0.04))
    return [a, b]


def test_frontier_counts_and_best_picks_by_role():
    report = format_report(two_datasets(), budgets_mb=[5, 8.2, 100])
    f = report.formats.set_index(["role", "format"])
    # a's frontier: mxfp4/bf16, fp8.e4m3/bf16; b's: mxfp4/bf16, fp8.e4m3/bf16, mxint8/fp16, e4m3/e7m9
    assert f.loc[("low", "mxfp4.e2m1"), "on frontier"] == 2
    assert f.loc[("low", "mxint8"), "on frontier"] == 1
    assert f.loc[("low", "e4m3"), "on frontier"] == 1
    assert f.loc[("high", "bf16"), "on frontier"] == 2
    assert f.loc[("high", "e7m9"), "share on frontier"] == 0.5
    # best picks: 5 MB -> mxfp4 on both; 8.2 MB -> fp8 on both; 100 MB -> fp8 on a, e4m3/e7m9 on b
    assert list(f.loc[("low", "mxfp4.e2m1"), ["best@5MB", "best@8.2MB", "best@100MB"]]) == [2, 0, 0]
    assert list(f.loc[("low", "fp8.e4m3"), ["best@5MB", "best@8.2MB", "best@100MB"]]) == [0, 2, 1]
    assert list(f.loc[("low", "e4m3"), ["best@5MB", "best@8.2MB", "best@100MB"]]) == [0, 0, 1]
    assert f.loc[("low", "fp8.e4m3"), "family"] == "fp8" and f.loc[("low", "e4m3"), "family"] == "float"
    fam = report.families.set_index(["role", "family"])
    assert fam.loc[("low", "mx"), "on frontier"] == 2 and fam.loc[("low", "mx"), "best@5MB"] == 2
    assert fam.loc[("high", "fp16/bf16"), "on frontier"] == 2 and fam.loc[("low", "float"), "on frontier"] == 1
    assert report.best.loc["b", "best@100MB"] == "e4m3/e7m9" and report.best.loc["a", "best@5MB"] == "mxfp4.e2m1/bf16"
    text = report.table()
    assert "mxfp4.e2m1" in text and "best@8.2MB" in text and "fp16/bf16" in text


def test_a_budget_below_every_configuration_picks_nothing():
    report = format_report(two_datasets(), budgets_mb=[1])
    assert report.formats["best@1MB"].sum() == 0 and (report.best["best@1MB"] == "").all()


def test_from_matrices_skips_missing_cells_and_default_budgets():
    error = pd.DataFrame({"fp8.e4m3/bf16": [0.1, np.nan], "mxfp4.e2m1/fp16": [0.2, 0.3]}, index=["x", "y"])
    memory = pd.DataFrame({"fp8.e4m3/bf16": [8.0, 8.0], "mxfp4.e2m1/fp16": [4.0, 4.0]}, index=["x", "y"])
    points = points_from_matrices(error, memory)
    assert [p.configs for p in points] == [("fp8.e4m3/bf16", "mxfp4.e2m1/fp16"), ("mxfp4.e2m1/fp16",)]
    report = format_report(points)
    assert len(report.budgets_mb) >= 1 and all(4.0 <= b <= 8.0 for b in report.budgets_mb)
    f = report.formats.set_index(["role", "format"])
    assert f.loc[("low", "fp8.e4m3"), "datasets"] == 1 and f.loc[("low", "mxfp4.e2m1"), "on frontier"] == 2


@pytest.mark.parametrize("points, budgets, message", [
    ([], None, "no datasets"),
    ("two", [0], "positive"),
    ("two", ["x"], "not a number"),
    ("two", [], "at least one"),
])
def test_bad_input(points, budgets, message):
    with pytest.raises(PepppError, match=message):
        format_report(two_datasets() if points == "two" else points, budgets_mb=budgets)


def test_write_report(tmp_path):
    paths = write_report(format_report(two_datasets(), budgets_mb=[5, 100]), tmp_path)
    assert [p.name for p in paths] == ["formats.csv", "families.csv", "best_picks.csv", "report.png"]
    assert paths[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mxfp4.e2m1" in paths[0].read_text()


def test_points_from_a_registered_frontier():
    from peppp.frontier import Frontier, FrontierPoint
    from peppp.report import points_from_frontier

    frontier = Frontier(dataset="d", meta_experiment="m", points=(
        FrontierPoint(config="mxfp4.e2m1/bf16", memory_mb=1.1, error=0.2, error_std=0.01, measured=False),
        FrontierPoint(config="fp8.e4m3/fp16", memory_mb=2.0, error=0.1, error_std=None, measured=True),
    ))
    points = points_from_frontier(frontier)
    assert points.source == "registered" and points.configs == ("mxfp4.e2m1/bf16", "fp8.e4m3/fp16")
    report = format_report([points], budgets_mb=[1.5, 3])
    f = report.formats.set_index(["role", "format"])
    assert f.loc[("low", "fp8.e4m3"), "on frontier"] == 1 and list(f.loc[("low", "fp8.e4m3"), ["best@1.5MB", "best@3MB"]]) == [0, 1]
