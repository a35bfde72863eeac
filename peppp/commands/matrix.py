"""`peppp matrix`: rebuild an experiment's error and memory matrices from its runs and write them as CSV."""

from __future__ import annotations

import argparse

from peppp import _checks as checks

NAME = "matrix"
HELP = "rebuild the error and memory matrices of an experiment from its runs; write error.csv and memory_mb.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiment", required=True, type=checks.arg(checks.label, None), metavar="NAME", help="MLflow experiment holding the cell runs"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for error.csv and memory_mb.csv")
    parser.add_argument(
        "--role", default="meta", choices=("meta", "probe", "all"), help="which cell runs count (default: meta)"
    )
    parser.add_argument("--recipe", type=checks.arg(checks.label, None), default=None, help="the recipe to keep when the experiment mixes several")
    parser.add_argument(
        "--tracking-uri", default=None, metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)"
    )


def run(args: argparse.Namespace) -> int:
    from peppp.tracking import export_matrix, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri, create_dir=False)
    exported = export_matrix(
        args.experiment,
        args.out,
        role=None if args.role == "all" else args.role,
        recipe=args.recipe,
        tracking_uri=uri,
    )
    print(
        f"{exported.n_datasets} datasets x {exported.n_configs} configs ({exported.n_measured} cells measured) "
        f"from experiment {args.experiment!r}"
    )
    print(f"error:  {exported.error_csv}")
    print(f"memory: {exported.memory_csv}")
    return 0
