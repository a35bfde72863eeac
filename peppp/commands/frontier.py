"""`peppp frontier`: fetch a registered frontier and print it, or the best configuration within a budget."""

from __future__ import annotations

import argparse
import json

from peppp import _checks as checks

NAME = "frontier"
HELP = "print a registered (memory, error) frontier and, with --budget, the best configuration within it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--name", help="registered frontier name, e.g. peppp-frontier-fashion-mnist-0-2-4-6")
    which.add_argument("--dataset", type=checks.arg(checks.label, None), help="dataset whose frontier to fetch (the name is derived from it)")
    parser.add_argument("--alias", default="champion", help="registry alias to fetch (default: champion)")
    parser.add_argument("--version", type=checks.arg(checks.positive_int), default=None, help="fetch this version instead of the alias")
    parser.add_argument("--budget", type=checks.arg(checks.megabytes, checks.parse_float), default=None, metavar="MB",
                        help="memory budget in MB: recommend a configuration")
    parser.add_argument("--all", action="store_true", help="list every configuration, not only the frontier")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (frontier and recommendation)")


def format_text(registered, recommendation, *, every: bool) -> str:
    from peppp.commands._tables import frontier_table

    frontier = registered.frontier
    aliases = f" ({', '.join(registered.aliases)})" if registered.aliases else ""
    lines = [
        f"{registered.name} version {registered.version}{aliases}: dataset {frontier.dataset}, "
        f"meta-experiment {frontier.meta_experiment}" + (f", method {frontier.method}" if frontier.method else ""),
        f"{frontier.n_measured} of {len(frontier.points)} configurations measured, "
        f"{len(frontier.pareto())} on the frontier, created {frontier.created_at}",
    ]
    lines.append(frontier_table(frontier, every=every))
    if recommendation is not None:
        lines.append(str(recommendation))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from peppp.registry import frontier_model_name, load_registered_frontier

    name = args.name or frontier_model_name(args.dataset)
    registered = load_registered_frontier(
        name, alias=args.alias, version=args.version, tracking_uri=args.tracking_uri
    )
    # Ask for the recommendation before printing anything, so a bad budget prints only its error.
    recommendation = None if args.budget is None else registered.frontier.best_for(args.budget)
    if args.json:
        payload = {
            "name": registered.name,
            "version": registered.version,
            "aliases": list(registered.aliases),
            "run_id": registered.run_id,
            "frontier": registered.frontier.to_dict(),
            "pareto": [p.config for p in registered.frontier.pareto()],
            "recommendation": None if recommendation is None else recommendation.to_dict(),
        }
        print(json.dumps(payload, allow_nan=False))
    else:
        print(format_text(registered, recommendation, every=args.all))
    return 0
