"""Rebuilding the paper's 88 x 99 matrices from 8,712 runs: peppp's reader against MLflow's search_runs.

Imports the paper's meta-dataset into a temporary sqlite store, then times, side by side, the
rebuild of the (error, memory) matrices by `peppp.tracking.rebuild_matrices` and by the generic
route (`mlflow.search_runs` into a DataFrame, then the same pivot), checks that both give the
paper's CSVs back, and prints the ratio. The goal is a rebuild in at most 2 s.

    .venv/bin/python benchmarks/bench_rebuild.py [--repeat 5] [--baseline-repeat 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "meta" / "paper88x99"
GOAL_SECONDS = 2.0


def _timed(function, repeat: int) -> tuple[list[float], object]:
    seconds, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        seconds.append(time.perf_counter() - started)
    return seconds, value


def search_runs_rebuild(experiment: str):
    """The generic route: every run with all its data through MLflow's search API, then the pivot."""
    import mlflow
    import pandas as pd

    from peppp.tracking import matrices_from_cells

    runs = mlflow.search_runs(experiment_names=[experiment], max_results=50_000, output_format="pandas")
    runs = runs[runs["tags.peppp.role"] == "meta"]
    columns = {
        "tags.peppp.dataset": "dataset",
        "tags.peppp.config": "config",
        "tags.peppp.recipe": "recipe",
        "tags.peppp.status": "status",
        "metrics.test_error": "test_error",
        "metrics.memory_mb": "memory_mb",
    }
    cells = runs[list(columns)].rename(columns=columns)
    epoch = pd.Timestamp(0, tz="UTC")
    cells["start_time"] = (runs["start_time"] - epoch) // pd.Timedelta(milliseconds=1)
    return matrices_from_cells(cells, experiment=experiment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rebuilds with peppp's reader")
    parser.add_argument("--baseline-repeat", type=int, default=1, help="timed rebuilds with search_runs")
    parser.add_argument("--keep", default=None, metavar="DIR", help="build the store in DIR and keep it")
    args = parser.parse_args(argv)

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="peppp-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    try:
        import mlflow
        import pandas as pd

        from peppp.tracking import connect, import_matrix, rebuild_matrices, read_matrix_csv

        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        started = time.perf_counter()
        connect()
        create_seconds = time.perf_counter() - started
        started = time.perf_counter()
        n_runs = import_matrix(PAPER / "error.csv", PAPER / "memory_mb.csv", experiment="paper88x99")
        import_seconds = time.perf_counter() - started

        ours, (error, memory) = _timed(lambda: rebuild_matrices("paper88x99"), args.repeat)
        theirs, (error_b, memory_b) = _timed(lambda: search_runs_rebuild("paper88x99"), args.baseline_repeat)

        for rebuilt in (error, error_b):
            pd.testing.assert_frame_equal(rebuilt, read_matrix_csv(PAPER / "error.csv"), check_exact=True)
        for rebuilt in (memory, memory_b):
            pd.testing.assert_frame_equal(rebuilt, read_matrix_csv(PAPER / "memory_mb.csv"), check_exact=True)

        best, median = min(ours), statistics.median(ours)
        base = statistics.median(theirs)
        print(f"store: {os.environ['MLFLOW_TRACKING_URI']}")
        print(f"create store (MLflow migrations): {create_seconds:8.2f} s")
        print(f"import {n_runs} runs:               {import_seconds:8.2f} s")
        print(f"{'rebuild 88 x 99':<24} {'median s':>9} {'best s':>8} {'runs':>5}")
        print(f"{'peppp rebuild_matrices':<24} {median:>9.3f} {best:>8.3f} {len(ours):>5}")
        print(f"{'mlflow.search_runs':<24} {base:>9.3f} {min(theirs):>8.3f} {len(theirs):>5}")
        print(f"speed-up (median): {base / median:.1f}x; both equal the paper's CSVs exactly")
        verdict = "meets" if median <= GOAL_SECONDS else "MISSES"
        print(f"goal: rebuild in <= {GOAL_SECONDS:.0f} s: {verdict} ({median:.3f} s)")
        return 0 if median <= GOAL_SECONDS else 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
