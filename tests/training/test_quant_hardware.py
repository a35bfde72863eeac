"""The hardware floats (fp8, bf16, fp16) and OCP MX formats, against well-kept libraries.

Oracles: ml_dtypes' casts (round half to even) after clipping to the format's range (our rounding
saturates; ml_dtypes overflows to NaN or inf) for the elements, a block reference built on ml_dtypes as
issue 13 states the MX rule, and torchao's MX reference (`to_mx` / `to_dtype`, FLOOR scaling) where it
installs. The pure-torch kernels are checked on 1e6 values; the Triton ones (interpreted without a GPU)
on fewer, since the interpreter is slow.
"""

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from peppp.formats import ELEMENT_FORMATS, MX_NAMES, HardwareFloatFormat, MXFormat, parse_config, parse_format
from peppp.training.lp_sgd import LowPrecisionSGD
from peppp.training.quant import quantize_function, torch_kernels, triton_kernels

pytestmark = [pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]

ML_DTYPES = {
    "e4m3": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16,
    "e2m3": ml_dtypes.float6_e2m3fn,
    "e3m2": ml_dtypes.float6_e3m2fn,
    "e2m1": ml_dtypes.float4_e2m1fn,
}
HARDWARE = {"fp8.e4m3": "e4m3", "fp8.e5m2": "e5m2", "bf16": "bf16", "fp16": "fp16"}
TRITON = triton_kernels.AVAILABLE and (torch.cuda.is_available() or triton_kernels.interpreted())
DEVICE = "cuda" if torch.cuda.is_available() and not triton_kernels.interpreted() else "cpu"


def representable(element: str) -> np.ndarray:
    """Every finite value of the element format, from its bit patterns."""
    dt = ML_DTYPES[element]
    width = np.uint16 if np.dtype(dt).itemsize == 2 else np.uint8
    bits = ELEMENT_FORMATS[element].bits
    values = np.arange(2**bits, dtype=width).view(dt).astype(np.float32)
    return np.unique(values[np.isfinite(values)])


def element_sample(element: str, n: int, seed: int = 0) -> np.ndarray:
    """n random float32 values spanning the format (from below its smallest subnormal to past its
    largest value), every representable value, the midpoints between neighbours (ties) and their float32
    neighbours, and zeros, infinities, NaN, float32 subnormals."""
    el = ELEMENT_FORMATS[element]
    rng = np.random.default_rng(seed)
    low, high = el.emin - el.man - 3, math.log2(el.max_value) + 2
    wide = np.exp2(rng.uniform(low, high, n)) * rng.choice([-1.0, 1.0], n)
    grid = representable(element)
    grid = grid[grid >= 0]
    mids = ((grid[1:].astype(np.float64) + grid[:-1]) / 2).astype(np.float32)
    mids = np.concatenate([mids, [el.max_value * (1 + 2.0**-el.man / 2)]]).astype(np.float32)  # the tie past max
    near = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(0))])
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, 3.4e38, -3.4e38], np.float32)
    both = np.concatenate([grid, mids, near])
    return np.concatenate([wide.astype(np.float32), both, -both, specials]).astype(np.float32)


def reference_element(x: np.ndarray, element: str) -> np.ndarray:
    """ml_dtypes' rounding after saturation; NaN stays NaN."""
    el = ELEMENT_FORMATS[element]
    if element == "int8":  # 1.6 fixed point: numpy's round is half to even
        return np.clip(np.round(x.astype(np.float64) * 64) / 64, el.min_value, el.max_value).astype(np.float32)
    clipped = np.clip(x, el.min_value, el.max_value)
    out = clipped.astype(ML_DTYPES[element]).astype(np.float32)
    return np.where(np.isnan(x), np.float32(np.nan), out)


