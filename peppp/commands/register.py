"""`peppp register`: re-estimate a dataset's frontier from the store and register it (the
`register_frontier` flow); trains nothing."""

from __future__ import annotations

import argparse
import json

from peppp import _checks as checks

NAME = "register"
HELP = "rebuild a dataset's frontier from the store (meta-matrix and its probe runs) and register a new version"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, type=checks.arg(checks.label, None), help="the dataset searched before, e.g. digits[3,5,8,9]")
    parser.add_argument("--meta-experiment", required=True, type=checks.arg(checks.label, None), help="experiment holding the meta-training and probe runs")
    parser.add_argument("--rank", type=checks.arg(checks.positive_int), default=5, help="embedding rank (default 5)")
    parser.add_argument("--recipe", type=checks.arg(checks.label, None), default=None, help="training recipe (default: the meta-training runs' recipe)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from flows import check_prefect_api, prepare_cli_environment
    from peppp.commands.search import check_existing_experiment, format_frontier

    prepare_cli_environment()
    check_existing_experiment(args.meta_experiment, args.tracking_uri)
    check_prefect_api()

    from flows.register_frontier import register_frontier_flow

    summary = register_frontier_flow(
        dataset=args.dataset,
        meta_experiment=args.meta_experiment,
        rank=args.rank,
        recipe=args.recipe,
        tracking_uri=args.tracking_uri,
    )
    name, version = summary.registered
    if args.json:
        print(json.dumps({
            "dataset": summary.dataset,
            "measured": list(summary.measured),
            "meta_datasets": summary.meta_datasets,
            "registered": {"name": name, "version": version},
            "frontier": summary.frontier.to_dict(),
            "pareto": [p.config for p in summary.frontier.pareto()],
        }, allow_nan=False))
        return 0
    print(
        f"{summary.dataset}: {len(summary.measured)} measured configurations fitted on embeddings from "
        f"{summary.meta_datasets} meta-training datasets; registered {name} version {version}"
    )
    print(format_frontier(summary.frontier))
    return 0
