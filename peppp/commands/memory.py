"""`peppp memory`: the analytic training memory (MB) of one precision configuration for a network."""

from __future__ import annotations

import argparse
import json

NAME = "memory"
HELP = "analytic training memory (MB) of a precision configuration for a network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="precision configuration LOW/HIGH, e.g. e4m3/e7m9, mxfp4.e2m1/bf16, or fp32")
    parser.add_argument("--net", default="resnet18", help="network name (default resnet18)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.add_argument("--image", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--channels", type=int, default=3, help="input channels (default 3)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32, the paper's)")
    parser.add_argument("--width", type=int, default=None, help="stem width of the network (default: the network's own)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from peppp.formats import parse_config
    from peppp.memory import memory_mb
    from peppp.training.networks import network_counts

    config = parse_config(args.config)
    shape = (args.channels, args.image, args.image)
    counts = network_counts(args.net, classes=args.classes, input_shape=shape, batch=args.batch, width=args.width)
    mb = memory_mb(config, params=counts.params, activations=counts.activations, batch=args.batch, input_shape=shape, classes=args.classes)
    if args.json:
        print(
            json.dumps(
                {
                    "config": str(config),
                    "network": args.net,
                    "classes": args.classes,
                    "input_shape": list(shape),
                    "batch": args.batch,
                    "memory_mb": mb,
                    "params": counts.params,
                    "activations": counts.activations,
                }
            )
        )
    else:
        print(f"{mb:.5f} MB  ({config} on {args.net}, {args.classes} classes, {'x'.join(map(str, shape))} input, batch {args.batch})")
    return 0
