"""Train one cell: one network on one dataset under one simulated precision configuration.

Placement follows the paper (METHOD.md): the low format quantizes every activation and its gradient
(inside the network), the weights and the weight gradients; the high format quantizes the momentum,
the master weights, the network input and the logits. The loss is scaled before backward and the
gradients unscaled before they are quantized. The result is a `peppp.cells.CellResult`; a run whose
loss becomes NaN or inf stops early and is reported as `diverged`, never raised.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from dataclasses import dataclass, replace

import torch
from torch import nn

from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.formats import PrecisionConfig, parse_config
from peppp.memory import model_memory_mb
from peppp.training.datasets import Dataset, load_dataset, train_loader
from peppp.training.devices import resolve_device
from peppp.training.graphs import CapturedStep
from peppp.training.quant import BACKENDS, ROUNDINGS, load_extension
from peppp.training.quant.triton_kernels import device_counter, seed_source
from peppp.training.networks import build_network, network_counts
from peppp.training.quantizers import make_optimizer, make_quantizer_factory
from peppp.training.recipes import Recipe, get_recipe

# On a GPU the loss is read back (a host synchronisation) once per this many steps, not every step.
GPU_LOSS_CHECK_EVERY = 50
_INIT_LOCK = threading.Lock()
# Eager steps before a step is captured as a CUDA graph (kernels compiled, cuDNN's choices made).
GRAPH_WARMUP_STEPS = 3


@dataclass(frozen=True)
class TrainedCell:
    """A cell result together with the trained model (for callers that want to inspect it)."""

    result: CellResult
    model: nn.Module
    optimizer: object


def build_quantized_network(
    config: PrecisionConfig, *, recipe: Recipe, dataset: Dataset, rounding: str, backend: str
) -> nn.Module:
    """The recipe's network with low-format quantizers inside and high-format ones at input and logits."""
    if config.is_fp32:
        act_quant = io_quant = None
    else:
        act_quant = make_quantizer_factory(config.low, rounding=rounding, backend=backend)
        io_quant = make_quantizer_factory(config.high, rounding=rounding, backend=backend)
    kwargs = {} if recipe.width is None else {"width": recipe.width}
    return build_network(
        recipe.network,
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
        image_size=min(dataset.image_size),
        act_quant=act_quant,
        io_quant=io_quant,
        **kwargs,
    )


