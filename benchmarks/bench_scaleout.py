"""Load figures for the scale-out layout: cells logged per second through an MLflow server on PostgreSQL
with N concurrent logging processes, and the matrix rebuild time and peak memory at 10,000 and 50,000 runs.

Logging: a PostgreSQL (devtools.services.start_postgres) and `mlflow server` on it; N = 1, 2, 4 processes each
log `--cells` real cells with `log_cell` (one run per cell over REST). Rebuild: synthetic cells bulk-imported
into a sqlite store with `log_cells_batch`, then `rebuild_matrices` timed in a fresh subprocess whose peak
resident memory (ru_maxrss) is reported. Prints a markdown table.

    .venv/bin/python benchmarks/bench_scaleout.py [--cells 60] [--writers 1,2,4] [--runs 10000,50000] [--no-server]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# devtools/ (the servers) is not installed; run as a script, it is found from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cell(dataset: str, config: str, error: float, memory_mb: float):
    from peppp.cells import CellResult

    return CellResult(dataset=dataset, config=config, recipe="bench", network="resnet18", seed=0, error=error,
                      memory_mb=memory_mb, train_seconds=1.0, final_loss=0.5)


def configs(n: int) -> list[str]:
    """`n` distinct valid precision configurations."""
    from peppp.formats import parse_config

    found = []
    for low_e in range(2, 9):
        for low_m in range(1, 11):
            for high_e in range(5, 9):
                for high_m in range(5, 24, 2):
                    try:
                        found.append(str(parse_config(f"e{low_e}m{low_m}/e{high_e}m{high_m}")))
                    except ValueError:
                        continue
                    if len(dict.fromkeys(found)) >= n:
                        return list(dict.fromkeys(found))[:n]
    raise SystemExit(f"only {len(set(found))} configurations found, {n} wanted")


def _log_many(uri: str, experiment: str, writer: int, count: int, grid: list[str], start, done) -> None:
    from peppp.tracking import connect, log_cell

    connect(uri)
    start.wait()
    began = time.perf_counter()
    for i in range(count):
        log_cell(experiment, _cell(f"w{writer}-d{i // len(grid)}", grid[i % len(grid)], 0.1, 10.0), tracking_uri=uri)
    done.put(time.perf_counter() - began)


def logging_rate(uri: str, writers: int, cells: int, grid: list[str]) -> tuple[float, float]:
    """(cells per second over all writers, wall seconds) for `writers` processes logging `cells` each."""
    from peppp.tracking import get_or_create_experiment

    experiment = f"bench-log-{writers}-{time.time_ns()}"
    get_or_create_experiment(experiment, tracking_uri=uri)
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_log_many, args=(uri, experiment, w, cells, grid, start, done)) for w in range(writers)]
    for p in procs:
        p.start()
    time.sleep(5.0)  # every writer has imported MLflow and connected before the clock starts
    began = time.perf_counter()
    start.set()
    for _ in procs:
        done.get(timeout=600)
    wall = time.perf_counter() - began
    for p in procs:
        p.join()
    return writers * cells / wall, wall


def build_store(path: Path, runs: int, n_configs: int = 100) -> str:
    from peppp.tracking import log_cells_batch

    uri = f"sqlite:///{path}"
    grid = configs(n_configs)
    n_datasets = math.ceil(runs / n_configs)
    cells = [_cell(f"d{d:05d}", c, (d * 7 + j) % 97 / 100, 1.0 + j)
             for d in range(n_datasets) for j, c in enumerate(grid)][:runs]
    for chunk in range(0, len(cells), 10_000):
        log_cells_batch("bench-rebuild", cells[chunk:chunk + 10_000], tracking_uri=uri)
    return uri


_REBUILD = """
import resource, sys, time, tracemalloc
from peppp.tracking import connect, rebuild_matrices
connect(sys.argv[1]).search_experiments(max_results=1)
began = time.perf_counter()
error, memory = rebuild_matrices("bench-rebuild", tracking_uri=sys.argv[1])
seconds = time.perf_counter() - began
del error, memory
tracemalloc.start()
error, memory = rebuild_matrices("bench-rebuild", tracking_uri=sys.argv[1])
traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
print(seconds, error.size, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, traced_peak)
"""


def rebuild(uri: str) -> tuple[float, int, float, float]:
    """(seconds, matrix cells, peak RSS MiB of the process, peak MiB Python allocated during the rebuild) of
    `rebuild_matrices` in a fresh process whose store is already open; the memory is traced on a second,
    untimed rebuild (tracemalloc slows the allocations it counts)."""
    out = subprocess.run([sys.executable, "-c", _REBUILD, uri], check=True, capture_output=True, text=True)
    seconds, size, peak, traced = out.stdout.split()
    return float(seconds), int(size), float(peak), float(traced)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=60, help="cells logged by each writer")
    parser.add_argument("--writers", default="1,2,4", help="numbers of concurrent writers")
    parser.add_argument("--runs", default="10000,50000", help="store sizes for the rebuild")
    parser.add_argument("--no-server", action="store_true", help="skip the logging figures (no PostgreSQL needed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from devtools.services import start_mlflow_server, start_postgres

    folder = Path(tempfile.mkdtemp(prefix="peppp-bench-scaleout-"))
    folder.chmod(0o711)  # as root PostgreSQL runs as `postgres`, which must enter this folder
    rows = []
    try:
        grid = configs(20)
        writers = [] if args.no_server else [int(w) for w in args.writers.split(",")]
        if writers:
            with start_postgres(folder / "pg", durable=False) as pg, \
                    start_mlflow_server(pg.uri, folder / "artifacts", log_path=folder / "mlflow.log") as server:
                for n in writers:
                    rate, wall = logging_rate(server.uri, n, args.cells, grid)
                    rows.append(f"| log_cell via MLflow server on PostgreSQL, {n} writer(s) | {n * args.cells} cells "
                                f"in {wall:.1f} s | **{rate:.1f} cells/s** |")
        for runs in (int(r) for r in args.runs.split(",")):
            path = folder / f"rebuild-{runs}.db"
            began = time.perf_counter()
            uri = build_store(path, runs)
            built = time.perf_counter() - began
            seconds, size, peak, traced = rebuild(uri)
            rows.append(f"| rebuild_matrices, {runs:,} runs in sqlite (bulk import {built:.1f} s) | {size:,} matrix "
                        f"cells | **{seconds:.2f} s**; rebuild allocates at most {traced:.0f} MiB (tracemalloc); process "
                        f"peak RSS {peak:.0f} MiB |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("| measurement | size | result |\n|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
