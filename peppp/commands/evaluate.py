"""`peppp evaluate`: meta leave-one-dataset-out evaluation of an active-sampling method on CSV matrices."""

from __future__ import annotations

import argparse

from peppp.errors import PepppError

NAME = "evaluate"
HELP = "leave-one-dataset-out evaluation of a method on an error and a memory matrix (CSV)"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every n must be a positive integer")
    return values


def _name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of method names")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a method twice")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--error", required=True, metavar="CSV", help="error matrix: rows datasets, columns configs")
    parser.add_argument("--memory", required=True, metavar="CSV", help="memory matrix (MB), same labels")
    parser.add_argument("--exclude", default="", metavar="NAMES", help="comma-separated datasets to drop (the paper drops deca-08)")
    # Resolved in `run`: naming DEFAULT_METHOD here would import peppp.methods (numpy, scipy) for every command.
    parser.add_argument(
        "--method", default=None, help="active-sampling method, such as ed, the paper's ED-MF (default: peppp.methods.DEFAULT_METHOD)"
    )
    parser.add_argument(
        "--compare",
        type=_name_list,
        default=None,
        metavar="M,M,...",
        help="evaluate several methods in the same folds and print one table of regret and HyperDiff per n "
        "(e.g. ed,random,adaptive); replaces --method",
    )
    parser.add_argument("--n", type=_int_list, default=[3, 5, 8, 10, 15], metavar="N,N,...", help="numbers of measurements")
    parser.add_argument("--rank", type=int, default=5, help="embedding rank (default 5)")
    # The paper's six settings: --meta-sample full, uniform:0.2 or nonuniform:0.2, each with --cap none or median.
    parser.add_argument("--cap", default="none", help="memory cap: none, median or a number of MB")
    parser.add_argument("--meta-sample", default="full", help="full, uniform:<fraction> or nonuniform:<fraction>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def format_table(result) -> str:
    table = result.summary()
    lines = [
        f"method {result.method}, rank {result.rank}, cap {result.cap or 'none'}, meta-sample {result.meta_sample}, "
        f"{int(table['folds'].iloc[0])} folds, {result.seconds:.2f} s",
        f"{'n':>4} {'regret':>16} {'hyperdiff':>16} {'convergence':>12} {'compl.err':>10} {'mem.spent':>10}",
    ]
    for n, row in table.iterrows():
        lines.append(
            f"{n:>4} {row['regret']:>8.4f} ± {row['regret_se']:.4f} {row['hyperdiff']:>8.4f} ± {row['hyperdiff_se']:.4f}"
            f" {row['convergence']:>12.4f} {row['completion_error']:>10.4f} {row['memory_spent_fraction']:>10.4f}"
        )
    return "\n".join(lines)


def format_comparison(results) -> str:
    """One table: for every n, each method's mean regret and HyperDiff side by side, then seconds per fold."""
    first = results[0]
    tables = [r.summary() for r in results]
    names = [r.method for r in results]
    width = max(9, *(len(name) + 1 for name in names))
    folds = int(tables[0]["folds"].iloc[0])
    block = width * len(names)
    lines = [
        f"rank {first.rank}, cap {first.cap or 'none'}, meta-sample {first.meta_sample}, seed {first.seed}, {folds} folds",
        f"{'':>6} {'regret':^{block}}   {'hyperdiff':^{block}}",
        f"{'n':>6} " + "".join(f"{name:>{width}}" for name in names) + "   " + "".join(f"{name:>{width}}" for name in names),
    ]
    for n in first.n:
        regret = "".join(f"{t.loc[n, 'regret']:>{width}.4f}" for t in tables)
        hyperdiff = "".join(f"{t.loc[n, 'hyperdiff']:>{width}.4f}" for t in tables)
        lines.append(f"{n:>6} {regret}   {hyperdiff}")
    lines.append(f"{'s/fold':>6} " + "".join(f"{r.seconds / folds:>{width}.3f}" for r in results))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    from peppp.evaluate import load_matrices, loocv
    from peppp.methods import DEFAULT_METHOD, METHODS

    exclude = [name.strip() for name in args.exclude.split(",") if name.strip()]
    error, memory = load_matrices(args.error, args.memory, exclude=exclude)
    if args.rank < 1:
        raise PepppError(f"--rank {args.rank} must be a positive integer")
    methods = args.compare or [args.method or DEFAULT_METHOD]
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise PepppError(f"unknown method {unknown[0]!r}; choose one of {', '.join(sorted(METHODS))}")
    results = [
        loocv(error, memory, method=name, n=args.n, rank=args.rank, cap=args.cap, meta_sample=args.meta_sample, seed=args.seed)
        for name in methods
    ]
    if args.compare is None:
        print(results[0].to_json() if args.json else format_table(results[0]))
    elif args.json:
        print(json.dumps({"methods": methods, "results": [r.to_json_dict() for r in results]}))
    else:
        print(format_comparison(results))
    return 0
