"""The paper's analytic training memory of a precision configuration for a network, in MB.

    memory_mb = (b_low * (P + 2A) + b_high * (2P + B*C*H*W + 2*B*K)) / (8 * 1024**2)

The low format pays for the weights (P) and the activations with their gradients (2A); the high format
for momentum and master weights (2P), the input and the logits with their gradient. b is what a value
stores (`NumberFormat.bits`): an MX format's element bits plus its 8-bit scale per 32 values (4.25 for
mxfp4.e2m1). torch is imported
only to count a built model (`count_model`); a network by name is counted where the networks live
(`peppp.training.networks.network_counts`). The formula itself is plain arithmetic.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peppp.errors import PepppError
from peppp.formats import PrecisionConfig, parse_config

if TYPE_CHECKING:
    from torch import nn

BITS_PER_MB = 8 * 1024**2
PAPER_BATCH = 32
# Two samples, so that a module output without the batch as its first axis is caught.
_PROBE_BATCH = 2


@dataclass(frozen=True)
class ModelCounts:
    """What the memory model needs from a network: `params` (P) and `activations` (A, for one batch)."""

    params: int
    activations: int


def _check_int(what: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise PepppError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """`input_shape` as three plain ints (channels, height, width); a PepppError unless all are >= 1."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1 for n in shape):
        raise PepppError(f"input_shape must be three positive integers (channels, height, width), got {input_shape!r}")
    return tuple(int(n) for n in shape)


def count_model(model: nn.Module, *, input_shape: Sequence[int], batch: int) -> ModelCounts:
    """P and A of `model` for batches of `batch` inputs of shape `input_shape` = (C, H, W).

    P is the number of parameter values. A is counted with forward hooks on one forward pass: the
    number of elements of the output of every module call except the model itself. Containers that
    are called (blocks, `nn.Sequential` stages) count too, each call counts, modules never called
    (`nn.ModuleList`) count nothing, and quantizer modules (or their `nn.Identity` placeholders) count
    like any other, so A does not depend on the configuration. The model's own output, the final one,
    is not counted. This is the rule that, on `build_network("resnet18")`, gives the paper's
    A = B * (3,574,784 * H*W/1024 + 512 + 2K).

    The pass runs on a probe batch of 2 in eval mode, without gradients, on the model's device (the
    meta device works), with the torch RNG state restored afterwards; A is scaled to `batch`, which is
    exact because every output must carry the batch as its first axis (checked). The model's
    training mode is restored.
    """
    import torch

    batch = _check_int("batch", batch)
    shape = check_input_shape(input_shape)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    total = 0
    bad: list[str] = []

    def hook(module, _inputs, output, name):
        nonlocal total
        for tensor in _tensors(output):
            if tensor.dim() == 0 or tensor.shape[0] != _PROBE_BATCH:
                bad.append(f"{name or type(module).__name__} {tuple(tensor.shape)}")
            total += tensor.numel()

    handles = [
        module.register_forward_hook(functools.partial(hook, name=name))
        for name, module in model.named_modules()
        if module is not model
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model(torch.zeros((_PROBE_BATCH, *shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if bad:
        raise PepppError(f"cannot count activations per sample: module outputs without the batch as first axis: {', '.join(bad[:3])}")
    params = sum(p.numel() for p in model.parameters())
    return ModelCounts(params=params, activations=total // _PROBE_BATCH * batch)


def _tensors(output) -> Iterable:
    import torch

    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def _counts(model: nn.Module | ModelCounts, *, input_shape: Sequence[int], batch: int) -> ModelCounts:
    if isinstance(model, ModelCounts):
        return model
    return count_model(model, input_shape=input_shape, batch=batch)


def memory_mb(
    config: PrecisionConfig | str,
    *,
    params: int,
    activations: int,
    batch: int,
    input_shape: Sequence[int],
    classes: int,
) -> float:
    """The analytic training memory in MB of `config` for a model with P=`params`, A=`activations`
    (for the whole batch), `batch` inputs of shape (C, H, W) and `classes` outputs."""
    config = parse_config(config)
    params = _check_int("params", params, 0)
    activations = _check_int("activations", activations, 0)
    batch = _check_int("batch", batch)
    classes = _check_int("classes", classes)
    c, h, w = check_input_shape(input_shape)
    low_values = params + 2 * activations
    high_values = 2 * params + batch * c * h * w + 2 * batch * classes
    return (config.low_bits * low_values + config.high_bits * high_values) / BITS_PER_MB


def model_memory_mb(
    config: PrecisionConfig | str,
    model: nn.Module | ModelCounts,
    *,
    classes: int,
    batch: int = PAPER_BATCH,
    input_shape: Sequence[int] = (3, 32, 32),
) -> float:
    """Memory in MB of `config` for `model`: a built module (counted now, with a forward pass) or its
    counts for this batch and input shape (`peppp.training.networks.network_counts` counts a network
    by name)."""
    counts = _counts(model, input_shape=input_shape, batch=batch)
    return memory_mb(
        config, params=counts.params, activations=counts.activations, batch=batch, input_shape=input_shape, classes=classes
    )


def grid_memory_mb(
    configs: Iterable[PrecisionConfig | str],
    model: nn.Module | ModelCounts,
    *,
    classes: int,
    batch: int = PAPER_BATCH,
    input_shape: Sequence[int] = (3, 32, 32),
) -> list[float]:
    """`model_memory_mb` of each configuration, counting the model once."""
    counts = _counts(model, input_shape=input_shape, batch=batch)
    return [
        memory_mb(c, params=counts.params, activations=counts.activations, batch=batch, input_shape=input_shape, classes=classes)
        for c in configs
    ]


def resnet18_counts(*, classes: int, image: int, batch: int = PAPER_BATCH, channels: int = 3) -> ModelCounts:
    """P and A of the paper's ResNet-18 in closed form (what `count_model` counts on `build_network("resnet18")`).

    P = 11,168,832 + 513K (+576 per input channel beyond 3). Per sample, A is the input's C*H*W (its
    quantizer), 30 tensors of 64 x H x W (stem: conv, quantizer, BN, ReLU, quantizer; stage 1: two
    blocks of 12 outputs and the stage output), 28 tensors per later stage at 128/256/512 channels
    (a block with a 1x1 shortcut has 15 outputs, a plain one 12, plus the stage output) with the side
    halved by each stride-2 conv (ceil), then 512 (average pool) and 2K (linear, logits quantizer).
    For H = W a multiple of 8 and C = 3 this is the paper's B * (3,574,784 * H*W/1024 + 512 + 2K).
    """
    classes = _check_int("classes", classes)
    image = _check_int("image", image, 8)
    batch = _check_int("batch", batch)
    channels = _check_int("channels", channels)
    params = 11_168_832 + 513 * classes + 576 * (channels - 3)
    side = [image]
    for _ in range(3):
        side.append(-(-side[-1] // 2))
    spatial = sum(28 * planes * s * s for planes, s in zip((128, 256, 512), side[1:]))
    per_sample = channels * image * image + 30 * 64 * image * image + spatial + 512 + 2 * classes
    return ModelCounts(params=params, activations=per_sample * batch)


def resnet18_memory_mb(
    config: PrecisionConfig | str, *, classes: int, image: int, batch: int = PAPER_BATCH, channels: int = 3
) -> float:
    """The paper's memory of `config` for its ResNet-18, in closed form (no torch)."""
    counts = resnet18_counts(classes=classes, image=image, batch=batch, channels=channels)
    return memory_mb(
        config,
        params=counts.params,
        activations=counts.activations,
        batch=batch,
        input_shape=(channels, image, image),
        classes=classes,
    )
