"""Hardware float and MX formats on the CPU: one training step against the same step in e4m3/e7m9.

The cpu recipe's network (convnet4, width 8, 8x8 digits-sized input, batch 64), the paper's placement
(`make_quantizer_factory` for activations, `make_optimizer`), stochastic rounding, 1 torch thread;
the best of 3 rounds of `--steps` steps after 5 warm-up steps, ratios to e4m3/e7m9 (peppp's C++
kernels). Where the pure-torch kernels of the hardware formats stand on a training step.

    .venv/bin/python benchmarks/bench_hardware_formats.py [--steps 30] [--configs fp8.e4m3/bf16,...]
"""

from __future__ import annotations

import argparse
import time

import torch

from peppp.formats import parse_config
from peppp.training.networks import build_network
from peppp.training.quantizers import make_optimizer, make_quantizer_factory

BASELINE = "e4m3/e7m9"
CONFIGS = "fp32,fp8.e4m3/bf16,fp16/fp16,mxfp4.e2m1/bf16,mxint8/fp16,mxfp8.e4m3/fp16"


def step_seconds(config: str, *, steps: int) -> float:
    torch.manual_seed(0)
    cfg = parse_config(config)
    quant = {} if cfg.is_fp32 else {"act_quant": make_quantizer_factory(cfg.low), "io_quant": make_quantizer_factory(cfg.high)}
    net = build_network("convnet4", num_classes=10, in_channels=1, image_size=8, width=8, **quant)
    opt = make_optimizer(net.parameters(), config=cfg, lr=0.05)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(5):
        step()
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - start) / steps)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--configs", default=CONFIGS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = step_seconds(BASELINE, steps=args.steps)
    print(f"| configuration | ms / step | ratio to {BASELINE} |\n|---|---|---|\n| {BASELINE} | {base * 1e3:.2f} | 1.00 |")
    for config in args.configs.split(","):
        t = step_seconds(config, steps=args.steps)
        print(f"| {config} | {t * 1e3:.2f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
