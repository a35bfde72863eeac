"""`peppp report`: the chip designer's report on an experiment: which number formats (and families) are
on its datasets' frontiers and at which memory budgets each is the best pick; printed, and logged to
MLflow as a `report` run with CSV and PNG artifacts."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "which formats are on an experiment's frontiers and the best pick at which budgets; logged to MLflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, metavar="NAME", help="MLflow experiment of the meta cell runs")
    parser.add_argument(
        "--budgets", default=None, metavar="MB,MB,...",
        help="memory budgets in MB (default: the 10/30/50/70/90%% quantiles of the measured memory)",
    )
    parser.add_argument(
        "--frontier", action="append", default=[], metavar="MODEL",
        help="also a registered frontier (its model name, e.g. peppp-frontier-digits); repeatable",
    )
    parser.add_argument("--frontiers-only", action="store_true", help="leave the experiment's measured cells out")
    parser.add_argument("--recipe", default=None, help="the recipe to keep when the experiment mixes several")
    parser.add_argument("--no-log", action="store_true", help="print only; log no report run")
    parser.add_argument(
        "--tracking-uri", default=None, metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)"
    )


def parse_budgets(text: str | None) -> list[float] | None:
    """`100,150.5` -> [100.0, 150.5]; None stays None (the default budgets)."""
    from peppp.errors import PepppError

    if text is None:
        return None
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise PepppError(f"--budgets {text!r} has an empty entry; write MB values separated by commas, e.g. 50,100")
    values = []
    for item in items:
        try:
            values.append(float(item))
        except ValueError:
            raise PepppError(f"--budgets: {item!r} is not a number of MB") from None
    return values


def run(args: argparse.Namespace) -> int:
    from peppp.errors import PepppError
    from peppp.tracking import experiment_report, log_format_report, resolve_tracking_uri, run_link

    if args.frontiers_only and not args.frontier:
        raise PepppError("--frontiers-only needs at least one --frontier MODEL")
    budgets = parse_budgets(args.budgets)
    uri = resolve_tracking_uri(args.tracking_uri, create_dir=False)
    report = experiment_report(args.experiment, budgets_mb=budgets, frontiers=args.frontier,
                               measured=not args.frontiers_only, recipe=args.recipe, tracking_uri=uri)
    print(f"formats on the frontiers of {len(report.datasets)} datasets of {args.experiment!r} "
          f"(best@B: on how many datasets the format is in the least-error configuration within B MB)")
    print(report.table())
    if not args.no_log:
        run_id = log_format_report(args.experiment, report, tracking_uri=uri)
        print(f"report run: {run_link(args.experiment, run_id, tracking_uri=uri)}")
    return 0
