"""The Triton (GPU) kernels, tested on the CPU through the same source with TRITON_INTERPRET=1.

tests/conftest.py turns the interpreter on where torch sees no GPU; on a GPU machine the same tests run
the compiled kernels on CUDA tensors. The oracle for nearest rounding is qtorch 0.3.0 itself.
"""

import math

import pytest
import torch
from torch import nn

from peppp.formats import FP32Format, parse_config
from peppp.training.quant import quantize_function, torch_kernels, triton_kernels

if not triton_kernels.AVAILABLE:
    pytest.skip("triton is not installed (pip install triton; CUDA builds of torch ship it)", allow_module_level=True)
if not (torch.cuda.is_available() or triton_kernels.interpreted()):
    pytest.skip("no GPU and TRITON_INTERPRET is not 1 (tests/conftest.py sets it)", allow_module_level=True)

qq = pytest.importorskip("qtorch.quant")
# the interpreter computes with numpy, which warns on the NaN and infinite inputs these tests feed it
pytestmark = [pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]
DEVICE = "cuda" if torch.cuda.is_available() and not triton_kernels.interpreted() else "cpu"


def on_device(x: torch.Tensor) -> torch.Tensor:
    return x.to(DEVICE)


def edge_values() -> torch.Tensor:
    specials = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-45, 1e-40, -3e-39, 1.1754942e-38, 3.4e38,
                -3.4e38, 1.0, -1.0, 1.5, 2.5, -2.5, 0.75, 65504.0, 57344.0, 448.0, 6e-8, 1e-8, 0.1]
    return torch.tensor(specials, dtype=torch.float32)


def sample(n: int = 12_000, seed: int = 0) -> torch.Tensor:
    """Random magnitudes over 2^-140..2^40 (subnormals, normals, overflow), random bit patterns
    (NaN payloads included) and the edge values."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(n, generator=g) * torch.exp2(torch.randint(-140, 40, (n,), generator=g).float())
    bits = torch.randint(-(2**31), 2**31, (n // 4,), dtype=torch.int32, generator=g).view(torch.float32)
    return torch.cat([wide, bits, edge_values()])


def same_bits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.view(torch.int32) == b.view(torch.int32)


FLOAT_FORMATS = [(1, 1), (2, 1), (3, 1), (4, 3), (5, 2), (5, 10), (6, 7), (8, 7), (8, 1), (3, 20), (8, 22)]


@pytest.mark.parametrize("exp,man", FLOAT_FORMATS)
def test_float_nearest_is_bit_exact_with_qtorch(exp, man):
    x = sample()
    # ties: points of the grid one mantissa bit finer lie halfway between this format's points
    ties = qq.float_quantize(sample(4000, seed=1), exp, min(man + 1, 23), rounding="nearest")
    x = torch.cat([x, ties])
    got = triton_kernels.float_quantize(on_device(x), exp, man, stochastic=False).cpu()
    want = qq.float_quantize(x, exp, man, rounding="nearest")
    assert same_bits(got, want).all(), x[~same_bits(got, want)][:5]


@pytest.mark.parametrize("wl,fl", [(8, 6), (4, 2), (16, 8), (8, 1), (12, 11), (24, 12)])
def test_fixed_nearest_is_bit_exact_with_qtorch(wl, fl):
    x = torch.cat([sample(), torch.arange(-600, 600) / 2.0**fl / 2.0])  # halves of the grid: ties
    got = triton_kernels.fixed_point_quantize(on_device(x), wl, fl, stochastic=False).cpu()
    want = qq.fixed_point_quantize(x, wl, fl, rounding="nearest")
    ok = same_bits(got, want) | (got.isnan() & want.isnan())
    assert ok.all(), x[~ok][:5]


@pytest.mark.parametrize("wl", [2, 4, 8, 16, 22])
@pytest.mark.parametrize("dim", [-1, 0])
def test_block_nearest_is_bit_exact_with_qtorch(wl, dim):
    x = sample(12_000)[:12_000].view(60, 200)
    x = x.nan_to_num(0.0, 0.0, 0.0) if dim == 0 else x.nan_to_num(0.0)  # qtorch's per-row max ignores NaN differently
    x[3] = 0.0  # a block whose maximum is 0
    rows = 60 if dim == 0 else 1
    got = triton_kernels.block_quantize(on_device(x), wl, stochastic=False, rows=rows).cpu()
    want = qq.block_quantize(x, wl, dim, rounding="nearest")
    assert same_bits(got, want).all()


def test_block_segments_give_each_parameter_its_own_exponent():
    a, b = torch.randn(300) * 1e-3, torch.randn(500) * 1e3
    seg = torch.cat([torch.zeros(300), torch.ones(500)]).int()
    got = triton_kernels.block_quantize(on_device(torch.cat([a, b])), 8, stochastic=False, segments=on_device(seg), n_segments=2).cpu()
    want = torch.cat([qq.block_quantize(a, 8, -1, rounding="nearest"), qq.block_quantize(b, 8, -1, rounding="nearest")])
    assert same_bits(got, want).all()


def float_neighbours(x: torch.Tensor, exp: int, man: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The eXmY grid points just below and above x (float64, exact): spacing 2^(e - man) with e the
    exponent of x, never below the smallest normal's (the subnormal grid is uniform)."""
    xd = x.double()
    emin = 2 - 2 ** (exp - 1)
    e = (torch.frexp(xd).exponent - 1).clamp(min=emin).double()
    spacing = torch.exp2(e - man)
    lower = torch.floor(xd / spacing) * spacing
    return lower, lower + spacing


