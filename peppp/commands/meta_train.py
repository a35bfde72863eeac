"""`peppp meta-train`: train datasets x configurations into an experiment (the `meta_train` flow)."""

from __future__ import annotations

import argparse
import json

from peppp import _checks as checks
from peppp.errors import PepppError

NAME = "meta-train"
HELP = "train every cell of datasets x configurations not yet in the store, one run per cell (resumable)"


def split_names(text: str) -> list[str]:
    """Comma-separated names; commas inside [...] belong to a name (`digits[0,2],mnist-5k`)."""
    names, depth, current = [], 0, []
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            names.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    names.append("".join(current).strip())
    return [n for n in names if n]


def _int_list(text: str) -> list[int]:
    try:
        return checks.seeds(checks.int_list(text, "seed"), "seed")
    except PepppError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, type=checks.arg(checks.label, None), help="MLflow experiment of the meta-dataset (created if missing)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--datasets", metavar="NAMES", help="comma-separated dataset names, e.g. digits,digits[0-4]")
    which.add_argument("--tasks", type=checks.arg(checks.positive_int), metavar="N", help="the first N offline tasks of the built-in list")
    parser.add_argument(
        "--configs", required=True, metavar="GRID",
        help="configurations: a list (e3m1/e6m7,e5m3/e8m11,fp32), a product 'e3m1,e4m3 x e6m7,e8m11', 'paper' or 'modern' (FP8 and MX low x bf16, fp16 high)",
    )
    parser.add_argument("--recipe", type=checks.arg(checks.label, None), default="cpu", help="training recipe preset: paper, cpu (default) or tiny")
    parser.add_argument("--seeds", type=_int_list, default=[0], metavar="S,S,...", help="seeds (default 0)")
    parser.add_argument("--device", default="auto", help="where to train: auto (default: a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N")
    at_once = parser.add_mutually_exclusive_group()
    at_once.add_argument("--workers", type=checks.arg(checks.positive_int), default=None, help="cells trained at once on local threads (default 2)")
    at_once.add_argument(
        "--cells-per-gpu", type=checks.arg(checks.positive_int), default=None, metavar="K",
        help="train K cells at once on each GPU (threads with a CUDA stream each; with --dask-local N: K threads per worker)",
    )
    dask = parser.add_mutually_exclusive_group()
    dask.add_argument(
        "--dask-address", default=None, metavar="ADDRESS",
        help="train on a running Dask scheduler, e.g. tcp://127.0.0.1:8786 (default: $PEPPP_DASK_ADDRESS, else threads)",
    )
    dask.add_argument(
        "--dask-local", type=checks.arg(checks.positive_int), default=None, metavar="N",
        help="train on a local Dask cluster of N one-thread worker processes on 127.0.0.1",
    )
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def resolve_datasets(args: argparse.Namespace) -> list[str]:
    from peppp.training.datasets import list_tasks

    if args.datasets is not None:
        names = [checks.label(n, "--datasets entry") for n in split_names(args.datasets)]
        if not names:
            raise PepppError(f"--datasets {args.datasets!r} names no dataset; give comma-separated names")
        return names
    tasks = list_tasks(installed_only=True)
    if not 1 <= args.tasks <= len(tasks):
        raise PepppError(f"--tasks {args.tasks} must be between 1 and {len(tasks)} (the offline tasks available here)")
    return tasks[: args.tasks]


DEFAULT_WORKERS = 2


def cells_per_gpu_threads(k: int, device, *, dask_address: str | None, dask_local: int | None) -> tuple[int, int]:
    """(threads of this process, threads per local Dask worker) for K cells at once per GPU."""
    import torch

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise PepppError(f"--cells-per-gpu {k!r} must be a positive integer")
    if device.type != "cuda":
        raise PepppError(f"--cells-per-gpu {k} trains on GPUs, but the device is {device} (torch sees no GPU here)")
    if dask_address:
        raise PepppError("--cells-per-gpu does not apply to a remote Dask scheduler: start each GPU's workers "
                         "with --nthreads K (see README, Training on GPUs)")
    gpus = 1 if device.index is not None else torch.cuda.device_count()
    if dask_local is not None:
        return k, k
    return k * gpus, 1


def run(args: argparse.Namespace) -> int:
    from flows import check_prefect_api, prepare_cli_environment

    from peppp.training.devices import resolve_device

    if args.workers is not None and args.workers < 1:
        raise PepppError(f"--workers {args.workers} must be a positive integer")
    if args.dask_local is not None and args.dask_local < 1:
        raise PepppError(f"--dask-local {args.dask_local} must be a positive number of worker processes")
    device = resolve_device(args.device)  # a GPU asked for and absent fails here, before any work
    threads, threads_per_worker = args.workers or DEFAULT_WORKERS, 1
    if args.cells_per_gpu is not None:
        threads, threads_per_worker = cells_per_gpu_threads(args.cells_per_gpu, device, dask_address=args.dask_address,
                                                            dask_local=args.dask_local)
    prepare_cli_environment()
    import os

    from flows._runner import DASK_ADDRESS_ENV, check_dask_scheduler, task_runner

    address = args.dask_address or os.environ.get(DASK_ADDRESS_ENV, "").strip()
    if address and args.dask_local is None:
        check_dask_scheduler(address)  # a dead scheduler is one line now, not pages after Dask's own wait

    runner = task_runner(dask_address=args.dask_address, local_workers=args.dask_local, threads=threads,
                         threads_per_worker=threads_per_worker)
    from peppp.formats import parse_grid
    from peppp.tracking import connect

    datasets = resolve_datasets(args)
    configs = [str(c) for c in parse_grid(args.configs)]
    connect(args.tracking_uri)  # an unreachable store fails here, in one line, before any training
    check_prefect_api()

    from flows.meta_train import meta_train

    flow = meta_train.with_options(task_runner=runner)
    summary = flow(
        experiment=args.experiment,
        datasets=datasets,
        configs=configs,
        recipe=args.recipe,
        seeds=args.seeds,
        tracking_uri=args.tracking_uri,
        progress=not args.no_progress,
        device=args.device,
    )
    if args.json:
        print(json.dumps({
            "experiment": summary.experiment,
            "tracking_uri": summary.tracking_uri,
            "planned": summary.planned,
            "skipped": summary.skipped,
            "trained": summary.trained,
            "failed": list(summary.failed),
            "diverged": list(summary.diverged),
            "parent_run_id": summary.parent_run_id,
        }))
    else:
        print(format_summary(summary))
    return 0


def format_summary(summary) -> str:
    text = (
        f"{summary.experiment}: {summary.planned} cells planned, {summary.skipped} already in the store, "
        f"{summary.trained} trained ({len(summary.failed)} failed, {len(summary.diverged)} diverged)"
    )
    if summary.failed:
        text += "\nfailed: " + ", ".join(summary.failed)
    if summary.diverged:
        text += "\ndiverged: " + ", ".join(summary.diverged)
    return text + f"\nstore: {summary.tracking_uri}"
