"""Networks by name: parameter counts, shapes, and where the low/high-format quantizers sit."""

import pytest
import torch
from torch import nn

from peppp.errors import PepppError
from peppp.training.networks import DEFAULT_WIDTHS, NETWORKS, build_network


class Tagged(nn.Identity):
    """An identity quantizer that knows whether it is a low (act) or high (io) one."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role


def counting_factory(role: str, made: list):
    def factory():
        module = Tagged(role)
        made.append(module)
        return module

    return factory


def build_tagged(name, **options):
    # Narrow (width 4): placement does not depend on width, and the tests stay fast.
    acts, ios = [], []
    model = build_network(name, width=4, act_quant=counting_factory("act", acts), io_quant=counting_factory("io", ios), **options)
    return model, acts, ios


def call_trace(model, x):
    """(module, kind) of every leaf module call, in execution order."""
    trace = []

    def hook(module, _inputs):
        trace.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return trace


@pytest.mark.parametrize("classes", [1, 5, 10, 100, 1623])
def test_resnet18_has_the_papers_parameter_count(classes):
    with torch.device("meta"):
        model = build_network("resnet18", num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == 11_168_832 + 513 * classes


@pytest.mark.parametrize(
    "name, options, params",
    [
        ("resnet8", dict(num_classes=10), 78_042),
        ("resnet20", dict(num_classes=10), 272_474),
        ("convnet4", dict(num_classes=10, in_channels=1, image_size=28), 61_050),
        ("convnet4", dict(num_classes=10, width=32), 242_474),
    ],
)
def test_small_network_sizes(name, options, params):
    model = build_network(name, **options)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize(
    "name, acts, ios",
    [("resnet18", 45, 2), ("resnet20", 49, 2), ("resnet8", 19, 2), ("convnet4", 8, 2)],
)
def test_one_quantizer_per_placement_each_called_once(name, acts, ios):
    model, made_acts, made_ios = build_tagged(name, num_classes=10)
    # resnet18: stem 2; 5 plain blocks x 5; 3 blocks with a 1x1 shortcut x 6.
    assert (len(made_acts), len(made_ios)) == (acts, ios)
    trace = call_trace(model, torch.zeros(2, 3, 16, 16))
    quantizers = [m for m in trace if isinstance(m, Tagged)]
    assert len(quantizers) == len(set(map(id, quantizers))) == acts + ios
    assert {id(m) for m in quantizers} == {id(m) for m in made_acts + made_ios}


@pytest.mark.parametrize("name", NETWORKS)
def test_quantizer_placement_follows_the_paper(name):
    model, _, _ = build_tagged(name, num_classes=10)
    trace = call_trace(model, torch.zeros(2, 3, 16, 16))
    role = [m.role if isinstance(m, Tagged) else None for m in trace]
    # High format on the input (first call) and the logits (right after the linear layer, last call).
    assert role[0] == "io" and role[-1] == "io" and isinstance(trace[-2], nn.Linear)
    assert role.count("io") == 2
    for i, module in enumerate(trace):
        if isinstance(module, (nn.Conv2d, nn.ReLU)):
            assert role[i + 1] == "act", f"no low-format quantizer after call {i} ({module})"
    if name.startswith("resnet"):
        blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
        # Each block quantizes its shortcut branch: a quantizer straight after BN (bn2 or shortcut BN)
        # that is not the one after a conv.
        after_bn = [i for i in range(1, len(trace)) if role[i] == "act" and isinstance(trace[i - 1], nn.BatchNorm2d)]
        assert len(after_bn) == len(blocks)
        for block in blocks:
            assert isinstance(block.shortcut_quant, Tagged) and isinstance(block.out_quant, Tagged)


def test_shortcut_quantizer_sees_the_shortcut_branch():
    seen = []

    class Recorder(nn.Identity):
        def forward(self, x):
            seen.append(x.detach().clone())
            return x

    torch.manual_seed(0)
    model = build_network("resnet8", num_classes=3, act_quant=Recorder).eval()
    block = model.layers[0][0]
    x = torch.randn(2, 16, 8, 8)
    seen.clear()
    with torch.no_grad():
        block(x)
    # Plain block: conv1, relu1, conv2, shortcut (the block input itself), output.
    assert len(seen) == 5 and torch.equal(seen[3], x)


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("channels, image", [(1, 8), (3, 8), (1, 13)])
def test_forward_any_image_and_channels(name, channels, image):
    model = build_network(name, num_classes=7, in_channels=channels, image_size=image, width=4)
    out = model(torch.randn(2, channels, image, image))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_width_scales_the_network():
    assert DEFAULT_WIDTHS["resnet18"] == 64
    narrow = build_network("resnet18", num_classes=10, width=8)
    assert narrow.linear.in_features == 64
    assert build_network("convnet4", num_classes=10, width=4).linear.in_features == 16


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("vgg16", dict(num_classes=10), "unknown network 'vgg16'; choose one of convnet4, resnet8, resnet18, resnet20"),
        ("resnet18", dict(num_classes=0), "num_classes must be an integer >= 1, got 0"),
        ("resnet18", dict(num_classes=10, image_size=7), "image_size must be an integer >= 8, got 7"),
        ("resnet18", dict(num_classes=10, in_channels=0), "in_channels"),
        ("convnet4", dict(num_classes=10, width=0), "width"),
    ],
)
def test_bad_arguments(name, options, match):
    with pytest.raises(PepppError, match=match):
        build_network(name, **options)


def test_trains_with_real_qtorch_quantizers():
    qtorch = pytest.importorskip("qtorch")
    from qtorch.quant import Quantizer, float_quantize

    def low():
        return Quantizer(qtorch.FloatingPoint(4, 3), qtorch.FloatingPoint(4, 3), "nearest", "nearest")

    def high():
        return Quantizer(qtorch.FloatingPoint(6, 7), qtorch.FloatingPoint(6, 7), "nearest", "nearest")

    torch.manual_seed(0)
    model = build_network("resnet8", num_classes=4, in_channels=1, image_size=8, act_quant=low, io_quant=high)
    seen = []
    handle = model.layers[0][0].out_quant.register_forward_hook(lambda m, i, o: seen.append(o))
    logits = model(torch.randn(3, 1, 8, 8))
    handle.remove()
    assert torch.equal(float_quantize(logits.detach(), 6, 7, "nearest"), logits.detach())
    assert torch.equal(float_quantize(seen[0].detach(), 4, 3, "nearest"), seen[0].detach())
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert torch.isfinite(model.conv1.weight.grad).all() and model.conv1.weight.grad.abs().sum() > 0