def reference_mx(x: np.ndarray, fmt: MXFormat) -> np.ndarray:
    """The MX rule of issue 13 on ml_dtypes: blocks of 32 along the last axis (shorter tail), shared
    exponent floor(log2 max|v|) - emax clamped to -127..127, elements = saturating rounding of v / 2^s."""
    el = fmt.element
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    for start in range(0, rows.shape[1], 32):
        block = rows[:, start : start + 32]
        mags = np.where(np.isnan(block), 0, np.minimum(np.abs(block), np.finfo(np.float32).max))
        amax = mags.max(axis=1, keepdims=True).astype(np.float64)
        _, e = np.frexp(amax)  # amax = m * 2^e with 0.5 <= m < 1: floor(log2 amax) = e - 1
        shared = np.where(amax > 0, e - 1 - el.emax, -127).clip(-127, 127)
        scaled = np.ldexp(block.astype(np.float64), -shared).astype(np.float32)
        elements = reference_element(scaled, el.name).astype(np.float64)
        out[:, start : start + 32] = np.ldexp(elements, shared).astype(np.float32)
    return out.reshape(x.shape)


def assert_same(got: torch.Tensor, want: np.ndarray, x: np.ndarray) -> None:
    got = got.cpu().numpy()
    nan = np.isnan(x)
    assert np.isnan(got[nan]).all(), "NaN must stay NaN"
    differ = (got.view(np.int32) != want.view(np.int32)) & ~nan
    assert not differ.any(), f"{differ.sum()} of {x.size} differ, e.g. x={x[differ][:5]} got={got[differ][:5]} want={want[differ][:5]}"


@pytest.mark.parametrize("element", sorted(ML_DTYPES))
def test_element_nearest_is_bit_exact_with_ml_dtypes(element):
    x = element_sample(element, 1_000_000)
    el = ELEMENT_FORMATS[element]
    got = torch_kernels.hardware_float_quantize(torch.from_numpy(x), man=el.man, emin=el.emin,
                                                max_value=el.max_value, min_value=el.min_value)
    assert_same(got, reference_element(x, element), x)


@pytest.mark.parametrize("name", sorted(HARDWARE))
def test_hardware_float_nearest_through_quantize_function(name):
    x = element_sample(HARDWARE[name], 1_000_000, seed=1)
    got = quantize_function(name, rounding="nearest")(torch.from_numpy(x))
    assert_same(got, reference_element(x, HARDWARE[name]), x)


def test_saturation_and_specials():
    q = quantize_function("fp8.e4m3", rounding="nearest")
    x = torch.tensor([464.0, 465.0, 1e30, -math.inf, math.nan, -0.0, 2.0**-10, -(2.0**-10) * 1.5])
    got = q(x)
    assert got[:4].tolist() == [448.0, 448.0, 448.0, -448.0]
    assert math.isnan(got[4]) and math.copysign(1, got[5]) == -1
    assert got[6] == 0.0 and got[7] == -(2.0**-9)  # 2^-10 ties to 0 (even); 1.5 * 2^-10 rounds to 2^-9
    assert quantize_function("fp8.e5m2", rounding="nearest")(torch.tensor([1e9]))[0] == 57344.0


def mx_sample(n_rows: int, row: int, seed: int = 0) -> np.ndarray:
    """Rows of `row` values whose blocks have magnitudes from 2^-150 to 2^127 (so the scale clamps at both
    ends), with special blocks: all zeros, float32 subnormals only, one NaN, an infinity, ties."""
    rng = np.random.default_rng(seed)
    scale = np.exp2(rng.uniform(-150, 127, (n_rows, 1)))
    x = (rng.standard_normal((n_rows, row)) * scale).astype(np.float32)
    x[0, :] = 0.0
    x[1, :] = (rng.standard_normal(row) * 1e-42).astype(np.float32)
    x[2, 3] = np.nan
    x[3, 5] = -np.inf
    x[4, :] = np.float32(1.25) * rng.choice([-1, 1], row)  # a tie for the FP4 element at scale 2^-2
    x[5, 0], x[5, 1:] = 6.0, 0.75  # 0.75: the tie between 0.5 and 1.0 of E2M1
    return x


@pytest.mark.parametrize("name", MX_NAMES)
def test_mx_nearest_is_bit_exact_with_the_ml_dtypes_block_reference(name):
    fmt = parse_format(name)
    x = mx_sample(10_000, 100)  # 1e6 values; 100 = three blocks of 32 and a tail of 4
    got = quantize_function(fmt, rounding="nearest")(torch.from_numpy(x))
    assert_same(got, reference_mx(x, fmt), x)


