"""`peppp evaluate`: meta leave-one-dataset-out evaluation of an active-sampling method on CSV matrices."""

from __future__ import annotations

import argparse
import math
import sys

from peppp import _checks as checks
from peppp.errors import PepppError

# The methods' names and the default n, written out so that the parser (built for every command) loads
# no numpy; tests/commands/test_evaluate_cmd.py checks them against peppp.methods.METHODS.
METHOD_NAMES = ("adaptive", "convex-a", "convex-d", "convex-e", "ed", "ed-cost", "qr", "random")
DEFAULT_N = (3, 5, 8, 10, 15)
# peppp.evaluate.AUTO_JOBS_MIN_CELLS, for the help (the same test checks it)
AUTO_JOBS_MIN_CELLS = 500

NAME = "evaluate"
HELP = "leave-one-dataset-out evaluation of a method on an error and a memory matrix (CSV)"


def _int_list(text: str) -> list[int]:
    try:
        return [checks.positive_int(v, "n") for v in checks.int_list(text, "n")]
    except PepppError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def jobs(text: str, name: str) -> int | str:
    """--jobs: "auto" or a positive integer."""
    if text.strip() == "auto":
        return "auto"
    try:
        return checks.positive_int(checks.parse_int(text, name), name)
    except PepppError as exc:
        raise PepppError(f"{exc} (or auto)") from None


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
        "--method", default=None,
        help=f"active-sampling method: {', '.join(METHOD_NAMES)} (default adaptive, peppp's; ed is the paper's ED-MF)",
    )
    parser.add_argument(
        "--compare",
        type=_name_list,
        default=None,
        metavar="M,M,...",
        help="evaluate several methods in the same folds and print one table of regret and HyperDiff per n "
        "(e.g. ed,random,adaptive); replaces --method",
    )
    parser.add_argument("--n", type=_int_list, default=list(DEFAULT_N), metavar="N,N,...",
                        help=f"numbers of measurements per held-out dataset (default {','.join(map(str, DEFAULT_N))})")
    parser.add_argument("--rank", type=checks.arg(checks.positive_int), default=5, help="embedding rank (default 5)")
    # The paper's six settings: --meta-sample full, uniform:0.2 or nonuniform:0.2, each with --cap none or median.
    parser.add_argument("--cap", default="none", help="memory cap: none, median or a number of MB")
    parser.add_argument("--meta-sample", default="full", help="full, uniform:<fraction> or nonuniform:<fraction>")
    parser.add_argument("--seed", type=checks.arg(checks.seed), default=0)
    parser.add_argument("--folds", choices=("datasets", "groups"), default="datasets",
                        help="datasets (default): hold out each dataset, train on all others; groups: also drop "
                        "the held-out dataset's group (its name before the first '-') from the training rows")
    parser.add_argument("--jobs", type=checks.arg(jobs, parse=None), default="auto", metavar="N|auto",
                        help="run the folds in N worker processes at once, the cores shared out among them; the "
                        f"results are the same (default auto: one per core from {AUTO_JOBS_MIN_CELLS} cells, 1 below; "
                        "on 2 cores the default method's whole leave-one-out at 420 x 220 took 261 s in 2 processes, "
                        "430 s in 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write folds.csv (dataset, method, n, regret, hyperdiff, coverage per fold), "
                        "regret.png (mean regret against n per method, with standard errors) and reliability.png "
                        "(stated probability_best against how often the pick was truly best, per n) into DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


CAPTION = (
    "regret: for each memory budget on the true frontier, the true error of the recommended configuration\n"
    "  minus the best true error within that budget, averaged over budgets and held-out datasets;\n"
    "HyperDiff: the paper's |hypervolume(estimated frontier) - hypervolume(true frontier)|;\n"
    "both lower is better; ± one standard error over the held-out datasets (folds).\n"
    "coverage: share of unmeasured configurations whose true error lies within the estimate ± 1 std\n"
    "  (0.68 for honest normal stds); calib.err: expected calibration error of probability_best over\n"
    "  (fold, budget) pairs, 10 bins (0 = the stated probabilities come true as often as stated)."
)


def _figure(value: float, spec: str) -> str:
    """`value` formatted by `spec`, or "-" in its place (right-aligned to the same width) where it is NaN:
    a method that stated no std or probability there (ED-MF with fewer measurements than its rank)."""
    if math.isfinite(value):
        return format(value, spec)
    width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
    return format("-", f">{width}" if width else "")


def _in_processes(jobs: int) -> str:
    return "in 1 process" if jobs == 1 else f"in {jobs} worker processes"


def format_table(result) -> str:
    table = result.summary()
    lines = [
        f"method {result.method}, rank {result.rank}, cap {result.cap or 'none'}, meta-sample {result.meta_sample}, "
        f"folds by {result.fold_scheme}, {int(table['folds'].iloc[0])} folds, {result.seconds:.2f} s"
        f" {_in_processes(result.jobs)}",
        f"{'n':>4} {'regret':>16} {'hyperdiff':>16} {'convergence':>12} {'compl.err':>10} {'mem.spent':>10}"
        f" {'coverage':>9} {'calib.err':>9}",
    ]
    for n, row in table.iterrows():
        lines.append(
            f"{n:>4} {row['regret']:>8.4f} ± {row['regret_se']:.4f} {row['hyperdiff']:>8.4f} ± {row['hyperdiff_se']:.4f}"
            f" {row['convergence']:>12.4f} {row['completion_error']:>10.4f} {row['memory_spent_fraction']:>10.4f}"
            f" {_figure(row['coverage'], '>9.4f')} {_figure(row['calibration_error'], '>9.4f')}"
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
        f"rank {first.rank}, cap {first.cap or 'none'}, meta-sample {first.meta_sample}, seed {first.seed}, "
        f"folds by {first.fold_scheme}, {folds} folds {_in_processes(first.jobs)}",
        f"{'':>6} {'regret':^{block}}   {'hyperdiff':^{block}}",
        f"{'n':>6} " + "".join(f"{name:>{width}}" for name in names) + "   " + "".join(f"{name:>{width}}" for name in names),
    ]
    for n in first.n:
        regret = "".join(f"{t.loc[n, 'regret']:>{width}.4f}" for t in tables)
        hyperdiff = "".join(f"{t.loc[n, 'hyperdiff']:>{width}.4f}" for t in tables)
        lines.append(f"{n:>6} {regret}   {hyperdiff}")
    lines.append(f"{'s/fold':>6} " + "".join(f"{r.seconds / folds:>{width}.3f}" for r in results))
    lines += ["", f"{'':>6} {'coverage':^{block}}   {'calib.err':^{block}}",
              f"{'n':>6} " + "".join(f"{name:>{width}}" for name in names) + "   "
              + "".join(f"{name:>{width}}" for name in names)]
    for n in first.n:
        coverage = "".join(_figure(t.loc[n, "coverage"], f">{width}.4f") for t in tables)
        calibration = "".join(_figure(t.loc[n, "calibration_error"], f">{width}.4f") for t in tables)
        lines.append(f"{n:>6} {coverage}   {calibration}")
    if len(results) > 1:
        lines += ["", f"paired differences against {names[0]} (same folds; negative: better than {names[0]}), "
                      "mean ± standard error", f"{'n':>6} " + "".join(
                          f"{name + ' regret':>26}{name + ' hyperdiff':>26}" for name in names[1:])]
        for n, row in paired_differences(results).groupby("n", sort=False):
            cells = "".join(f"{_pm(r.regret_diff, r.regret_se):>26}{_pm(r.hyperdiff_diff, r.hyperdiff_se):>26}"
                            for r in row.itertuples())
            lines.append(f"{n:>6} {cells}")
    return "\n".join(lines)


def _pm(mean: float, se: float) -> str:
    return f"{mean:+.4f} ± {se:.4f}"


def paired_differences(results):
    """Per n and method (after the first): mean over folds of (method - first) regret and HyperDiff,
    with standard errors of those paired differences."""
    import numpy as np
    import pandas as pd

    base = results[0].to_frame().set_index(["dataset", "n"])
    rows = []
    for r in results[1:]:
        other = r.to_frame().set_index(["dataset", "n"]).loc[base.index]
        for n in results[0].n:
            rows_n = base.index.get_level_values("n") == n
            out = {"n": n, "method": r.method}
            for metric in ("regret", "hyperdiff"):
                diff = (other[metric] - base[metric]).to_numpy()[rows_n]
                out[f"{metric}_diff"] = float(diff.mean())
                out[f"{metric}_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
            rows.append(out)
    return pd.DataFrame(rows)


def write_outputs(results, out_dir) -> list:
    """folds.csv and regret.png into `out_dir` (made if missing)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import pandas as pd

    from peppp._io import atomic_write_text

    frames = []
    for r in results:
        frame = r.to_frame()[["dataset", "n", "regret", "hyperdiff", "coverage"]]
        frame.insert(1, "method", r.method)
        frames.append(frame)
    folds = pd.concat(frames, ignore_index=True)
    csv = atomic_write_text(out_dir / "folds.csv", folds.to_csv(index=False))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        table = r.summary()
        ax.errorbar(table.index, table["regret"], yerr=table["regret_se"], marker="o", capsize=3, label=r.method)
    first = results[0]
    ax.set_xlabel("n (configurations measured on the held-out dataset)")
    ax.set_ylabel("mean budget regret (lower is better)")
    ax.set_title(f"leave-one-dataset-out, rank {first.rank}, cap {first.cap or 'none'}, "
                 f"meta-sample {first.meta_sample}; bars: ±1 standard error", fontsize=9)
    ax.set_xticks(list(first.n))
    ax.grid(True, color="#e6e6e6")
    ax.legend()
    fig.tight_layout()
    png = out_dir / "regret.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return [csv, png, write_reliability_plot(results, out_dir / "reliability.png", plt)]


def reliability_label(method: str, calibration_error: float) -> str:
    """A reliability panel's legend entry: the method and its calibration error ("-" where it stated no
    probabilities, as the table prints it: ED-MF with fewer measurements than its rank)."""
    return f"{method} (ECE {_figure(calibration_error, '.3f')})"


def write_reliability_plot(results, path, plt):
    """One panel per n: per bin of the stated probability_best, the share of (fold, budget) pairs whose
    recommendation was truly best, per method; the diagonal is perfect calibration."""
    first = results[0]
    fig, axes = plt.subplots(1, len(first.n), figsize=(2.8 * len(first.n) + 0.6, 3.4), sharey=True, squeeze=False)
    for ax, n in zip(axes[0], first.n):
        ax.plot([0, 1], [0, 1], color="#999999", linewidth=1, linestyle="--")
        for r in results:
            table = r.reliability(n).dropna()
            ax.plot(table["probability"], table["truly_best"], marker="o", markersize=3,
                    label=reliability_label(r.method, r.summary().loc[n, "calibration_error"]))
        ax.set_title(f"n = {n}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("stated probability_best", fontsize=8)
        ax.grid(True, color="#e6e6e6")
        ax.legend(fontsize=6, loc="upper left")
    axes[0][0].set_ylabel("share truly best within the budget", fontsize=8)
    fig.suptitle(f"reliability of probability_best, folds by {first.fold_scheme}, cap {first.cap or 'none'}, "
                 f"meta-sample {first.meta_sample} (10 equal-width bins)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _writable_dir(text: str):
    """The --out folder, made if missing; one line where it cannot be written (before any work)."""
    from pathlib import Path

    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".peppp-write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PepppError(f"--out {text!r} cannot be written: {exc.strerror or exc}") from None
    return path


def run(args: argparse.Namespace) -> int:
    import json

    from peppp.evaluate import load_matrices, loocv
    from peppp.methods import DEFAULT_METHOD, METHODS

    out_dir = None if args.out is None else _writable_dir(args.out)
    exclude = [name.strip() for name in args.exclude.split(",") if name.strip()]
    error, memory = load_matrices(args.error, args.memory, exclude=exclude)
    if args.rank < 1:
        raise PepppError(f"--rank {args.rank} must be a positive integer")
    methods = args.compare or [args.method or DEFAULT_METHOD]
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise PepppError(f"unknown method {unknown[0]!r}; choose one of {', '.join(sorted(METHODS))}")
    from tqdm import tqdm

    bars = []  # made at the first finished fold: input that fails checks prints its one line alone
    results = []
    try:
        for name in methods:
            def step(done, total, dataset, name=name):
                if not bars:
                    bars.append(tqdm(total=len(error) * len(methods), desc="evaluate", unit="fold", file=sys.stderr,
                                     disable=args.no_progress, dynamic_ncols=True))
                bars[0].set_postfix_str(f"{name}: {dataset}", refresh=False)
                bars[0].update()

            results.append(loocv(error, memory, method=name, n=args.n, rank=args.rank, cap=args.cap,
                                 meta_sample=args.meta_sample, seed=args.seed, folds=args.folds, progress=step,
                                 jobs=args.jobs))
    finally:
        for bar in bars:
            bar.close()
    if out_dir is not None:
        written = write_outputs(results, out_dir)
    if args.compare is None:
        print(results[0].to_json() if args.json else format_table(results[0]) + "\n" + CAPTION)
    elif args.json:
        payload = {"methods": methods, "results": [r.to_json_dict() for r in results]}
        if len(results) > 1:
            payload["paired_differences"] = paired_differences(results).to_dict(orient="records")
        print(json.dumps(payload))
    else:
        print(format_comparison(results) + "\n\n" + CAPTION)
    if out_dir is not None and not args.json:
        print("wrote " + ", ".join(str(p) for p in written))
    return 0