@pytest.mark.parametrize("exp,man", [(5, 2), (4, 3), (8, 7), (3, 1), (8, 22), (2, 5)])
def test_float_stochastic_returns_only_the_two_neighbours(exp, man):
    x = sample().nan_to_num(0.0, 0.0, 0.0)
    # below the format's largest value (and, for e8, below 2^127: qtorch's top exponent is float32's inf)
    largest = min((2 - 2.0**-man) * 2.0 ** (2 ** (exp - 1)), 2.0**127)
    x = x[x.abs() < largest]
    lower, upper = float_neighbours(x, exp, man)
    for seed in range(3):
        got = triton_kernels.float_quantize(on_device(x), exp, man, stochastic=True, seed=seed).cpu().double()
        ok = (got == lower) | (got == upper)
        assert ok.all(), (x[~ok][:5], got[~ok][:5], lower[~ok][:5])


def _stochastic_mean_check(q, value: float, lower: float, upper: float, n: int = 20_000):
    x = torch.full((n,), value)
    got = q(on_device(x)).cpu()
    assert set(got.unique().tolist()) <= {lower, upper}
    p = (value - lower) / (upper - lower)
    se = (upper - lower) * math.sqrt(p * (1 - p) / n)
    assert abs(got.double().mean().item() - value) <= 4 * se + 1e-12


@pytest.mark.parametrize(
    "exp,man,value,lower,upper",
    [
        (5, 2, 1.1, 1.0, 1.25),
        (4, 3, -0.3, -0.3125, -0.28125),
        (5, 2, 2.0**-15 * 0.3, 0.0, 2.0**-16),  # below the smallest normal: the fixed subnormal grid
        (8, 7, 1e-39, 10 * 2.0**-133, 11 * 2.0**-133),  # float32 subnormals on e8m7's grid
    ],
)
def test_float_stochastic_is_unbiased(exp, man, value, lower, upper):
    value = float(torch.tensor(value, dtype=torch.float32))
    seeds = iter(range(1000))
    _stochastic_mean_check(
        lambda x: triton_kernels.float_quantize(x, exp, man, stochastic=True, seed=next(seeds)), value, lower, upper
    )


def test_fixed_and_block_stochastic_are_unbiased():
    _stochastic_mean_check(lambda x: triton_kernels.fixed_point_quantize(x, 8, 4, stochastic=True, seed=3), 0.3, 0.25, 0.3125)
    # block: the maximum 1.0 sets the grid 2^(0 + 2 - 8) = 1/64 for every element
    def block(x):
        x = torch.cat([x, torch.ones(1, device=x.device)])
        return triton_kernels.block_quantize(x, 8, stochastic=True, seed=5)[:-1]

    _stochastic_mean_check(block, 0.3, 19 / 64, 20 / 64)


def test_stochastic_is_seedable():
    x = on_device(torch.randn(5000))
    a = triton_kernels.float_quantize(x, 5, 2, stochastic=True, seed=11)
    b = triton_kernels.float_quantize(x, 5, 2, stochastic=True, seed=11)
    c = triton_kernels.float_quantize(x, 5, 2, stochastic=True, seed=12)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_quantizer_seeds_come_from_torchs_generator():
    """Per call a fresh seed from a base drawn from torch's generator: manual_seed reproduces the sequence."""
    from peppp.training.quant import _TritonCall

    def draws():
        torch.manual_seed(0)
        call = _TritonCall(triton_kernels.ElementwiseSpec.float_(5, 2), True, None)
        return [call._next_seed() for _ in range(3)]

    first, second = draws(), draws()
    assert first == second and len(set(first)) == 3


