"""Quantizer modules (values forward, gradients backward) and the low-precision optimizer."""

import pytest
import torch
from torch import nn

from peppp.errors import PepppError
from peppp.formats import FP32, FloatFormat, parse_config
from peppp.training.quant import quantize
from peppp.training.quantizers import Quantizer, make_optimizer, make_quantizer_factory

E5M2 = FloatFormat(5, 2)


def on_grid(t: torch.Tensor, fmt) -> bool:
    return torch.equal(quantize(t.detach(), fmt, rounding="nearest"), t.detach())


@pytest.mark.parametrize("backend", ["fast", "torch", "qtorch"])
def test_forward_quantizes_values_and_backward_quantizes_gradients(backend):
    q = Quantizer(E5M2, E5M2, rounding="nearest", backend=backend)
    x = torch.tensor([1.1, 1.3, 2.6], requires_grad=True)
    y = q(x)
    assert y.tolist() == [1.0, 1.25, 2.5]
    y.backward(torch.tensor([0.1, 1.1, 3.3]))
    assert x.grad.tolist() == [0.09375, 1.0, 3.5]


def test_backward_format_can_differ_from_forward():
    x = torch.tensor([1.1, 1.3], requires_grad=True)
    Quantizer(E5M2, FP32, rounding="nearest")(x).backward(torch.tensor([0.1, 1.1]))
    assert torch.equal(x.grad, torch.tensor([0.1, 1.1]))
    x.grad = None
    y = Quantizer(FP32, "e4m3", rounding="nearest")(x)
    assert torch.equal(y, x.detach())
    y.backward(torch.tensor([0.1, 1.1]))
    assert x.grad.tolist() == [0.1015625, 1.125]


def test_stochastic_quantizer_rounds_gradients_to_the_grid_and_is_seeded():
    q = Quantizer("e4m3", "e5m2")
    x = torch.randn(1000, requires_grad=True)
    g = torch.randn(1000)
    torch.manual_seed(0)
    y = q(x)
    y.backward(g)
    first = (y.detach().clone(), x.grad.clone())
    assert on_grid(y, FloatFormat(4, 3)) and on_grid(x.grad, E5M2)
    x.grad = None
    torch.manual_seed(0)
    y = q(x)
    y.backward(g)
    assert torch.equal(first[0], y.detach()) and torch.equal(first[1], x.grad)


def test_quantizer_pickles_and_copies():
    import copy
    import pickle

    q = Quantizer("e4m3", "e5m2", rounding="nearest")
    x = torch.tensor([1.1, 1.3])
    for clone in (pickle.loads(pickle.dumps(q)), copy.deepcopy(q)):
        assert clone.forward_fmt == q.forward_fmt and clone.backward_fmt == q.backward_fmt
        assert torch.equal(clone(x), q(x))
    assert "forward=e4m3, backward=e5m2" in repr(q)


def test_fp32_quantizer_is_the_identity():
    x = torch.randn(5, requires_grad=True)
    assert Quantizer(FP32, FP32)(x) is x


def test_factory_makes_fresh_modules_and_rejects_bad_input_early():
    factory = make_quantizer_factory("e5m2", rounding="nearest")
    a, b = factory(), factory()
    assert isinstance(a, Quantizer) and a is not b
    assert a.forward_fmt == a.backward_fmt == E5M2 and a.rounding == "nearest"
    with pytest.raises(PepppError):
        make_quantizer_factory("e9m2")
    with pytest.raises(PepppError):
        make_quantizer_factory("e5m2", rounding="up")
    with pytest.raises(PepppError):
        make_quantizer_factory("e5m2", backend="gpu")


def test_fp32_config_gives_plain_sgd():
    params = [nn.Parameter(torch.randn(3))]
    opt = make_optimizer(params, config="fp32", lr=0.1, loss_scale=1000.0)
    assert type(opt) is torch.optim.SGD


def test_low_precision_step_quantizes_weights_gradients_momentum_and_accumulator():
    # one step by hand: grad -> low(grad / scale); acc -> high(acc - lr * (grad + wd * acc)); w -> low(acc)
    torch.manual_seed(0)
    w0 = torch.randn(200)
    p = nn.Parameter(w0.clone())
    cfg = parse_config("e4m3/e6m9")
    opt = make_optimizer([p], config=cfg, lr=0.1, momentum=0.9, weight_decay=5e-4, rounding="nearest", loss_scale=1000.0)
    inner = getattr(opt, "optim", opt)  # OptimLP wraps SGD; LowPrecisionSGD is one
    assert inner.param_groups[0]["lr"] == 0.1
    g = torch.randn(200)
    p.grad = g * 1000.0
    opt.step()
    low, high = cfg.low, cfg.high
    grad = quantize(g * 1000.0 * (1 / 1000.0), low, rounding="nearest")
    buf = grad + 5e-4 * w0
    acc = quantize(w0 - 0.1 * buf, high, rounding="nearest")
    assert torch.equal(p.detach(), quantize(acc, low, rounding="nearest"))
    assert torch.equal(opt.weight_acc[p], acc)
    assert torch.equal(inner.state[p]["momentum_buffer"], quantize(buf, high, rounding="nearest"))
    assert on_grid(p, low) and on_grid(inner.state[p]["momentum_buffer"], high)


def test_optimizer_rejects_bad_settings():
    params = [nn.Parameter(torch.randn(3))]
    with pytest.raises(PepppError):
        make_optimizer(params, config="e5m2/e8m7", lr=0.1, loss_scale=0.0)
    with pytest.raises(PepppError):
        make_optimizer(params, config="e5m2/e8m7", lr=0.1, rounding="even")
    with pytest.raises(PepppError):
        make_optimizer(params, config="e5m2", lr=0.1)


@pytest.mark.parametrize("backend", ["fast", "qtorch"])
def test_quantized_training_steps_keep_everything_on_the_grids(backend):
    from peppp.training.networks import build_network

    cfg = parse_config("e5m2/e8m7")
    torch.manual_seed(1)
    model = build_network(
        "convnet4",
        num_classes=4,
        in_channels=1,
        image_size=8,
        width=4,
        act_quant=make_quantizer_factory(cfg.low, backend=backend),
        io_quant=make_quantizer_factory(cfg.high, backend=backend),
    )
    opt = make_optimizer(model.parameters(), config=cfg, lr=0.05, backend=backend, loss_scale=1000.0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 4, (32,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        (loss * 1000.0).backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    for p in model.parameters():
        assert on_grid(p, cfg.low)
        assert on_grid(getattr(opt, "optim", opt).state[p]["momentum_buffer"], cfg.high)
    assert on_grid(model(x), cfg.high)
