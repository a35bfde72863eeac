"""The memory/error trade-off of a small precision grid, trained for real on an offline dataset.

Run: .venv/bin/python benchmarks/bench_tradeoff.py [--dataset fashion-mnist@14px] [--recipe cpu] [--seeds 0,1]
Prints a markdown table (config, bits, memory MB, mean test error over seeds, train seconds), cheapest first.
"""

from __future__ import annotations

import argparse
import statistics

from peppp.formats import parse_config
from peppp.training.engine import train_cell

GRID = ["e3m1/e6m7", "e3m3/e6m9", "e4m1/e7m7", "e4m3/e7m9", "e5m1/e8m9", "e5m3/e8m11", "fp32"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist@14px")
    parser.add_argument("--recipe", default="cpu")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--backend", default="fast")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"dataset {args.dataset}, recipe {args.recipe}, backend {args.backend}, stochastic rounding, seeds {seeds}")
    print("| config | low/high bits | memory MB | test error (mean over seeds) | per seed | train s |")
    print("|---|---|---|---|---|---|")
    for config in GRID:
        results = [train_cell(args.dataset, config, recipe=args.recipe, seed=s, backend=args.backend) for s in seeds]
        cfg = parse_config(config)
        errors = [r.error for r in results]
        statuses = {r.status for r in results}
        flag = "" if statuses == {"ok"} else f" ({'/'.join(sorted(statuses))})"
        print(
            f"| {config} | {cfg.low_bits}/{cfg.high_bits} | {results[0].memory_mb:.3f} | {statistics.mean(errors):.4f}{flag} | "
            f"{', '.join(f'{e:.4f}' for e in errors)} | {statistics.mean(r.train_seconds for r in results):.1f} |"
        )


if __name__ == "__main__":
    main()