@pytest.mark.parametrize("config", ["e4m3/e6m9", "e5m2/e8m7", "fixed8.6/e8m7", "e3m1/fixed16.8", "e5m2/fp32"])
def test_fused_sgd_step_equals_qtorch_optimlp(config):
    """Four steps of the one-kernel step against OptimLP over torch's SGD (nearest): bit for bit where
    the high format quantizes; with an fp32 high format to float32 rounding (torch's CPU SGD may use
    fused multiply-adds, the kernel does not)."""
    from qtorch.optim import OptimLP

    from peppp.training.lp_sgd import LowPrecisionSGD

    cfg = parse_config(config)
    torch.manual_seed(0)
    shapes = [(30, 20), (7,), (5, 3, 3, 3)]
    w0 = [torch.randn(s) for s in shapes]
    ref_params = [nn.Parameter(w.clone()) for w in w0]
    params = [nn.Parameter(on_device(w.clone())) for w in w0]
    low, high = quantize_function(cfg.low, rounding="nearest"), quantize_function(cfg.high, rounding="nearest")
    ref = OptimLP(torch.optim.SGD(ref_params, lr=0.1, momentum=0.9, weight_decay=5e-4), weight_quant=low,
                  grad_quant=low, momentum_quant=high, acc_quant=high, grad_scaling=1e-3)
    opt = LowPrecisionSGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, low=cfg.low, high=cfg.high,
                          rounding="nearest", grad_scale=1e-3, fused=True)
    for _ in range(4):
        grads = [torch.randn(s) * 1000 for s in shapes]
        for p, g in zip(ref_params, grads):
            p.grad = g.clone()
        opt.zero_grad()
        for p, g in zip(params, grads):
            p.grad.add_(on_device(g))
        ref.step()
        opt.step()
    exact = not isinstance(cfg.high, FP32Format)
    check = torch.equal if exact else (lambda a, b: torch.allclose(a, b, rtol=1e-6, atol=1e-6))
    for a, b in zip(ref_params, params):
        assert check(a.detach(), b.detach().cpu())
        assert check(ref.weight_acc[a], opt.weight_acc[b].cpu())
        assert check(ref.optim.state[a]["momentum_buffer"], opt.state[b]["momentum_buffer"].cpu())


def test_fused_stochastic_step_keeps_every_buffer_on_its_grid():
    from peppp.training.lp_sgd import LowPrecisionSGD

    cfg = parse_config("e5m2/e8m7")
    params = [nn.Parameter(on_device(torch.randn(4000)))]
    opt = LowPrecisionSGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4, low=cfg.low, high=cfg.high,
                          grad_scale=1e-3, fused=True)
    for _ in range(3):
        opt.zero_grad()
        params[0].grad.add_(on_device(torch.randn(4000) * 1000))
        opt.step()

    def on_grid(t, fmt):
        return torch.equal(quantize_function(fmt, rounding="nearest")(t.cpu()), t.cpu())

    assert on_grid(params[0].detach(), cfg.low) and on_grid(opt.acc, cfg.high) and on_grid(opt.momentum_buffer, cfg.high)


def test_fused_step_is_refused_for_block_formats():
    from peppp.errors import PepppError
    from peppp.training.lp_sgd import LowPrecisionSGD

    cfg = parse_config("block8/e8m7")
    with pytest.raises(PepppError, match="fused"):
        LowPrecisionSGD([nn.Parameter(torch.randn(3))], lr=0.1, low=cfg.low, high=cfg.high, fused=True)


def test_device_counter_changes_the_draws_without_a_new_host_seed():
    """What a CUDA graph replays: the same launch arguments, a counter on the device that moves on."""
    x = on_device(torch.randn(5000))
    counter = on_device(torch.zeros((), dtype=torch.int64))
    seed = triton_kernels.next_seed(123, 1)
    with triton_kernels.device_counter(counter):
        a = triton_kernels.float_quantize(x, 5, 2, stochastic=True, seed=seed)
        counter.add_(1)
        b = triton_kernels.float_quantize(x, 5, 2, stochastic=True, seed=seed)
        counter.sub_(1)
        c = triton_kernels.float_quantize(x, 5, 2, stochastic=True, seed=seed)
    assert triton_kernels.active_counter() is None
    assert not torch.equal(a, b) and torch.equal(a, c)
    assert seed >= 2**62  # always an int64 launch argument: no second compilation for small seeds


def test_fused_step_reads_the_learning_rate_from_the_device_when_asked():
    from peppp.training.lp_sgd import LowPrecisionSGD

    cfg = parse_config("e5m2/e8m7")
    p = nn.Parameter(on_device(torch.ones(100)))
    opt = LowPrecisionSGD([p], lr=0.5, low=cfg.low, high=cfg.high, rounding="nearest", fused=True)
    opt.use_lr_tensor()
    opt.param_groups[0]["lr"] = 0.25  # a scheduler's change, synced before the step
    opt.zero_grad()
    p.grad.fill_(1.0)
    opt.step()
    assert torch.equal(p.detach().cpu(), torch.full((100,), 0.75))