@torch.no_grad()
def test_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512) -> float:
    """1 - top-1 accuracy of `model` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        correct += int((logits.argmax(dim=1).cpu() == y[start : start + batch_size]).sum())
    model.train(was_training)
    return 1.0 - correct / len(y)


def _capture_or_none(captured: CapturedStep, xb: torch.Tensor, yb: torch.Tensor) -> CapturedStep | None:
    """Capture the step, or None (with a warning) where this GPU or build cannot: training goes on eagerly."""
    try:
        captured.capture(xb, yb)
        return captured
    except RuntimeError as exc:  # a capture error leaves nothing half-done: the step runs eagerly
        torch.cuda.current_stream().synchronize()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"peppp: CUDA graph capture failed ({first}); training this cell eagerly", RuntimeWarning, stacklevel=2)
        return None


def _read_losses(pending: list[tuple[torch.Tensor, int]]) -> list[float]:
    """The losses as floats: one read back (one host synchronisation on a GPU) for all of them."""
    if len(pending) == 1:
        return [float(pending[0][0])]
    return torch.stack([loss for loss, _ in pending]).tolist()


def train_cell(
    dataset: str | Dataset,
    config: str | PrecisionConfig,
    *,
    recipe: str | Recipe = "cpu",
    network: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    rounding: str = "stochastic",
    backend: str = "fast",
    device: str | torch.device | None = None,
    threads: int | None = 1,
    cuda_graphs: bool | None = None,
    return_model: bool = False,
) -> CellResult | TrainedCell:
    """Train `dataset` under `config` with `recipe` and return its test error and analytic memory.

    `device`: `auto` (default; CUDA where torch sees a GPU), `cpu`, `cuda` or `cuda:N`.
    `threads` sets torch's CPU threads for this training (restored afterwards); one thread per cell
    and one cell per core beats one cell on all cores (the quantizers' and small convolutions'
    threading overhead dominates). None leaves torch's setting alone.
    `cuda_graphs`: on a GPU, replay each full batch's step from a CUDA graph captured after
    `GRAPH_WARMUP_STEPS` eager steps (see `peppp.training.graphs`); None (default) does so where the
    step is the fused low-precision one. Each cell on a GPU runs on a CUDA stream of its own, so cells
    trained by several threads of one process overlap on the GPU.
    """
    if threads is None:
        return _train_cell(dataset, config, recipe=recipe, network=network, epochs=epochs, seed=seed,
                           rounding=rounding, backend=backend, device=device, cuda_graphs=cuda_graphs,
                           return_model=return_model)
    if threads < 1:
        raise PepppError(f"threads must be >= 1 or None, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train_cell(dataset, config, recipe=recipe, network=network, epochs=epochs, seed=seed,
                           rounding=rounding, backend=backend, device=device, cuda_graphs=cuda_graphs,
                           return_model=return_model)
    finally:
        torch.set_num_threads(before)


def _train_cell(dataset, config, *, recipe, network, epochs, seed, rounding, backend, device, cuda_graphs, return_model):
    if rounding not in ROUNDINGS:
        raise PepppError(f"rounding {rounding!r} is not one of {', '.join(ROUNDINGS)}")
    if backend not in BACKENDS:
        raise PepppError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    cfg = parse_config(config) if isinstance(config, str) else config
    rec = get_recipe(recipe).with_overrides(network=network, epochs=epochs, seed=seed)
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, seed=rec.seed, max_train=rec.max_train)
    name = dataset if isinstance(dataset, str) else data.name
    with contextlib.ExitStack() as stack:
        if dev.type == "cuda":
            stack.enter_context(torch.cuda.device(dev))
            stack.enter_context(torch.cuda.stream(torch.cuda.Stream(dev)))
            # the training split on the GPU once: batches are gathered there
            data = replace(data, x_train=data.x_train.to(dev), y_train=data.y_train.to(dev))
        return _train(data, cfg, rec, dev, rounding=rounding, backend=backend, cuda_graphs=cuda_graphs, name=name,
                      return_model=return_model)


def _train(data: Dataset, cfg: PrecisionConfig, rec: Recipe, dev: torch.device, *, rounding: str, backend: str,
           cuda_graphs: bool | None, name: str, return_model: bool):
    if dev.type == "cpu":
        torch.manual_seed(rec.seed)
        model = build_quantized_network(cfg, recipe=rec, dataset=data, rounding=rounding, backend=backend)
    else:
        # Cells in several threads share torch's default generator: seed and build under one lock, and
        # seed only the CPU's (the weights are drawn there; reseeding the GPU's could break another
        # thread's graph capture). The random seeds of the GPU kernels come from the cell's own source.
        with _INIT_LOCK:
            torch.default_generator.manual_seed(rec.seed)
            model = build_quantized_network(cfg, recipe=rec, dataset=data, rounding=rounding, backend=backend)
        model = model.to(dev)
    shape = (data.in_channels, *data.image_size)
    counts = network_counts(rec.network, classes=data.num_classes, input_shape=shape, batch=rec.batch_size, width=rec.width)
    memory_mb = model_memory_mb(cfg, counts, classes=data.num_classes, batch=rec.batch_size, input_shape=shape)
    optimizer = make_optimizer(
        model.parameters(),
        config=cfg,
        lr=rec.lr,
        momentum=rec.momentum,
        weight_decay=rec.weight_decay,
        rounding=rounding,
        backend=backend,
        loss_scale=rec.loss_scale,
    )
    inner = getattr(optimizer, "optim", optimizer)
    steps_per_epoch = math.ceil(len(data.y_train) / rec.batch_size)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(inner, T_max=rec.epochs * steps_per_epoch)
        if rec.schedule == "cosine"
        else None
    )
    # fp32 is the unquantized baseline: no loss scaling either.
    loss_scale = 1.0 if cfg.is_fp32 else rec.loss_scale
    criterion = nn.CrossEntropyLoss()

    # Divergence: on the CPU the loss is checked before each backward (a free read); on a GPU the
    # losses stay on the device and are read back every GPU_LOSS_CHECK_EVERY steps and at each
    # epoch's end, so a diverged cell may train that many steps more before it stops.
    check_every = 1 if dev.type == "cpu" else GPU_LOSS_CHECK_EVERY
    fused = getattr(optimizer, "fused", False)
    if cuda_graphs is None:
        cuda_graphs = dev.type == "cuda" and fused
    elif cuda_graphs and not (dev.type == "cuda" and fused):
        raise PepppError("CUDA graphs need a GPU and the fused low-precision step (backend fast, float or fixed formats)")
    counter, captured = None, None
    if cuda_graphs:
        counter = torch.zeros((), dtype=torch.int64, device=dev)
        optimizer.use_lr_tensor()
        captured = CapturedStep(model, optimizer, criterion, loss_scale=loss_scale, counter=counter)
    if dev.type == "cpu" and backend == "fast" and not cfg.is_fp32:
        load_extension()  # built (once per machine) or loaded before the clock starts, not inside the first step
    status, message, final_loss = "ok", "", float("nan")
    start = time.perf_counter()
    model.train()
    eager_steps = 0
    with contextlib.ExitStack() as rng:
        if dev.type == "cuda":
            rng.enter_context(seed_source(torch.Generator().manual_seed(rec.seed)))
        if counter is not None:
            rng.enter_context(device_counter(counter))
        for epoch in range(rec.epochs):
            total, count = 0.0, 0
            pending: list[tuple[torch.Tensor, int]] = []
            batches = train_loader(data, batch_size=rec.batch_size, seed=rec.seed + epoch)
            for step, (xb, yb) in enumerate(batches, start=1):
                xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
                stepped = False
                if captured is not None and len(yb) == rec.batch_size and eager_steps >= GRAPH_WARMUP_STEPS:
                    if not captured.ready:
                        captured = _capture_or_none(captured, xb, yb)
                    if captured is not None:
                        loss, stepped = captured.replay(xb, yb), True
                if not stepped:
                    optimizer.zero_grad(set_to_none=True)
                    loss = criterion(model(xb), yb)
                pending.append((loss.detach(), len(yb)))
                if check_every == 1 or step % check_every == 0 or step == len(batches):
                    values, sizes = _read_losses(pending), [n for _, n in pending]
                    pending = []
                    value = next((v for v in values if not math.isfinite(v)), None)
                    if value is not None:
                        status, message = "diverged", f"loss became {value} in epoch {epoch + 1}"
                        break
                    for v, n in zip(values, sizes):
                        total += v * n
                        count += n
                if not stepped:
                    (loss * loss_scale).backward()
                    optimizer.step()
                    eager_steps += 1
                # drop this step's autograd graph now: a capture next step must not meet its
                # AccumulateGrad nodes (made on this cell's stream) still alive
                loss = None
                if scheduler is not None:
                    scheduler.step()
            if status == "diverged":
                final_loss = value
                break
            final_loss = total / max(count, 1)
    if dev.type == "cuda":
        torch.cuda.current_stream(dev).synchronize()  # this cell's stream only: other cells may be capturing
    train_seconds = time.perf_counter() - start

    error = test_error(model, data.x_test, data.y_test)
    result = CellResult(
        # The name the caller asked for keys the cell (the recipe already records the sample cap).
        dataset=name,
        config=str(cfg),
        recipe=rec.name,
        network=rec.network,
        seed=rec.seed,
        error=error,
        memory_mb=memory_mb,
        train_seconds=train_seconds,
        final_loss=final_loss,
        status=status,
        message=message,
    )
    if return_model:
        return TrainedCell(result=result, model=model, optimizer=optimizer)
    return result
