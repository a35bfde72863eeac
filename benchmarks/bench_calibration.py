"""Calibration and robustness of the default method against ED-MF (issue 14): on the paper's matrix
(deca-08 excluded, rank 5, seed 0), in the six settings (cap none / median x meta-sample full /
uniform:0.2 / nonuniform:0.2) with folds by dataset and by group, both methods in the same folds: regret
per n, coverage of the stds and calibration error of probability_best; then seconds per fold at
420 x 220 (synthetic low rank plus noise), ED-MF and the default method interleaved fold by fold;
with --full-loo J,J,..., the whole leave-one-out at 420 x 220 (`loocv`), ED-MF and the default method, with
each number of worker processes J.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_calibration.py [--folds datasets,groups]
     [--settings none/full,median/uniform:0.2,...] [--cost-folds 8] [--skip-paper] [--skip-cost]
     [--full-loo 1,2]
Prints markdown tables (the BENCHMARKS.md section "Calibration and robustness (issue 14)").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from peppp.evaluate import load_matrices, loocv, run_search, score_fold
from peppp.methods import DEFAULT_METHOD, Adaptive, get_method, usable_cores

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "meta" / "paper88x99"
NS = (3, 5, 8, 10, 15)
SETTINGS = tuple(f"{cap}/{sample}" for cap in ("none", "median") for sample in ("full", "uniform:0.2", "nonuniform:0.2"))


def paper_tables(fold_schemes, settings) -> None:
    error, memory = load_matrices(str(PAPER / "error.csv"), str(PAPER / "memory_mb.csv"), exclude=["deca-08"])
    results = {}
    for folds in fold_schemes:
        for setting in settings:
            cap, sample = setting.split("/")
            for name in ("ed", DEFAULT_METHOD):
                results[folds, setting, name] = loocv(error, memory, method=name, n=NS, rank=5, cap=cap,
                                                      meta_sample=sample, seed=0, folds=folds)
    head = " | ".join(f"n={n}" for n in NS)
    for folds in fold_schemes:
        count = int(results[folds, settings[0], "ed"].summary()["folds"].iloc[0])
        print(f"Regret, folds by {folds} ({count} folds), {DEFAULT_METHOD} / ED-MF (mean over folds; "
              f"paired difference ± its standard error below)")
        print()
        print(f"| cap / meta-sample | {head} | {DEFAULT_METHOD} <= ED at every n | s/fold {DEFAULT_METHOD} / ED |")
        print("|---|" + "---|" * (len(NS) + 2))
        for setting in settings:
            ours, ed = results[folds, setting, DEFAULT_METHOD], results[folds, setting, "ed"]
            a, e = ours.summary(), ed.summary()
            cells = []
            for n in NS:
                diff = _paired(ours, ed, n)
                cells.append(f"{a.loc[n, 'regret']:.4f} / {e.loc[n, 'regret']:.4f} ({diff[0]:+.4f} ± {diff[1]:.4f})")
            ok = "yes" if all(a.loc[n, "regret"] <= e.loc[n, "regret"] for n in NS) else "**no**"
            seconds = f"{ours.seconds / count:.2f} / {ed.seconds / count:.3f}"
            print(f"| {setting} | " + " | ".join(cells) + f" | {ok} | {seconds} |")
        print()
    for folds in fold_schemes:
        print(f"Coverage of ±1 std (target 0.63-0.73) and calibration error of probability_best (target <= 0.05), "
              f"folds by {folds}")
        print()
        print(f"| cap / meta-sample | method | coverage {head} | calibration error {head} |")
        print("|---|---|" + "---|" * (2 * len(NS)))
        for setting in settings:
            for name in (DEFAULT_METHOD, "ed"):
                table = results[folds, setting, name].summary()
                coverage = " | ".join(_num(table.loc[n, "coverage"]) for n in NS)
                calibration = " | ".join(_num(table.loc[n, "calibration_error"]) for n in NS)
                print(f"| {setting} | {name} | {coverage} | {calibration} |")
        print()


def _paired(ours, ed, n) -> tuple[float, float]:
    a = {f.dataset: f.regret for f in ours.folds if f.n == n}
    b = {f.dataset: f.regret for f in ed.folds if f.n == n}
    diff = np.array([a[d] - b[d] for d in a])
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def _num(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3f}"


def cost_table(folds: int, *, rows=420, cols=220, rank=5, seed=0) -> None:
    """Seconds per fold at rows x cols, ED-MF and the default method (with and without the std's
    calibration) interleaved on the same held-out rows; regret per n alongside."""
    E, memory = synthetic(rows, cols, rank, seed)
    candidates = np.ones(cols, dtype=bool)
    threads = Adaptive().threads()
    makers = {"ed": lambda: get_method("ed", rank=rank),
              f"{DEFAULT_METHOD} ({threads} threads, the default here)": lambda: get_method(DEFAULT_METHOD, rank=rank),
              f"{DEFAULT_METHOD}, 1 thread": lambda: Adaptive(rank=rank, workers=1),
              f"{DEFAULT_METHOD}, uncalibrated (no nested fit)": lambda: Adaptive(rank=rank, calibrate=False)}
    seconds = {name: [] for name in makers}
    regret = {name: {n: [] for n in NS} for name in makers}
    held_out = np.linspace(0, rows - 1, folds).astype(int)
    for i in held_out:
        for name, make in makers.items():
            start = time.perf_counter()
            method = make().fit(np.delete(E, i, axis=0))
            session = None
            for n in NS:
                if session is None or not method.sequential:
                    session = method.session(memory_mb=memory, seed=int(i))
                run_search(session, E[i], n, sequential=method.sequential)
                scores = score_fold(true_error=E[i], memory_mb=memory, estimate=session.estimate(),
                                    picks=np.asarray(session.measured), candidates=candidates,
                                    memory_scale=float(memory.max()))
                regret[name][n].append(scores["regret"])
            seconds[name].append(time.perf_counter() - start)
    print(f"Seconds per fold at {rows} x {cols}, rank {rank} (synthetic rank-{rank} matrix plus row-dependent noise), "
          f"{folds} held-out rows, methods interleaved fold by fold (fit, searches to n = {max(NS)}, "
          "estimates and scores at every n)")
    print()
    print("| method | s/fold (mean) | max | " + " | ".join(f"regret n={n}" for n in NS) + " |")
    print("|---|---|---|" + "---|" * len(NS))
    for name in makers:
        cells = " | ".join(f"{np.mean(regret[name][n]):.4f}" for n in NS)
        print(f"| {name} | {np.mean(seconds[name]):.2f} | {np.max(seconds[name]):.2f} | {cells} |")
    print()


def synthetic(rows=420, cols=220, rank=5, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """The cost benchmark's matrix: rank-`rank` errors plus row-dependent noise, and memories."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0, 1, (rows, rank)) @ rng.uniform(0, 1, (rank, cols)) / rank
    noise = rng.uniform(0.005, 0.05, (rows, 1)) * rng.standard_normal((rows, cols))
    return np.clip(signal + noise, 0, 1), np.round(rng.uniform(50, 1000, cols), 0)


