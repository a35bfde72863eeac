"""Quantizer speed: peppp's fast kernels against qtorch, alone and inside a training step.

(a) one quantizer call on 1e7 float32 values (e5m2, nearest and stochastic): qtorch, fast, pure torch
    and `x.clone()`; (b) one SGD step of a network with quantizers after every conv and BN+ReLU, on
    input and logits, and qtorch's OptimLP (the paper's placement): fp32, qtorch-stochastic,
    fast-stochastic and fast-nearest, interleaved, medians of wall and process CPU time, ratios to
    fp32. Both at 1 torch thread and at the default thread count. The goal: fast-stochastic within
    1.5x of fp32 on the CPU recipe's network.

    .venv/bin/python benchmarks/bench_quant.py [--repeat 15] [--networks convnet4:8:64:28 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "peppp" / "torch_extensions"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

GOAL_RATIO = 1.5
STEP_VARIANTS = ("fp32", "qtorch-stochastic", "fast-stochastic", "fast-nearest")


def _time_call(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_kernels(*, numel: int, repeat: int) -> list[tuple[str, float, float]]:
    """Median wall and CPU milliseconds of one call per kernel, calls interleaved."""
    import qtorch.quant as qq

    from peppp.training.quant import torch_kernels
    from peppp.training.quant._extension import load_extension

    ext = load_extension()
    x = torch.randn(numel, generator=torch.Generator().manual_seed(0))
    kernels = {
        "x.clone()": lambda: x.clone(),
        "qtorch nearest": lambda: qq.float_quantize(x, 5, 2, rounding="nearest"),
        "qtorch stochastic": lambda: qq.float_quantize(x, 5, 2, rounding="stochastic"),
        "torch nearest": lambda: torch_kernels.float_quantize_nearest(x, 5, 2),
        "torch stochastic": lambda: torch_kernels.float_quantize_stochastic(x, 5, 2),
    }
    if ext is not None:
        kernels["fast nearest"] = lambda: ext.float_quantize_nearest(x, 5, 2)
        kernels["fast stochastic"] = lambda: ext.float_quantize_stochastic(x, 5, 2)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in kernels}
    for fn in kernels.values():
        fn()  # warm-up: first-touch allocation, lazy builds
    for _ in range(repeat):
        for name, fn in kernels.items():
            times[name].append(_time_call(fn))
    return [
        (name, 1e3 * statistics.median(w for w, _ in t), 1e3 * statistics.median(c for _, c in t))
        for name, t in times.items()
    ]


def _build(variant: str, *, network: str, width: int | None, in_channels: int, image_size: int, config: str,
           device: str = "cpu", lr: float = 0.01):
    """(model, optimizer, loss scale) of a step variant: fp32, or BACKEND-ROUNDING (fast-stochastic, ...)."""
    from peppp.training.networks import build_network
    from peppp.training.quantizers import make_optimizer, make_quantizer_factory
    from peppp.formats import parse_config

    cfg = parse_config("fp32" if variant == "fp32" else config)
    backend, _, rounding = variant.partition("-")
    backend = "fast" if variant == "fp32" else backend
    rounding = rounding or "stochastic"
    quant = {}
    if not cfg.is_fp32:
        quant = {
            "act_quant": make_quantizer_factory(cfg.low, rounding=rounding, backend=backend),
            "io_quant": make_quantizer_factory(cfg.high, rounding=rounding, backend=backend),
        }
    torch.manual_seed(0)
    model = build_network(network, num_classes=10, in_channels=in_channels, image_size=image_size, width=width, **quant)
    model = model.to(device)  # before the optimizer: its flat buffers live where the parameters do
    loss_scale = 1.0 if cfg.is_fp32 else 1000.0
    opt = make_optimizer(
        model.parameters(), config=cfg, lr=lr, momentum=0.9, weight_decay=5e-4,
        rounding=rounding, backend=backend, loss_scale=loss_scale,
    )
    return model, opt, loss_scale


def bench_steps(
    *, network: str, width: int, batch: int, image_size: int, in_channels: int, config: str, repeat: int, warmup: int
) -> dict[str, list[tuple[float, float]]]:
    """Per-variant (wall, cpu) seconds of single SGD steps, variants interleaved in rotating order."""
    g = torch.Generator().manual_seed(1)
    xb = torch.randn(batch, in_channels, image_size, image_size, generator=g)
    yb = torch.randint(0, 10, (batch,), generator=g)
    criterion = nn.CrossEntropyLoss()
    setups = {
        v: _build(v, network=network, width=width, in_channels=in_channels, image_size=image_size, config=config)
        for v in STEP_VARIANTS
    }

    def step(v: str) -> None:
        model, opt, loss_scale = setups[v]
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(xb), yb)
        (loss * loss_scale).backward()
        opt.step()

    for v in STEP_VARIANTS:
        for _ in range(warmup):
            step(v)
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in STEP_VARIANTS}
    order = list(STEP_VARIANTS)
    for r in range(repeat):
        rotated = order[r % len(order):] + order[: r % len(order)]
        for v in rotated:
            times[v].append(_time_call(lambda: step(v)))
    return times


def _paired_ratio(times: dict, variant: str, index: int) -> float:
    """Median over repetitions of (variant time / fp32 time) in the same repetition."""
    return statistics.median(t[index] / f[index] for t, f in zip(times[variant], times["fp32"]))


def _parse_network(spec: str) -> dict:
    parts = spec.split(":")
    if len(parts) != 4:
        raise SystemExit(f"network spec {spec!r} is not NAME:WIDTH:BATCH:IMAGE_SIZE (e.g. convnet4:8:64:28)")
    return {"network": parts[0], "width": int(parts[1]), "batch": int(parts[2]), "image_size": int(parts[3])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed steps per variant and thread count")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--kernel-numel", type=int, default=10_000_000)
    parser.add_argument("--kernel-repeat", type=int, default=7)
    parser.add_argument("--config", default="e5m2/e8m7", help="precision configuration LOW/HIGH of the quantized steps")
    parser.add_argument(
        "--networks",
        nargs="+",
        default=["convnet4:8:64:28", "convnet4:8:64:8", "convnet4:16:128:28", "resnet8:16:128:28"],
        help="NAME:WIDTH:BATCH:IMAGE_SIZE, 1 input channel; the first is the CPU recipe's network",
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--skip-kernels", action="store_true")
    args = parser.parse_args(argv)

    from peppp.training.quant._extension import load_extension

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, fast kernels compiled: {load_extension() is not None}")
    if hasattr(os, "getloadavg"):
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
    threads = list(dict.fromkeys(args.threads))

    if not args.skip_kernels:
        for n in threads:
            torch.set_num_threads(n)
            print(f"\n(a) one call on {args.kernel_numel:.0e} float32 values, e5m2, {n} thread(s), median of {args.kernel_repeat}\n")
            print("| kernel | wall ms | CPU ms |\n|---|---|---|")
            for name, wall_ms, cpu_ms in bench_kernels(numel=args.kernel_numel, repeat=args.kernel_repeat):
                print(f"| {name} | {wall_ms:.1f} | {cpu_ms:.1f} |")

    worst = 0.0
    for spec in args.networks:
        net = _parse_network(spec)
        for n in threads:
            torch.set_num_threads(n)
            times = bench_steps(**net, in_channels=1, config=args.config, repeat=args.repeat, warmup=args.warmup)
            fp32_wall = statistics.median(w for w, _ in times["fp32"])
            fp32_cpu = statistics.median(c for _, c in times["fp32"])
            print(
                f"\n(b) {net['network']} width {net['width']}, batch {net['batch']}, 1x{net['image_size']}x{net['image_size']},"
                f" config {args.config}, {n} thread(s), median of {args.repeat} interleaved steps\n"
            )
            print("| variant | wall ms/step | CPU ms/step | wall ratio | CPU ratio | paired wall ratio | paired CPU ratio |")
            print("|---|---|---|---|---|---|---|")
            for v in STEP_VARIANTS:
                wall = statistics.median(w for w, _ in times[v])
                cpu = statistics.median(c for _, c in times[v])
                pw, pc = _paired_ratio(times, v, 0), _paired_ratio(times, v, 1)
                print(f"| {v} | {1e3 * wall:.1f} | {1e3 * cpu:.1f} | {wall / fp32_wall:.2f}x | {cpu / fp32_cpu:.2f}x | {pw:.2f}x | {pc:.2f}x |")
            if spec == args.networks[0]:
                worst = max(worst, _paired_ratio(times, "fast-stochastic", 1 if n == 1 else 0))
    verdict = "met" if worst <= GOAL_RATIO else "NOT met"
    print(f"\ngoal: fast-stochastic step <= {GOAL_RATIO}x fp32 on {args.networks[0]} (CPU ratio at 1 thread, wall otherwise):"
          f" worst paired ratio {worst:.2f}x, {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
