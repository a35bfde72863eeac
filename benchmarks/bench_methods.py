"""Active-sampling methods side by side: regret and HyperDiff per n on the paper's matrix (87 folds, same
folds and seeds for every method), seconds per fold, and the default method at 10,000 x 1,000.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_methods.py [--methods ed,random,adaptive]
     [--cap none|median] [--meta-sample full|uniform:0.2|nonuniform:0.2] [--seeds 0] [--no-scale]
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from peppp.evaluate import load_matrices, loocv
from peppp.methods import DEFAULT_METHOD, get_method
from peppp.pareto import pareto_mask

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "meta" / "paper88x99"
NS = (3, 5, 8, 10, 15)


def paper_table(methods, *, cap, meta_sample, seeds):
    error, memory = load_matrices(str(PAPER / "error.csv"), str(PAPER / "memory_mb.csv"), exclude=["deca-08"])
    rows = {}
    for name in methods:
        tables, seconds = [], 0.0
        for seed in seeds:
            result = loocv(error, memory, method=name, n=NS, rank=5, cap=cap, meta_sample=meta_sample, seed=seed)
            table = result.summary()
            tables.append(table)
            seconds += result.seconds / int(table["folds"].iloc[0])
        mean = sum(t[["regret", "hyperdiff", "regret_se", "hyperdiff_se"]] for t in tables) / len(tables)
        rows[name] = (mean, seconds / len(seeds))
    print(f"Paper matrix, 87 folds, rank 5, cap {cap}, meta-sample {meta_sample}, seeds {list(seeds)}")
    print()
    print("| metric | method | " + " | ".join(f"n={n}" for n in NS) + " | s/fold |")
    print("|---|---|" + "---|" * (len(NS) + 1))
    for metric in ("regret", "hyperdiff"):
        for name, (table, per_fold) in rows.items():
            cells = " | ".join(f"{table.loc[n, metric]:.4f} ± {table.loc[n, metric + '_se']:.4f}" for n in NS)
            print(f"| {metric} | {name} | {cells} | {per_fold:.3f} |")
    print()


def scale_run(rows=10_000, cols=1_000, rank=10, n=15, seed=0):
    """Fit the default method on a rows x cols matrix (low rank, row-dependent noise), run one session."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0, 1, (rows + 1, rank)) @ rng.uniform(0, 1, (rank, cols)) / rank
    noise = rng.uniform(0.005, 0.05, (rows + 1, 1)) * rng.standard_normal((rows + 1, cols))
    E = np.clip(signal + noise, 0, 1)
    memory = np.round(rng.uniform(50, 1000, cols), 0)  # ties, as real grids have
    method = get_method(DEFAULT_METHOD, rank=5)
    start = time.perf_counter()
    method.fit(E[1:])
    fit_s = time.perf_counter() - start
    session = method.session(memory_mb=memory, seed=seed)
    picks_s = []
    while len(session.measured) < n:
        t = time.perf_counter()
        (j,) = session.propose(1)
        picks_s.append(time.perf_counter() - t)
        session.observe(j, E[0, j])
    t = time.perf_counter()
    estimate = session.estimate()
    estimate_s = time.perf_counter() - t
    pareto_mask(memory, estimate.error)
    print(f"Default method ({DEFAULT_METHOD}) at {rows:,} x {cols:,}, one session to n={n}")
    print()
    print("| step | wall s |")
    print("|---|---|")
    print(f"| fit | {fit_s:.2f} |")
    print(f"| propose, mean of {n} (max) | {np.mean(picks_s):.2f} ({max(picks_s):.2f}) |")
    print(f"| estimate | {estimate_s:.2f} |")
    print(f"| total | {fit_s + sum(picks_s) + estimate_s:.2f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=f"ed,random,{DEFAULT_METHOD}")
    parser.add_argument("--cap", default="none")
    parser.add_argument("--meta-sample", default="full")
    parser.add_argument("--seeds", default="0", help="comma-separated evaluation seeds; tables average them")
    parser.add_argument("--no-scale", action="store_true", help="skip the 10,000 x 1,000 run")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    paper_table(args.methods.split(","), cap=args.cap, meta_sample=args.meta_sample, seeds=seeds)
    if not args.no_scale:
        scale_run()


if __name__ == "__main__":
    main()