def full_loo_table(jobs: list[int], *, rank=5) -> None:
    """Wall time of the whole leave-one-out at 420 x 220, per fold, for each jobs: ED-MF and the default
    method side by side (one after the other, on the same folds)."""
    import pandas as pd

    E, memory = synthetic(rank=rank)
    names, configs = [f"d{i}" for i in range(E.shape[0])], [f"c{j}" for j in range(E.shape[1])]
    error = pd.DataFrame(E, names, configs)
    memory_frame = pd.DataFrame(np.tile(memory, (E.shape[0], 1)), names, configs)
    print(f"Whole leave-one-out at {E.shape[0]} x {E.shape[1]}, rank {rank} "
          f"(`loocv`, n = {', '.join(map(str, NS))}; {usable_cores()} cores)")
    print()
    print("| worker processes | method | wall seconds | s per fold | regret n=3 | regret n=15 |")
    print("|---|---|---|---|---|---|")
    for j in jobs:
        for method in ("ed", DEFAULT_METHOD):
            start = time.perf_counter()
            result = loocv(error, memory_frame, method=method, n=NS, rank=rank, seed=0, jobs=j)
            wall = time.perf_counter() - start
            regret = result.summary()["regret"]
            print(f"| {j} | {method} | {wall:.0f} | {wall / E.shape[0]:.2f} | {regret.iloc[0]:.4f} "
                  f"| {regret.iloc[-1]:.4f} |", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", default="datasets,groups")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--cost-folds", type=int, default=8)
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--full-loo", default="", metavar="J,J,...", help="also time the whole 420 x 220 leave-one-out")
    args = parser.parse_args()
    if not args.skip_paper:
        paper_tables(args.folds.split(","), tuple(args.settings.split(",")))
    if not args.skip_cost:
        cost_table(args.cost_folds)
    if args.full_loo:
        full_loo_table([int(j) for j in args.full_loo.split(",")])


if __name__ == "__main__":
    main()
