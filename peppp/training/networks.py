"""Networks by name, with the low- and high-format quantizers where the PEPPP paper puts them.

Placement (METHOD.md): a low-format quantizer (`act_quant()`) after each conv, after each BN+ReLU, on
the residual/shortcut branch and on each block output (the stem's BN+ReLU quantizer is its output);
a high-format quantizer (`io_quant()`) on the network input and on the output logits. Each placement
gets its own module from the factory; the default factory is `nn.Identity`, i.e. plain fp32.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn

from peppp.errors import PepppError
from peppp.memory import PAPER_BATCH, ModelCounts, check_input_shape, count_model

QuantizerFactory = Callable[[], nn.Module]

NETWORKS = ("convnet4", "resnet8", "resnet18", "resnet20")

# Stem width of each network when `width` is not given.
DEFAULT_WIDTHS = {"convnet4": 16, "resnet8": 16, "resnet18": 64, "resnet20": 16}

MIN_IMAGE_SIZE = 8


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with a shortcut (a 1x1 conv+BN when the shape changes), quantized as the paper.

    The shortcut's layers are attributes of the block itself (not a nested container), so that the
    activation count of `peppp.memory` sees exactly conv, quantizer and BN outputs here.
    """

    def __init__(self, in_planes: int, planes: int, *, stride: int = 1, act_quant: QuantizerFactory = nn.Identity):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.conv1_quant = act_quant()
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.relu1_quant = act_quant()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2_quant = act_quant()
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        if self.downsample:
            self.shortcut_conv = nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)
            self.shortcut_conv_quant = act_quant()
            self.shortcut_bn = nn.BatchNorm2d(planes)
        self.shortcut_quant = act_quant()
        self.relu2 = nn.ReLU()
        self.out_quant = act_quant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1_quant(self.relu1(self.bn1(self.conv1_quant(self.conv1(x)))))
        out = self.bn2(self.conv2_quant(self.conv2(out)))
        shortcut = self.shortcut_bn(self.shortcut_conv_quant(self.shortcut_conv(x))) if self.downsample else x
        return self.out_quant(self.relu2(out + self.shortcut_quant(shortcut)))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem conv (no max-pool), stages of BasicBlocks, global average pool, linear.

    `stages` lists (channels, blocks, stride) per stage.
    """

    def __init__(
        self,
        *,
        stages: tuple[tuple[int, int, int], ...],
        num_classes: int,
        in_channels: int = 3,
        act_quant: QuantizerFactory = nn.Identity,
        io_quant: QuantizerFactory = nn.Identity,
    ):
        super().__init__()
        stem = stages[0][0]
        self.input_quant = io_quant()
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv1_quant = act_quant()
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.stem_quant = act_quant()
        layers = []
        in_planes = stem
        for planes, blocks, stride in stages:
            strides = [stride] + [1] * (blocks - 1)
            layers.append(nn.Sequential(*(BasicBlock(in_planes if i == 0 else planes, planes, stride=s, act_quant=act_quant) for i, s in enumerate(strides))))
            in_planes = planes
        self.layers = nn.ModuleList(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)
        self.logits_quant = io_quant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem_quant(self.relu(self.bn1(self.conv1_quant(self.conv1(self.input_quant(x))))))
        for layer in self.layers:
            out = layer(out)
        out = torch.flatten(self.avgpool(out), 1)
        return self.logits_quant(self.linear(out))


class ConvUnit(nn.Module):
    """conv3x3 -> quantizer -> BN -> ReLU -> quantizer."""

    def __init__(self, in_planes: int, planes: int, *, act_quant: QuantizerFactory = nn.Identity):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=False)
        self.conv_quant = act_quant()
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.relu_quant = act_quant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_quant(self.relu(self.bn(self.conv_quant(self.conv(x)))))


class ConvNet4(nn.Module):
    """Four conv units of width w, 2w, 4w, 4w; a 2x2 max-pool after the second and the fourth; global
    average pool; linear. Max-pooling keeps values on the format's grid, so it needs no quantizer."""

    def __init__(
        self,
        *,
        width: int,
        num_classes: int,
        in_channels: int = 3,
        act_quant: QuantizerFactory = nn.Identity,
        io_quant: QuantizerFactory = nn.Identity,
    ):
        super().__init__()
        self.input_quant = io_quant()
        self.unit1 = ConvUnit(in_channels, width, act_quant=act_quant)
        self.unit2 = ConvUnit(width, 2 * width, act_quant=act_quant)
        self.pool1 = nn.MaxPool2d(2)
        self.unit3 = ConvUnit(2 * width, 4 * width, act_quant=act_quant)
        self.unit4 = ConvUnit(4 * width, 4 * width, act_quant=act_quant)
        self.pool2 = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(4 * width, num_classes)
        self.logits_quant = io_quant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool1(self.unit2(self.unit1(self.input_quant(x))))
        out = self.pool2(self.unit4(self.unit3(out)))
        out = torch.flatten(self.avgpool(out), 1)
        return self.logits_quant(self.linear(out))


