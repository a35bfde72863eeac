"""`peppp train`: train one cell (dataset, precision configuration) and print its error and memory."""

from __future__ import annotations

import argparse
import json

from peppp import _checks as checks

NAME = "train"
HELP = "train one dataset under one precision configuration; print test error, memory and time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, type=checks.arg(checks.label, None), help="dataset name, e.g. digits, fashion-mnist[0,2,4,6], npz:/path.npz")
    parser.add_argument("--config", required=True, help="precision configuration low/high, e.g. e4m3/e7m9, mxfp4.e2m1/bf16, fp8.e4m3/bf16, or fp32")
    parser.add_argument("--net", default=None, help="network (default: the recipe's)")
    parser.add_argument("--recipe", type=checks.arg(checks.label, None), default="cpu", help="training recipe preset (default: cpu)")
    parser.add_argument("--epochs", type=checks.arg(checks.positive_int), default=None, help="override the recipe's epochs")
    parser.add_argument("--seed", type=checks.arg(checks.seed), default=None, help="override the recipe's seed")
    parser.add_argument("--rounding", default="stochastic", help="stochastic (default) or nearest")
    parser.add_argument("--backend", default="fast", help="quantization backend: fast (default) or qtorch (reference)")
    parser.add_argument("--device", default="auto", help="where to train: auto (default: a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from peppp.training.devices import resolve_device
    from peppp.training.engine import train_cell

    device = resolve_device(args.device)  # a GPU asked for and absent fails here, before any loading
    result = train_cell(
        args.dataset,
        args.config,
        recipe=args.recipe,
        network=args.net,
        epochs=args.epochs,
        seed=args.seed,
        rounding=args.rounding,
        backend=args.backend,
        device=device,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "error": result.error,
                    "memory_mb": result.memory_mb,
                    "status": result.status,
                    "seconds": round(result.train_seconds, 3),
                    "final_loss": result.final_loss,
                    "dataset": result.dataset,
                    "config": result.config,
                    "recipe": result.recipe,
                    "network": result.network,
                    "seed": result.seed,
                }
            )
        )
    else:
        note = f" ({result.message})" if result.message else ""
        print(
            f"{result.dataset} {result.config} [{result.recipe}, {result.network}]: test error {result.error:.4f}, "
            f"memory {result.memory_mb:.3f} MB, {result.train_seconds:.1f} s, final loss {result.final_loss:.4f}, "
            f"status {result.status}{note}"
        )
    return 0
