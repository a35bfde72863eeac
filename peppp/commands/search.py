"""`peppp search`: estimate a new dataset's frontier from a few trainings (the `active_search` flow)."""

from __future__ import annotations

import argparse
import json

from peppp import _checks as checks

NAME = "search"
HELP = "active search on a new dataset: pick, train and log a few configurations, estimate the frontier"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, type=checks.arg(checks.label, None), help="the new dataset, e.g. digits[3,5,8,9]")
    parser.add_argument("--meta-experiment", required=True, type=checks.arg(checks.label, None), help="experiment holding the meta-training runs")
    parser.add_argument("--n", type=checks.arg(checks.positive_int), default=5, help="configurations to measure (default 5)")
    parser.add_argument("--method", default=None, help="active-sampling method: adaptive (peppp's), ed (the paper's ED-MF), qr, random, convex-d/a/e, ed-cost (default: peppp.methods.DEFAULT_METHOD)")
    parser.add_argument("--rank", type=checks.arg(checks.positive_int), default=5, help="embedding rank (default 5)")
    parser.add_argument("--cap", type=checks.arg(checks.megabytes, checks.parse_float), default=None, metavar="MB", help="train only configurations within this memory")
    parser.add_argument("--budget", type=checks.arg(checks.megabytes, checks.parse_float), default=None, metavar="MB",
                        help="total memory of all measurements (cost-aware design stops there)")
    parser.add_argument("--batch", type=checks.arg(checks.positive_int), default=1, help="configurations per round, trained at once (default 1)")
    parser.add_argument("--recipe", type=checks.arg(checks.label, None), default=None, help="training recipe (default: the meta-training runs' recipe)")
    parser.add_argument("--seed", type=checks.arg(checks.seed), default=0)
    parser.add_argument("--register", action="store_true", help="register the estimated frontier in the model registry")
    parser.add_argument("--device", default="auto", help="where to train: auto (default: a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def check_existing_experiment(name: str, tracking_uri: str | None) -> None:
    """One line and exit 2 for a missing store or experiment, before Prefect starts."""
    from peppp.tracking import connect, get_or_create_experiment

    client = connect(tracking_uri, create=False)
    get_or_create_experiment(name, create=False, client=client)


def format_frontier(frontier, *, every: bool = False) -> str:
    """The frontier as a table (see `peppp.commands._tables.frontier_table`)."""
    from peppp.commands._tables import frontier_table

    return frontier_table(frontier, every=every)


def run(args: argparse.Namespace) -> int:
    from flows import check_prefect_api, prepare_cli_environment

    from peppp.training.devices import resolve_device

    resolve_device(args.device)  # a GPU asked for and absent fails here, before any work
    prepare_cli_environment()
    check_existing_experiment(args.meta_experiment, args.tracking_uri)
    check_prefect_api()

    from flows.active_search import active_search
    from peppp.methods import DEFAULT_METHOD

    summary = active_search(
        dataset=args.dataset,
        meta_experiment=args.meta_experiment,
        n=args.n,
        method=args.method or DEFAULT_METHOD,
        rank=args.rank,
        cap_mb=args.cap,
        budget_mb=args.budget,
        batch=args.batch,
        recipe=args.recipe,
        seed=args.seed,
        register_frontier=args.register,
        tracking_uri=args.tracking_uri,
        progress=not args.no_progress,
        device=args.device,
    )
    frontier = summary.frontier
    if args.json:
        print(json.dumps({
            "dataset": summary.dataset,
            "measured": list(summary.measured),
            "trained": summary.trained,
            "reused": summary.reused,
            "failed": list(summary.failed),
            "spent_mb": summary.spent_mb,
            "registered": None if summary.registered is None else {
                "name": summary.registered[0], "version": summary.registered[1],
            },
            "frontier": frontier.to_dict(),
            "pareto": [p.config for p in frontier.pareto()],
        }, allow_nan=False))
        return 0
    print(
        f"{summary.dataset}: {len(summary.measured)} configurations measured ({summary.trained} trained now, "
        f"{summary.reused} from earlier runs, {len(summary.failed)} failed), {summary.spent_mb:.2f} MB of measurements"
    )
    print(format_frontier(frontier))
    if summary.registered is not None:
        name, version = summary.registered
        print(f"registered {name} version {version} (peppp frontier --name {name})")
    return 0
