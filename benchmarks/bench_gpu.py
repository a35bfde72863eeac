"""GPU training speed: peppp's Triton kernels, fused optimizer and CUDA graphs beside fp32 and qtorch.

In ONE run, on one CUDA GPU:
(0) nearest rounding of the Triton kernels against the pure-torch kernels (bit-exact with qtorch) and
    qtorch's own CUDA kernels, on 1e7 values per format: mismatches (expected 0);
(a) one quantizer call on 1e7 float32 values (e5m2): x.clone(), Triton, pure torch, qtorch;
(b) per network (resnet18 at batch 32 and 256 on 3x32x32, the cpu recipe's convnet4 on 1x28x28 at
    batch 64), ms per training step: fp32 (eager and CUDA graph), peppp fast stochastic and nearest
    (eager and CUDA graph), qtorch stochastic (its CUDA kernels and OptimLP); ratios to fp32 eager;
(c) cells per hour of the paper recipe (ResNet-18, batch 32, 10 epochs of 50,000 32x32x3 images,
    10,000 test images), config e5m2/e8m7 stochastic, K = 1, 2, 4, 8 cells at once as processes and
    as threads of one process (each cell on its own CUDA stream, as `peppp meta-train --cells-per-gpu`
    runs them), with fp32 at K = 1 beside them.
    Each cell trains one epoch of --cell-images synthetic images through `train_cell`; its training
    time is scaled to 500,000 images (10 epochs x 50,000), the rest (set-up, capture, evaluation on
    10,000 images) is counted as measured.

Without a CUDA GPU it says so and exits 0.

    python benchmarks/bench_gpu.py [--json OUT.json] [--steps 30] [--rounds 3] [--cells-plan ...] [--skip check,...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "peppp" / "torch_extensions"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

CONFIG = "e5m2/e8m7"
PAPER_IMAGES = 50_000 * 10  # training images seen by one paper-recipe cell
TEST_IMAGES = 10_000
NETWORKS = {  # name: (network, width, batch, channels, image)
    "resnet18 b32": ("resnet18", None, 32, 3, 32),
    "resnet18 b256": ("resnet18", None, 256, 3, 32),
    "convnet4 w8 b64 (cpu recipe)": ("convnet4", 8, 64, 1, 28),
}
VARIANTS = ("fp32", "fp32-graph", "fast-stochastic", "fast-nearest", "fast-stochastic-graph", "fast-nearest-graph",
            "qtorch-stochastic")


def log(text: str = "") -> None:
    print(text, flush=True)


def cuda_ms(fn, *, repeat: int) -> float:
    """Median milliseconds of fn() by CUDA events."""
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def qtorch_quant():
    from peppp.training.quant import _qtorch_quant

    return _qtorch_quant()


# ------------------------------------------------------------------------------------------------
# (0) and (a): kernels


def check_nearest(results: dict) -> None:
    from peppp.training.quant import torch_kernels, triton_kernels

    g = torch.Generator(device="cuda").manual_seed(0)
    n = 10_000_000
    x = torch.randn(n, device="cuda", generator=g) * torch.exp2(torch.randint(-140, 40, (n,), device="cuda", generator=g).float())
    x[:1000] = torch.randint(-(2**31), 2**31, (1000,), dtype=torch.int32, device="cuda", generator=g).view(torch.float32)
    rows = []
    for exp, man in [(5, 2), (4, 3), (3, 1), (6, 7), (8, 7), (5, 10), (8, 22), (2, 1)]:
        got = triton_kernels.float_quantize(x, exp, man, stochastic=False)
        ref = torch_kernels.float_quantize_nearest(x, exp, man)
        mism = int((got.view(torch.int32) != ref.view(torch.int32)).sum())
        q_mism = None
        try:
            q = qtorch_quant().float_quantize(x, exp, man, rounding="nearest")
            q_mism = int((got.view(torch.int32) != q.view(torch.int32)).sum())
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            q_mism = f"qtorch failed: {type(exc).__name__}"
        rows.append({"format": f"e{exp}m{man}", "vs_torch_kernels": mism, "vs_qtorch_cuda": q_mism})
    for wl, fl in [(8, 6), (16, 8)]:
        got = triton_kernels.fixed_point_quantize(x, wl, fl, stochastic=False)
        ref = torch_kernels.fixed_point_quantize(x, wl, fl, rounding="nearest")
        same = (got.view(torch.int32) == ref.view(torch.int32)) | (got.isnan() & ref.isnan())
        rows.append({"format": f"fixed{wl}.{fl}", "vs_torch_kernels": int((~same).sum()), "vs_qtorch_cuda": None})
    xb = x.nan_to_num(0.0, 0.0, 0.0).view(1000, -1)
    for wl in (4, 8, 16):
        for dim, rows_ in ((-1, 1), (0, 1000)):
            got = triton_kernels.block_quantize(xb, wl, stochastic=False, rows=rows_)
            ref = torch_kernels.block_quantize(xb, wl, dim, rounding="nearest")
            rows.append({"format": f"block{wl}@{dim}", "vs_torch_kernels": int((got.view(torch.int32) != ref.view(torch.int32)).sum()),
                         "vs_qtorch_cuda": None})
    results["nearest_mismatches"] = rows
    log("(0) nearest rounding on 1e7 CUDA values, mismatching elements (expected 0)\n")
    log("| format | vs pure-torch kernels | vs qtorch CUDA |\n|---|---|---|")
    for r in rows:
        log(f"| {r['format']} | {r['vs_torch_kernels']} | {r['vs_qtorch_cuda'] if r['vs_qtorch_cuda'] is not None else '-'} |")


def bench_kernels(results: dict, *, repeat: int) -> None:
    from peppp.training.quant import torch_kernels, triton_kernels

    x = torch.randn(10_000_000, device="cuda")
    kernels = {
        "x.clone()": lambda: x.clone(),
        "Triton nearest": lambda: triton_kernels.float_quantize(x, 5, 2, stochastic=False),
        "Triton stochastic": lambda: triton_kernels.float_quantize(x, 5, 2, stochastic=True, seed=(1 << 62) + 1),
        "pure torch nearest (before)": lambda: torch_kernels.float_quantize_nearest(x, 5, 2),
        "pure torch stochastic (before)": lambda: torch_kernels.float_quantize_stochastic(x, 5, 2),
    }
    try:
        qq = qtorch_quant()
        kernels["qtorch nearest"] = lambda: qq.float_quantize(x, 5, 2, rounding="nearest")
        kernels["qtorch stochastic"] = lambda: qq.float_quantize(x, 5, 2, rounding="stochastic")
    except Exception as exc:  # noqa: BLE001
        log(f"qtorch unavailable: {type(exc).__name__}: {exc}")
    rows = {}
    for name, fn in kernels.items():
        fn()
        rows[name] = cuda_ms(fn, repeat=repeat)
    results["quantize_1e7_ms"] = rows
    log("\n(a) one call on 1e7 float32 values (e5m2), median ms by CUDA events\n")
    log("| kernel | ms |\n|---|---|")
    for name, ms in rows.items():
        log(f"| {name} | {ms:.3f} |")


# ------------------------------------------------------------------------------------------------
# (b): training steps


def build_step(variant: str, *, network: str, width, batch: int, channels: int, image: int):
    """A zero-argument function doing one training step of `variant` on a fixed batch."""
    from bench_quant import _build  # the same variants as the CPU benchmark

    from peppp.formats import parse_config
    from peppp.training.graphs import CapturedStep
    from peppp.training.quant import triton_kernels

    graph = variant.endswith("-graph")
    base = variant.removesuffix("-graph")
    cfg = parse_config("fp32" if base == "fp32" else CONFIG)
    model, opt, loss_scale = _build(base, network=network, width=width, in_channels=channels, image_size=image,
                                    config=CONFIG, device="cuda", lr=0.001)
    g = torch.Generator(device="cuda").manual_seed(1)
    xb = torch.randn(batch, channels, image, image, device="cuda", generator=g)
    yb = torch.randint(0, 10, (batch,), device="cuda", generator=g)
    criterion = nn.CrossEntropyLoss()

    def eager():
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(xb), yb)
        (loss * loss_scale).backward()
        opt.step()

    if not graph:
        return eager
    counter = torch.zeros((), dtype=torch.int64, device="cuda")
    if cfg.is_fp32:  # plain SGD captured as torch's documentation shows (constant lr)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                eager()
        torch.cuda.current_stream().wait_stream(side)
        cuda_graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(cuda_graph):
            loss = criterion(model(xb), yb)
            loss.backward()
            opt.step()
        alive = (model, opt, xb, yb, loss)  # the graph writes into their memory: keep them

        def replay():
            cuda_graph.replay()
            return alive

        return replay
    opt.use_lr_tensor()
    with triton_kernels.device_counter(counter):  # warm-up and capture as the engine does
        for _ in range(3):
            eager()
        step = CapturedStep(model, opt, criterion, loss_scale=loss_scale, counter=counter)
        step.capture(xb, yb)
    return lambda: step.replay(xb, yb)


def bench_steps(results: dict, *, steps: int, rounds: int, warmup: int) -> None:
    table = {}
    for label, (network, width, batch, channels, image) in NETWORKS.items():
        fns = {}
        for v in VARIANTS:
            try:
                fns[v] = build_step(v, network=network, width=width, batch=batch, channels=channels, image=image)
                for _ in range(warmup):
                    fns[v]()
                torch.cuda.synchronize()
            except Exception as exc:  # noqa: BLE001 - reported in the table
                fns.pop(v, None)
                log(f"{label} {v}: failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})")
        per = {v: [] for v in fns}
        for r in range(rounds):
            order = list(fns)[r % len(fns):] + list(fns)[: r % len(fns)]
            for v in order:
                fn = fns[v]
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(steps):
                    fn()
                torch.cuda.synchronize()
                per[v].append(1e3 * (time.perf_counter() - t0) / steps)
        ms = {v: statistics.median(t) for v, t in per.items()}
        table[label] = ms
        base = ms.get("fp32")
        log(f"\n(b) {label}, config {CONFIG}, ms per step (median of {rounds} rounds of {steps} steps, synchronised)\n")
        log("| variant | ms/step | ratio to fp32 eager |\n|---|---|---|")
        for v in VARIANTS:
            if v in ms:
                log(f"| {v} | {ms[v]:.2f} | {ms[v] / base:.2f}x |" if base else f"| {v} | {ms[v]:.2f} | - |")
            else:
                log(f"| {v} | failed | - |")
        del fns
        torch.cuda.empty_cache()
    results["step_ms"] = table


# ------------------------------------------------------------------------------------------------
# (c): cells per hour


def synthetic_dataset(n_train: int):
    from peppp.training.datasets import Dataset

    g = torch.Generator().manual_seed(0)
    return Dataset(
        name=f"synthetic-{n_train}",
        x_train=torch.randn(n_train, 3, 32, 32, generator=g),
        y_train=torch.randint(0, 10, (n_train,), generator=g),
        x_test=torch.randn(TEST_IMAGES, 3, 32, 32, generator=g),
        y_test=torch.randint(0, 10, (TEST_IMAGES,), generator=g),
        num_classes=10,
        in_channels=3,
        image_size=(32, 32),
        classes=tuple(range(10)),
        channel_mean=(0.0, 0.0, 0.0),
        channel_std=(1.0, 1.0, 1.0),
    )


def one_cell(config: str, n_train: int) -> dict:
    from peppp.training.engine import train_cell

    data = synthetic_dataset(n_train)
    t0 = time.perf_counter()
    r = train_cell(data, config, recipe="paper", epochs=1, device="cuda", threads=None)
    wall = time.perf_counter() - t0
    return {"train_seconds": r.train_seconds, "wall": wall, "status": r.status}


def _process_cell(config, n_train, barrier, queue):
    try:
        from peppp.training.engine import train_cell  # noqa: F401 - imported before the start line

        torch.zeros(1, device="cuda")  # CUDA context before the barrier
        barrier.wait()
        queue.put(one_cell(config, n_train))
    except Exception as exc:  # noqa: BLE001
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_processes(config: str, k: int, n_train: int) -> list[dict]:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_process_cell, args=(config, n_train, barrier, queue)) for _ in range(k)]
    for p in procs:
        p.start()
    out = [queue.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return out


def run_threads(config: str, k: int, n_train: int) -> list[dict]:
    out: list[dict] = []
    lock = threading.Lock()

    def work():
        try:
            r = one_cell(config, n_train)
        except Exception as exc:  # noqa: BLE001
            r = {"error": f"{type(exc).__name__}: {exc}"}
        with lock:
            out.append(r)

    threads = [threading.Thread(target=work) for _ in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def cells_per_hour(cells: list[dict], n_train: int) -> float | None:
    """K cells trained at once -> full paper-recipe cells per hour: training time scaled to 500,000
    images, set-up and evaluation as measured; the slowest cell sets the pace."""
    if any("error" in c for c in cells):
        return None
    full = [c["wall"] - c["train_seconds"] + c["train_seconds"] * PAPER_IMAGES / n_train for c in cells]
    return len(cells) * 3600.0 / max(full)


def parse_plan(text: str) -> list[tuple[str, str, int]]:
    """'fp32:process:1,e5m2/e8m7:thread:4' -> [(config, 'process' | 'thread', K), ...]."""
    plan = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        config, how, k = item.rsplit(":", 2)
        if how not in ("process", "thread"):
            raise SystemExit(f"--cells-plan: {how!r} is not process or thread")
        plan.append((config, how, int(k)))
    return plan


DEFAULT_PLAN = ",".join(["fp32:process:1"] + [f"{CONFIG}:{how}:{k}" for how in ("process", "thread") for k in (1, 2, 4, 8)])


def bench_cells(results: dict, *, plan: list[tuple[str, str, int]], n_train: int) -> None:
    one_cell(CONFIG, 512)  # compile and cache every kernel before anything is timed
    rows = []
    for config, how, k in plan:
        t0 = time.perf_counter()
        cells = run_processes(config, k, n_train) if how == "process" else run_threads(config, k, n_train)
        rate = cells_per_hour(cells, n_train)
        errors = [c["error"] for c in cells if "error" in c]
        rows.append({"config": config, "how": how, "k": k, "cells_per_hour": rate, "seconds": time.perf_counter() - t0,
                     "train_seconds": [c.get("train_seconds") for c in cells], "errors": errors})
        log(f"  {config} {how} K={k}: {'%.1f' % rate if rate else 'failed ' + '; '.join(errors)} cells/hour "
            f"(train seconds per {n_train}-image epoch: {', '.join('%.1f' % c['train_seconds'] for c in cells if 'train_seconds' in c)})")
    results["cells_per_hour"] = rows
    log(f"\n(c) paper-recipe cells per hour on one GPU (ResNet-18, batch 32, 50,000 images x 10 epochs, "
        f"scaled from one epoch of {n_train} images)\n")
    log("| config | cells at once | as | cells/hour |\n|---|---|---|---|")
    for r in rows:
        log(f"| {r['config']} | {r['k']} | {r['how']}s | {r['cells_per_hour']:.1f} |" if r["cells_per_hour"] else
            f"| {r['config']} | {r['k']} | {r['how']}s | failed |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--kernel-repeat", type=int, default=20)
    parser.add_argument("--cells-plan", default=DEFAULT_PLAN,
                        help="cells at once for (c): CONFIG:process|thread:K,... (default: fp32 K=1, then K = 1, 2, 4, 8 both ways)")
    parser.add_argument("--cell-images", type=int, default=25_000)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: check,kernels,steps,cells")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        log("bench_gpu: no CUDA GPU here (torch sees none); nothing measured")
        return 0
    from peppp.training.quant import triton_kernels

    if not triton_kernels.AVAILABLE:
        log("bench_gpu: triton is not installed; the GPU kernels need it")
        return 0
    import triton

    skip = set(filter(None, args.skip.split(",")))
    results: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
                     "triton": triton.__version__, "config": CONFIG}
    log(f"{results['gpu']}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}")
    # cells first: it needs no qtorch, whose CUDA kernels may still be building (about 40 s) meanwhile
    parts = [("cells", bench_cells, {"plan": parse_plan(args.cells_plan), "n_train": args.cell_images}),
             ("check", check_nearest, {}), ("kernels", bench_kernels, {"repeat": args.kernel_repeat}),
             ("steps", bench_steps, {"steps": args.steps, "rounds": args.rounds, "warmup": args.warmup})]
    for name, fn, kwargs in parts:
        if name in skip or (name == "cells" and not kwargs["plan"]):
            continue
        t0 = time.perf_counter()
        try:
            fn(results, **kwargs)
        except Exception:  # noqa: BLE001 - one part failing leaves the others' figures
            log(f"part {name} failed:\n{traceback.format_exc()}")
        log(f"[{name}: {time.perf_counter() - t0:.0f} s]")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
