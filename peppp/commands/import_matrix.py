"""`peppp import-matrix`: an external meta-dataset (error and memory CSVs) into the store as runs."""

from __future__ import annotations

import argparse

from peppp import _checks as checks

NAME = "import-matrix"
HELP = "import an error and a memory matrix (CSV, rows datasets, columns LOW/HIGH configs) as MLflow runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--error", required=True, metavar="CSV", help="error matrix: first column dataset, then configs"
    )
    parser.add_argument("--memory", required=True, metavar="CSV", help="memory matrix (MB), same labels")
    parser.add_argument(
        "--experiment", required=True, type=checks.arg(checks.label, None), metavar="NAME", help="MLflow experiment (created when missing)"
    )
    parser.add_argument("--recipe", type=checks.arg(checks.label, None), default="imported", help="training recipe the cells came from (default: imported)")
    parser.add_argument("--network", type=checks.arg(checks.label, None), default="unknown", help="network the cells trained (default: unknown)")
    parser.add_argument("--role", default="meta", choices=("meta", "probe"), help="role of the cells (default: meta)")
    parser.add_argument(
        "--tracking-uri", default=None, metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)"
    )


def run(args: argparse.Namespace) -> int:
    from peppp.tracking import import_matrix, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    n_runs = import_matrix(
        args.error,
        args.memory,
        experiment=args.experiment,
        recipe=args.recipe,
        network=args.network,
        role=args.role,
        tracking_uri=uri,
    )
    print(f"imported {n_runs} cells into experiment {args.experiment!r} at {uri}")
    return 0
