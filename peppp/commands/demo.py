"""`peppp demo`: the main job on embedded defaults (the `demo` flow), then how to browse what it logged."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from peppp import _checks as checks
from pathlib import Path

NAME = "demo"
HELP = "build a small meta-dataset here, search a held-out task, register its frontier, recommend for a budget"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", type=checks.arg(checks.label, None), default="peppp-demo", help="experiment to build (default: peppp-demo)")
    parser.add_argument("--budget", type=checks.arg(checks.megabytes, checks.parse_float), default=None, metavar="MB",
                        help="memory budget for the recommendation (default: the median configuration memory)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    from flows import check_prefect_api, prepare_cli_environment

    prepare_cli_environment()
    from peppp.commands.meta_train import format_summary
    from peppp.commands.search import format_frontier
    from peppp.tracking import connect

    connect(args.tracking_uri)
    check_prefect_api()

    from flows.demo import demo

    summary = demo(
        experiment=args.experiment, budget_mb=args.budget, tracking_uri=args.tracking_uri,
        progress=not args.no_progress,
    )
    search = summary.search
    name, version = search.registered
    uri = summary.sweep.tracking_uri
    print(format_summary(summary.sweep))
    print(
        f"\nactive search on held-out {search.dataset}: measured {', '.join(search.measured)} "
        f"({search.trained} trained now, {search.reused} from earlier runs)"
    )
    print(f"registered {name} version {version}; its frontier:")
    print(format_frontier(search.frontier))
    if args.budget is None:
        n = len(search.frontier.points)
        print(f"\nbudget: {summary.budget_mb:g} MB, the median memory of {search.dataset}'s {n} configurations "
              "(so about half of them fit); pass --budget MB for your own")
    print(f"recommendation {summary.recommendation}")
    print("  (best of the configurations that fit: the least estimated error among them; 'truly best with "
          "probability' is how sure that pick is, given the estimates' stds)")
    print(f"\nbrowse the runs, the frontier artifacts and the registered model:\n  {mlflow_ui_command(uri)}")
    print("  then open http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (MLflow's model-training "
          "pages; its default GenAI view hides parameters and metrics)")
    print(f"  peppp frontier --name {name} --budget {summary.budget_mb:g} --tracking-uri {shlex.quote(uri)}")
    print(f"\ndone in {time.perf_counter() - start:.0f} s")
    return 0


def mlflow_ui_command(uri: str) -> str:
    """The command that serves this store in MLflow's UI on 127.0.0.1 (the mlflow beside this Python)."""
    beside = Path(sys.executable).parent / "mlflow"
    program = shlex.quote(str(beside)) if beside.exists() else "mlflow"
    return f"{program} ui --backend-store-uri {shlex.quote(uri)} --host 127.0.0.1 --port 5000"