@pytest.mark.parametrize("name", MX_NAMES)
def test_mx_blocks_run_along_the_last_dimension(name):
    x = mx_sample(8, 64, seed=3).reshape(2, 4, 64)
    q = quantize_function(name, rounding="nearest")
    got = q(torch.from_numpy(x))
    for i in range(2):
        for j in range(4):
            assert torch.equal(got[i, j].view(torch.int32), q(torch.from_numpy(x[i, j]).clone()).view(torch.int32))
    # a tensor of one value per row: each value is its own block
    col = torch.from_numpy(x[0, :, :1].copy())
    assert torch.equal(q(col).view(torch.int32), q(col.reshape(-1)[:, None].clone()).view(torch.int32))


TORCHAO_ELEMENTS = {"mxfp8.e4m3": "float8_e4m3fn", "mxfp8.e5m2": "float8_e5m2", "mxfp6.e2m3": "fp6_e2m3",
                    "mxfp6.e3m2": "fp6_e3m2", "mxfp4.e2m1": "float4_e2m1fn_x2"}


@pytest.mark.parametrize("name", sorted(TORCHAO_ELEMENTS))
def test_mx_nearest_is_bit_exact_with_torchao(name):
    mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor", reason="torchao does not install here")
    constants = pytest.importorskip("torchao.prototype.mx_formats.constants")
    key = TORCHAO_ELEMENTS[name]
    elem = getattr(torch, key) if hasattr(torch, key) else getattr(constants, f"DTYPE_{key.upper()}")
    # torchao takes whole blocks, gives NaN scales for NaN blocks, and (a workaround it documents)
    # divides by 2^-126 where the scale is E8M0's smallest, 2^-127: finite values, 32-multiples, and
    # blocks above that clamp; ties and zeros of mx_sample's special rows kept
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3125, 320)) * np.exp2(rng.uniform(-100, 120, (3125, 1)))).astype(np.float32)
    x[:4] = mx_sample(6, 320, seed=5)[[0, 3, 4, 5]]
    x[1] = np.nan_to_num(x[1], neginf=-3.0e38)
    t = torch.from_numpy(x)
    scale, data = mx.to_mx(t, elem, 32)
    want = mx.to_dtype(data, scale, elem, 32, torch.float32)
    got = quantize_function(name, rounding="nearest")(t)
    assert_same(got, want.numpy(), x)


@pytest.mark.parametrize("name", ["fp8.e4m3", "bf16", "mxfp4.e2m1", "mxint8", "mxfp6.e3m2"])
def test_stochastic_is_unbiased_seedable_and_between_neighbours(name):
    fmt = parse_format(name)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, generator=g) * (3.0 if isinstance(fmt, MXFormat) else 300.0)
    near = quantize_function(fmt, rounding="nearest")
    draws = torch.stack([quantize_function(fmt, rounding="stochastic", seed=s)(x) for s in range(2000)])
    assert torch.equal(quantize_function(fmt, rounding="stochastic", seed=3)(x), draws[3])
    assert not torch.equal(draws[0], draws[1])
    # each draw is a neighbour: at most one grid step from the nearest value
    lo, hi = draws.min(dim=0).values, draws.max(dim=0).values
    assert bool(((lo <= x) | (lo == near(x))).all() and ((hi >= x) | (hi == near(x))).all())
    spread = (hi - lo).clamp(min=1e-30)
    inside = (x > lo) & (x < hi)
    err = (draws.double().mean(0) - x.double()).abs()[inside] / spread.double()[inside]
    assert inside.any() and float(err.max()) < 0.05  # 2000 draws: 4.5 standard errors of a fair coin


def test_mx_zero_block_and_empty():
    q = quantize_function("mxfp4.e2m1", rounding="nearest")
    assert torch.equal(q(torch.zeros(3, 40)), torch.zeros(3, 40))
    assert q(torch.zeros(0, 32)).shape == (0, 32)


def test_qtorch_backend_is_refused_for_hardware_formats():
    from peppp.errors import PepppError

    with pytest.raises(PepppError, match="qtorch has no mxfp4.e2m1"):
        quantize_function("mxfp4.e2m1", backend="qtorch")


