"""One cell end to end on real data: placement of the formats, divergence, results, errors."""

import math

import pytest
import torch

from peppp.errors import PepppError
from peppp.formats import parse_config
from peppp.training.engine import train_cell
from peppp.training.quant import quantize
from peppp.training.recipes import RECIPES, Recipe, get_recipe

CONFIG = "e4m3/e7m9"


@pytest.fixture(scope="module")
def trained():
    return train_cell("digits", CONFIG, recipe="tiny", return_model=True)


def test_cell_result_is_complete(trained):
    result = trained.result
    assert result.status == "ok" and result.message == ""
    assert result.dataset == "digits" and result.config == CONFIG and result.recipe == "tiny"
    assert 0.0 <= result.error <= 1.0
    assert result.memory_mb > 0 and result.train_seconds > 0 and math.isfinite(result.final_loss)


def test_weights_are_in_the_low_format_and_momentum_in_the_high_format(trained):
    config = parse_config(CONFIG)
    model, optimizer = trained.model, trained.optimizer
    params = [p for p in model.parameters()]
    assert params
    for p in params:
        assert torch.equal(quantize(p.data, config.low, rounding="nearest"), p.data)
    inner = getattr(optimizer, "optim", optimizer)  # OptimLP wraps SGD; LowPrecisionSGD is one
    buffers = [inner.state[p]["momentum_buffer"] for p in params if "momentum_buffer" in inner.state[p]]
    assert len(buffers) == len(params)
    for buf in buffers:
        assert torch.equal(quantize(buf, config.high, rounding="nearest"), buf)
    # The low format is coarser than the high one: momentum is not all on the low grid.
    assert any(not torch.equal(quantize(b, config.low, rounding="nearest"), b) for b in buffers)


def test_fp32_is_untouched():
    trained = train_cell("digits", "fp32", recipe="tiny", return_model=True)
    quantizers = [m for m in trained.model.modules() if "Quantizer" in type(m).__name__]
    assert quantizers == []
    assert isinstance(trained.optimizer, torch.optim.SGD)
    # Weights are not restricted to any low-precision grid.
    w = next(trained.model.parameters()).data
    assert not torch.equal(quantize(w, parse_config(CONFIG).low, rounding="nearest"), w)


def test_quantized_network_has_quantizers_on_activations_and_io():
    trained = train_cell("digits", CONFIG, recipe="tiny", epochs=1, return_model=True)
    quantizers = [m for m in trained.model.modules() if "Quantizer" in type(m).__name__]
    assert len(quantizers) == 8 + 2  # convnet4: 8 activation places, input and logits


def test_divergence_is_reported_not_raised():
    wild = Recipe(name="wild", network="convnet4", epochs=2, batch_size=64, lr=1e12, max_train=256, width=4, momentum=0.0)
    result = train_cell("digits", "fp32", recipe=wild)
    assert result.status == "diverged"
    assert "loss became" in result.message
    assert 0.0 <= result.error <= 1.0


def test_same_seed_same_result_with_the_seeded_backend():
    a = train_cell("digits", CONFIG, recipe="tiny")
    b = train_cell("digits", CONFIG, recipe="tiny")
    assert a.error == b.error and a.final_loss == b.final_loss


def test_memory_matches_the_analytic_model():
    from peppp.memory import model_memory_mb
    from peppp.training.networks import build_network

    result = train_cell("digits", CONFIG, recipe="tiny")
    rec = get_recipe("tiny")
    model = build_network(rec.network, num_classes=10, in_channels=1, image_size=8, width=rec.width)
    expected = model_memory_mb(parse_config(CONFIG), model, classes=10, batch=rec.batch_size, input_shape=(1, 8, 8))
    assert result.memory_mb == pytest.approx(expected)


def test_recipes():
    assert RECIPES["paper"].network == "resnet18" and RECIPES["paper"].batch_size == 32
    assert RECIPES["paper"].lr == 0.001 and RECIPES["paper"].epochs == 10
    assert get_recipe("cpu").with_overrides(epochs=2).name == "cpu,epochs=2"
    assert get_recipe("cpu").with_overrides(seed=3).name == "cpu"
    with pytest.raises(PepppError, match="unknown recipe 'x'; choose one of paper, cpu, tiny"):
        get_recipe("x")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rounding": "up"}, "rounding 'up'"),
        ({"backend": "gpu"}, "backend 'gpu'"),
        ({"network": "vgg"}, "unknown network 'vgg'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(PepppError, match=message):
        train_cell("digits", CONFIG, recipe="tiny", **kwargs)


def test_cuda_graphs_need_a_gpu_and_the_fused_step():
    with pytest.raises(PepppError, match="CUDA graphs need a GPU"):
        train_cell("digits", CONFIG, recipe="tiny", device="cpu", cuda_graphs=True)


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="trains on a CUDA GPU; torch sees none here")


@needs_gpu
@pytest.mark.parametrize("graphs", [True, False])
def test_a_cell_on_the_gpu_keeps_the_formats_eager_or_replayed(graphs):
    trained = train_cell("digits", CONFIG, recipe="tiny", device="cuda", cuda_graphs=graphs, return_model=True)
    assert trained.result.status == "ok" and 0 <= trained.result.error <= 1
    low = parse_config(CONFIG).low
    for p in trained.model.parameters():
        assert p.is_cuda and torch.equal(quantize(p.data, low, rounding="nearest"), p.data)


@needs_gpu
def test_cells_in_threads_share_the_gpu():
    """Three cells at once in threads (each on its own stream, captures one at a time) all train."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda s: train_cell("digits", CONFIG, recipe="tiny", device="cuda", seed=s,
                                                     threads=None, epochs=3), [0, 1, 2]))
    assert [r.status for r in results] == ["ok"] * 3
    assert all(0 <= r.error <= 1 and math.isfinite(r.final_loss) for r in results)
