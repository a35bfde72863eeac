"""The analytic memory model: hook counts, the closed form, and the paper's released 88x99 memory matrix."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import PAPER_DIR
from peppp.errors import PepppError
from peppp.formats import paper_grid, parse_config
from peppp.memory import (
    ModelCounts,
    count_model,
    grid_memory_mb,
    memory_mb,
    model_memory_mb,
    resnet18_counts,
    resnet18_memory_mb,
)
from peppp.training.networks import NETWORKS, build_network, network_counts


def test_every_cell_of_the_papers_memory_matrix():
    memory = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0)
    datasets = pd.read_csv(PAPER_DIR / "datasets.csv")
    assert list(memory.index) == list(datasets["dataset"])
    grid = paper_grid()
    assert [str(c) for c in grid] == list(memory.columns)
    hooks = np.array(
        [
            grid_memory_mb(grid, network_counts("resnet18", classes=k, input_shape=shape), classes=k, input_shape=shape)
            for k, shape in ((int(k), (3, int(px), int(px))) for k, px in zip(datasets["classes"], datasets["image_px"]))
        ]
    )
    closed = np.array(
        [
            [resnet18_memory_mb(c, classes=int(k), image=int(px), batch=32) for c in grid]
            for k, px in zip(datasets["classes"], datasets["image_px"])
        ]
    )
    assert hooks.shape == memory.shape == (88, 99)
    assert np.max(np.abs(hooks / memory.to_numpy() - 1)) < 1e-6
    assert np.max(np.abs(closed / memory.to_numpy() - 1)) < 1e-6


@pytest.mark.parametrize("classes, image", [(10, 32), (5, 64), (1623, 64)])
def test_hooks_on_resnet18_give_the_papers_counts(classes, image):
    counts = network_counts("resnet18", classes=classes, input_shape=(3, image, image), batch=32)
    assert counts.params == 11_168_832 + 513 * classes
    assert counts.activations == 32 * (3_574_784 * image * image // 1024 + 512 + 2 * classes)


@pytest.mark.parametrize("image, channels", [(8, 1), (13, 3), (28, 1), (33, 3)])
def test_closed_form_equals_hooks_off_the_papers_shapes(image, channels):
    assert resnet18_counts(classes=7, image=image, batch=3, channels=channels) == network_counts(
        "resnet18", classes=7, input_shape=(channels, image, image), batch=3
    )


@pytest.mark.parametrize("name", NETWORKS)
def test_activations_are_linear_in_the_batch(name):
    """A is counted on a probe batch and scaled; check it against real forward passes at other batches."""
    model = build_network(name, num_classes=3, in_channels=1, image_size=9, width=4)

    def direct(batch):
        total = 0

        def hook(_m, _i, out):
            nonlocal total
            total += out.numel()

        handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
        with torch.no_grad():
            model.eval()(torch.zeros(batch, 1, 9, 9))
        for h in handles:
            h.remove()
        return total

    for batch in (1, 5):
        assert count_model(model, input_shape=(1, 9, 9), batch=batch).activations == direct(batch)


def test_meta_device_counts_equal_a_real_model():
    real = build_network("resnet20", num_classes=10)
    assert count_model(real, input_shape=(3, 32, 32), batch=32) == network_counts("resnet20", classes=10, input_shape=(3, 32, 32), batch=32)


def test_counting_leaves_the_model_and_the_rng_as_they_were():
    model = build_network("convnet4", num_classes=4, in_channels=1, image_size=8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    count_model(model, input_shape=(1, 8, 8), batch=4)
    assert torch.equal(torch.rand(3), expected)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_quantizers_count_like_their_placeholders():
    qtorch = pytest.importorskip("qtorch")
    from qtorch.quant import Quantizer

    def q():
        return Quantizer(qtorch.FloatingPoint(5, 2), qtorch.FloatingPoint(5, 2), "nearest", "nearest")

    quantized = build_network("resnet8", num_classes=5, image_size=8, act_quant=q, io_quant=q)
    plain = build_network("resnet8", num_classes=5, image_size=8)
    assert count_model(quantized, input_shape=(3, 8, 8), batch=2) == count_model(plain, input_shape=(3, 8, 8), batch=2)


def test_the_formula_by_hand():
    # P=1000, A=500, B=2, input 1x4x4, K=3, 8-bit low, 16-bit high.
    expected = (8 * (1000 + 2 * 500) + 16 * (2 * 1000 + 2 * 16 + 2 * 2 * 3)) / (8 * 1024**2)
    got = memory_mb("e4m3/e7m8", params=1000, activations=500, batch=2, input_shape=(1, 4, 4), classes=3)
    assert got == pytest.approx(expected, rel=1e-15)
    fp32 = memory_mb("fp32", params=1000, activations=500, batch=2, input_shape=(1, 4, 4), classes=3)
    assert fp32 == pytest.approx(32 * (3000 + 1000 + 32 + 12) / (8 * 1024**2), rel=1e-15)


def test_memory_depends_only_on_total_bits():
    a = resnet18_memory_mb("e4m3/e7m9", classes=10, image=32)
    assert resnet18_memory_mb("e5m2/e8m8", classes=10, image=32) == a
    assert resnet18_memory_mb("fixed8.4/block17", classes=10, image=32) == a
    assert resnet18_memory_mb("e4m4/e7m9", classes=10, image=32) > a


def test_model_memory_mb_by_module_and_by_counts_agree():
    config = parse_config("e5m2/e8m7")
    model = build_network("convnet4", num_classes=10, in_channels=1, image_size=28)
    shape = (1, 28, 28)
    by_module = model_memory_mb(config, model, classes=10, input_shape=shape, batch=16)
    counts = network_counts("convnet4", classes=10, input_shape=shape, batch=16)
    by_counts = model_memory_mb("e5m2/e8m7", counts, classes=10, input_shape=shape, batch=16)
    assert by_module == by_counts
    assert by_counts == memory_mb(config, params=counts.params, activations=counts.activations, batch=16, input_shape=shape, classes=10)
    assert grid_memory_mb([config, "fp32"], model, classes=10, input_shape=shape, batch=16)[0] == by_module
    assert grid_memory_mb([config, "fp32"], counts, classes=10, input_shape=shape, batch=16)[0] == by_counts


def test_width_and_non_square_inputs():
    narrow = build_network("resnet8", num_classes=4, width=8)
    assert network_counts("resnet8", classes=4, input_shape=(3, 12, 20), batch=2, width=8) == count_model(
        narrow, input_shape=(3, 12, 20), batch=2
    )
    assert network_counts("resnet8", classes=4, width=8).params < network_counts("resnet8", classes=4).params


def test_counting_rejects_outputs_without_a_batch_axis():
    class Summary(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x.flatten(1)).sum()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = Summary()

        def forward(self, x):
            return self.head(x)

    with pytest.raises(PepppError, match="head"):
        count_model(Net(), input_shape=(1, 2, 2), batch=4)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: memory_mb("e4m3", params=1, activations=1, batch=1, input_shape=(1, 1, 1), classes=1), "LOW/HIGH"),
        (lambda: memory_mb("e4m3/e7m9", params=-1, activations=1, batch=1, input_shape=(1, 1, 1), classes=1), "params"),
        (lambda: memory_mb("e4m3/e7m9", params=1, activations=1, batch=0, input_shape=(1, 1, 1), classes=1), "batch"),
        (lambda: memory_mb("e4m3/e7m9", params=1, activations=1, batch=1, input_shape=(1, 1), classes=1), "input_shape"),
        (lambda: network_counts("vgg", classes=10), "unknown network 'vgg'; choose one of"),
        (lambda: network_counts("resnet18", classes=0), "classes"),
        (lambda: network_counts("resnet18", classes=10, input_shape=(3, 4, 32)), r"image sides must be >= 8 pixels, got input_shape \(3, 4, 32\)"),
        (lambda: network_counts("resnet18", classes=10, width=0), "width"),
        (lambda: network_counts("resnet18", classes=10, batch=0), "batch"),
        (lambda: model_memory_mb("e4m3/e7m9", ModelCounts(1, 1), classes=0), "classes"),
        (lambda: resnet18_memory_mb("e4m3/e7m9", classes=10, image=4), "image"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(PepppError, match=match):
        call()


def test_model_counts_is_a_value():
    assert ModelCounts(1, 2) == ModelCounts(params=1, activations=2)
    with pytest.raises(AttributeError):
        ModelCounts(1, 2).params = 3


def test_numpy_integers_from_tables_are_accepted():
    k, px = np.int64(10), np.int64(32)
    counts = network_counts("resnet18", classes=k, input_shape=(3, px, px))
    assert model_memory_mb("e4m3/e7m9", counts, classes=k, input_shape=(3, px, px)) == resnet18_memory_mb("e4m3/e7m9", classes=10, image=32)


def test_mx_formats_count_the_shared_scale():
    """Element bits plus 8 per 32 values: mxfp4.e2m1 stores 4.25 bits a value, between e2m1 (4) and e2m2 (5)."""
    sizes = {c: resnet18_memory_mb(c, classes=10, image=32, batch=32) for c in ("e2m1/e8m7", "mxfp4.e2m1/bf16", "e2m2/e8m7")}
    assert sizes["e2m1/e8m7"] < sizes["mxfp4.e2m1/bf16"] < sizes["e2m2/e8m7"]
    counts = resnet18_counts(classes=10, image=32, batch=32)
    low = counts.params + 2 * counts.activations
    assert sizes["mxfp4.e2m1/bf16"] - sizes["e2m1/e8m7"] == pytest.approx(0.25 * low / 8 / 2**20, rel=1e-12)
    assert parse_config("mxint8/fp16").low_bits == 8.25 and parse_config("fp8.e4m3/bf16").low_bits == 8