@pytest.mark.skipif(not TRITON, reason="no Triton, or no GPU and TRITON_INTERPRET is not 1 (tests/conftest.py sets it)")
@pytest.mark.parametrize("name", ["fp8.e4m3", "fp8.e5m2", "bf16", "fp16", *MX_NAMES])
def test_triton_nearest_is_bit_exact_with_the_references(name):
    fmt = parse_format(name)
    el = fmt.element
    spec = triton_kernels.ElementwiseSpec.element(el.man, el.emin, el.max_value, el.min_value)
    if isinstance(fmt, MXFormat):
        x = mx_sample(600, 100, seed=11)
        got = triton_kernels.mx_quantize(torch.from_numpy(x).to(DEVICE), spec, el.emax, stochastic=False)
        assert_same(got, reference_mx(x, fmt), x)
    else:
        x = element_sample(el.name, 40_000, seed=11)
        got = triton_kernels.elementwise_quantize(torch.from_numpy(x).to(DEVICE), spec, stochastic=False)
        assert_same(got, reference_element(x, el.name), x)


@pytest.mark.skipif(not TRITON, reason="no Triton, or no GPU and TRITON_INTERPRET is not 1 (tests/conftest.py sets it)")
@pytest.mark.parametrize("name", ["bf16", "mxfp4.e2m1"])
def test_triton_stochastic_is_seedable_and_unbiased(name):
    fmt = parse_format(name)
    el = fmt.element
    spec = triton_kernels.ElementwiseSpec.element(el.man, el.emin, el.max_value, el.min_value)
    x = torch.full((64, 64), 0.3).to(DEVICE)
    x[:, 0] = 4.0  # MX: scale 2^0 for E2M1, so 0.3 lies between 0 and 0.5
    if isinstance(fmt, MXFormat):
        run = lambda seed: triton_kernels.mx_quantize(x, spec, el.emax, stochastic=True, seed=seed)  # noqa: E731
    else:
        run = lambda seed: triton_kernels.elementwise_quantize(x, spec, stochastic=True, seed=seed)  # noqa: E731
    a, b = run(5), run(5)
    assert torch.equal(a, b) and not torch.equal(a, run(6))
    mean = a[:, 1:].double().mean().item()
    assert abs(mean - 0.3) < 0.03


def test_optimizer_applies_mx_per_parameter_with_its_shape():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 40)), torch.nn.Parameter(torch.randn(7))]
    opt = LowPrecisionSGD(params, lr=0.1, momentum=0.0, low=parse_format("mxfp4.e2m1"), high=parse_format("fp32"),
                          rounding="nearest")
    for p in params:
        p.grad = torch.randn_like(p)
    acc = [opt.weight_acc[p].clone() for p in params]
    grads = [quantize_function("mxfp4.e2m1", rounding="nearest")(p.grad.clone()) for p in params]
    opt.step()
    q = quantize_function("mxfp4.e2m1", rounding="nearest")
    for p, a, g in zip(params, acc, grads):
        assert torch.equal(p.detach(), q(a.add(g, alpha=-0.1)))


@pytest.mark.skipif(not TRITON, reason="no Triton, or no GPU and TRITON_INTERPRET is not 1 (tests/conftest.py sets it)")
def test_fused_step_with_hardware_floats_matches_the_unfused_one():
    torch.manual_seed(1)
    shapes = [(6, 9), (13,)]
    results = []
    for fused in (False, True):
        params = [torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i)).to(DEVICE)) for i, s in enumerate(shapes)]
        opt = LowPrecisionSGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3, low=parse_format("fp8.e4m3"),
                              high=parse_format("bf16"),
                              rounding="nearest", fused=fused)
        for step in range(3):
            for i, p in enumerate(params):
                p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(10 * step + i)).to(DEVICE)
            opt.step()
        results.append([p.detach().cpu().clone() for p in params])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_configurations_with_hardware_formats():
    cfg = parse_config("mxfp4.e2m1/bf16")
    assert cfg.low == MXFormat("mxfp4.e2m1") and cfg.high == HardwareFloatFormat("bf16")
    assert cfg.low_bits == 4.25 and cfg.high_bits == 16
