"""Core speed: the full 87-fold leave-one-dataset-out ED evaluation on the paper's matrix (target < 10 s),
and ED design + completion + frontier at scale on a random rank-10 10,000 x 1,000 matrix (target <= 5 s).

Run: .venv/bin/python benchmarks/bench_core.py [--repeat 3]
Prints a markdown table of wall times (median over repeats) with the targets.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from peppp.completion import SoftImpute, fit_row, sample_mask, svd_embeddings
from peppp.design import get_design
from peppp.evaluate import load_matrices, loocv
from peppp.pareto import best_for_budget, pareto_mask

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "meta" / "paper88x99"


def timed(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def paper_loocv():
    error, memory = load_matrices(str(PAPER / "error.csv"), str(PAPER / "memory_mb.csv"), exclude=["deca-08"])
    return loocv(error, memory, method="ed", n=[3, 5, 8, 10, 15], rank=5)


def large_pipeline(rows=10_000, cols=1_000, rank=10, fraction=0.2, n=20, seed=0):
    """A partly observed meta-matrix completed, embedded, and a new row designed, fitted and frontiered."""
    rng = np.random.default_rng(seed)
    truth = np.clip(rng.uniform(0, 1, (rows, rank)) @ rng.uniform(0, 1, (rank, cols)) / rank, 0, 1)
    memory = np.sort(rng.uniform(50, 1000, cols))
    new_row = np.clip(rng.uniform(0, 1, rank) @ rng.uniform(0, 1, (rank, cols)) / rank, 0, 1)
    mask, _ = sample_mask(truth.shape, scheme="uniform", fraction=fraction, seed=seed)
    steps = {}
    start = time.perf_counter()
    completed = SoftImpute(rank=rank).fit(np.where(mask, truth, np.nan), mask).completed_
    steps["completion"] = time.perf_counter() - start
    t = time.perf_counter()
    Y = svd_embeddings(completed, rank)
    steps["embedding"] = time.perf_counter() - t
    t = time.perf_counter()
    picks = get_design("ed").select(Y, n, seed=seed)
    steps["ED design"] = time.perf_counter() - t
    t = time.perf_counter()
    estimate = fit_row(Y, picks, new_row[picks])
    estimate[picks] = new_row[picks]
    front = pareto_mask(memory, estimate)
    best_for_budget(memory, estimate, float(np.median(memory)))
    steps["fit + frontier"] = time.perf_counter() - t
    steps["total"] = time.perf_counter() - start
    rel = float(np.linalg.norm(completed - truth) / np.linalg.norm(truth))
    return steps, rel, int(front.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    seconds, result = timed(paper_loocv, args.repeat)
    summary = result.summary()
    print("| benchmark | wall s (median) | target | notes |")
    print("|---|---|---|---|")
    print(
        f"| paper 87-fold LOOCV, ED, n=3,5,8,10,15, rank 5 | {seconds:.2f} | < 10 | "
        f"n=5 regret {summary.loc[5, 'regret']:.4f}, HyperDiff {summary.loc[5, 'hyperdiff']:.4f} |"
    )
    runs = [large_pipeline(seed=s) for s in range(args.repeat)]
    for step in runs[0][0]:
        value = statistics.median(r[0][step] for r in runs)
        target = "<= 5" if step == "total" else ""
        note = f"completion rel. error {runs[0][1]:.4f}, {runs[0][2]} frontier points" if step == "total" else ""
        print(f"| 10,000 x 1,000 rank 10, 20% observed: {step} | {value:.2f} | {target} | {note} |")


if __name__ == "__main__":
    main()