def _check_positive(what: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise PepppError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def build_network(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    width: int | None = None,
    act_quant: QuantizerFactory | None = None,
    io_quant: QuantizerFactory | None = None,
) -> nn.Module:
    """The network `name` (one of `NETWORKS`) for `in_channels` x `image_size` x `image_size` inputs.

    - `resnet18`: the paper's CIFAR-style ResNet-18 (stem 64, BasicBlocks [2, 2, 2, 2], 64-512 channels);
      11,168,832 + 513 * num_classes parameters for 3 input channels.
    - `resnet8`, `resnet20`: CIFAR ResNets with 16/32/64 channels and 1 or 3 blocks per stage.
    - `convnet4`: four conv3x3+BN+ReLU, two max-pools, global average pool, linear (61k parameters at
      width 16 for 28x28x1 inputs and 10 classes).
    `width` is the stem width (default `DEFAULT_WIDTHS[name]`; the other stages scale with it).
    `act_quant` / `io_quant` are zero-argument factories of the low- and high-format quantizer modules
    (e.g. `lambda: qtorch.quant.Quantizer(...)`); None means `nn.Identity`. `image_size` is only
    validated (>= 8): the networks end in a global average pool and accept any size.
    """
    if name not in NETWORKS:
        raise PepppError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    num_classes = _check_positive("num_classes", num_classes)
    in_channels = _check_positive("in_channels", in_channels)
    _check_positive("image_size", image_size, MIN_IMAGE_SIZE)
    w = _check_positive("width", DEFAULT_WIDTHS[name] if width is None else width)
    act = nn.Identity if act_quant is None else act_quant
    io = nn.Identity if io_quant is None else io_quant
    common = dict(num_classes=num_classes, in_channels=in_channels, act_quant=act, io_quant=io)
    if name == "convnet4":
        return ConvNet4(width=w, **common)
    blocks = {"resnet8": (1, 1, 1), "resnet20": (3, 3, 3), "resnet18": (2, 2, 2, 2)}[name]
    stages = tuple((w * 2**i, n, 1 if i == 0 else 2) for i, n in enumerate(blocks))
    return ResNet(stages=stages, **common)


def network_counts(
    network: str,
    *,
    classes: int,
    input_shape: Sequence[int] = (3, 32, 32),
    batch: int = PAPER_BATCH,
    width: int | None = None,
) -> ModelCounts:
    """P and A (`peppp.memory.count_model`) of the network named `network` (one of `NETWORKS`), built
    with `width` (None: its default); counted on the meta device once per distinct arguments, then cached."""
    classes = _check_positive("classes", classes)
    batch = _check_positive("batch", batch)
    shape = check_input_shape(input_shape)
    if min(shape[1:]) < MIN_IMAGE_SIZE:
        raise PepppError(f"image sides must be >= {MIN_IMAGE_SIZE} pixels, got input_shape {tuple(input_shape)!r}")
    width = None if width is None else _check_positive("width", width)
    per_sample = _network_counts_per_sample(str(network), classes, shape, width)
    return ModelCounts(params=per_sample.params, activations=per_sample.activations * batch)


@functools.lru_cache(maxsize=256)
def _network_counts_per_sample(network: str, classes: int, input_shape: tuple[int, int, int], width: int | None) -> ModelCounts:
    channels, height, width_px = input_shape
    # On the meta device: shapes only, no weights to initialise and no arithmetic.
    with torch.device("meta"):
        model = build_network(
            network, num_classes=classes, in_channels=channels, image_size=min(height, width_px), width=width
        )
    return count_model(model, input_shape=input_shape, batch=1)
