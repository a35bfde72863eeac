"""Quantization kernels: bit-exact against qtorch for nearest rounding, unbiased neighbours for stochastic."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from peppp.errors import PepppError
from peppp.formats import FP32, BlockFormat, FixedFormat, FloatFormat, parse_format
from peppp.training.quant import (
    block_quantize,
    extension_available,
    fixed_point_quantize,
    float_quantize,
    quantize,
    quantize_function,
    torch_kernels,
)
from peppp.training.quant._extension import load_extension

qq = pytest.importorskip("qtorch.quant")

PAPER_FORMATS = [(3, 1), (3, 2), (3, 3), (3, 4), (4, 1), (4, 2), (4, 3), (4, 4), (5, 1), (5, 2), (5, 3)] + [
    (e, m) for e in (6, 7, 8) for m in (7, 9, 11)
]
ALL_FORMATS = [(e, m) for e in range(1, 9) for m in range(1, 23)]


def mixed_values(n: int, seed: int = 0) -> torch.Tensor:
    """Normal values over every float32 scale, float32 subnormals, random bit patterns (NaN payloads
    included), and the special values."""
    g = torch.Generator().manual_seed(seed)
    scales = [1e-45, 1e-40, 1e-38, 1e-30, 1e-20, 1e-10, 1e-7, 1e-5, 1e-3, 0.1, 1, 10, 1e3, 1e5, 1e7, 1e20, 1e38]
    parts = [torch.randn(n // (len(scales) + 2), generator=g) * s for s in scales]
    parts.append(torch.randint(-(2**31), 2**31 - 1, (n // (len(scales) + 2),), generator=g, dtype=torch.int32).view(torch.float32))
    special = [0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 3.4e38, -3.4e38, 1.125, -1.125, 1.0, 2.5, -2.5]
    parts.append(torch.tensor(special, dtype=torch.float32))
    return torch.cat(parts)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def isa_levels():
    """The instruction-set caps of the compiled kernels that give distinct code paths on this CPU."""
    ext = load_extension()
    if ext is None:
        return []
    names = {}
    for cap in (2, 1, 0):
        ext.set_isa(cap)
        names.setdefault(ext.isa(), cap)
    ext.set_isa(2)
    return list(names.items())


@pytest.fixture
def ext():
    module = load_extension()
    if module is None:
        pytest.skip("the C++ kernels could not be built here")
    yield module
    module.set_isa(2)


def test_the_extension_builds_here():
    # CI has a compiler: the fast path must really be compiled, not silently fall back.
    assert extension_available()


@pytest.mark.parametrize("exp,man", PAPER_FORMATS)
def test_nearest_matches_qtorch_bit_for_bit_on_paper_formats(exp, man):
    x = mixed_values(100_000, seed=exp * 100 + man)
    want = bits(qq.float_quantize(x, exp, man, rounding="nearest"))
    assert torch.equal(bits(float_quantize(x, exp, man, "nearest")), want)
    assert torch.equal(bits(float_quantize(x, exp, man, "nearest", backend="torch")), want)


def test_nearest_matches_qtorch_on_every_format_and_instruction_set(ext):
    x = mixed_values(6_000, seed=1)
    levels = isa_levels()
    assert levels, "at least the scalar kernel exists"
    for exp, man in ALL_FORMATS:
        want = bits(qq.float_quantize(x, exp, man, rounding="nearest"))
        for name, cap in levels:
            ext.set_isa(cap)
            got = bits(float_quantize(x, exp, man, "nearest"))
            assert torch.equal(got, want), f"e{exp}m{man} on {name}"
        ext.set_isa(2)
        assert torch.equal(bits(torch_kernels.float_quantize_nearest(x, exp, man)), want), f"e{exp}m{man} torch"


def test_qtorch_quirks_are_kept():
    x = torch.tensor([1.125, -1.125, 60000.0, 200000.0, math.inf, -math.inf, math.nan, -0.0, 1e-5, 1e-8])
    got = float_quantize(x, 5, 2, "nearest").tolist()
    # ties away from zero, top exponent is a number (max 114688), saturation, NaN -> +max, -0 -> +0
    assert got[:7] == [1.25, -1.25, 57344.0, 114688.0, 114688.0, -114688.0, 114688.0]
    assert bits(float_quantize(x[7:8], 5, 2, "nearest")).item() == 0
    assert got[8:] == [2.0**-16, 0.0]
    # exp == 8 keeps inf and NaN
    e8 = float_quantize(torch.tensor([math.inf, math.nan, 3.4e38]), 8, 7, "nearest")
    assert e8[0].item() == math.inf and math.isnan(e8[1].item()) and e8[2].item() == math.inf


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_e8m23_keeps_every_float32_value(rounding):
    # qtorch shifts by -1 here (undefined; it flips the sign); we keep the value instead.
    x = mixed_values(20_000, seed=2)
    x = x[~torch.isnan(x) & (x != 0)]
    for backend in ("fast", "torch"):
        assert torch.equal(bits(float_quantize(x, 8, 23, rounding, backend=backend)), bits(x))


def neighbours(x: np.ndarray, exp: int, man: int) -> tuple[np.ndarray, np.ndarray]:
    """The representable eXmY values just below and just above each finite x (float64, exact).

    qtorch's top exponent is a normal one, so past the largest value everything saturates to it; for
    exp == 8 that exponent is float32's inf/NaN exponent, and rounding past the largest value gives inf.
    """
    min_exp = 2 - 2 ** (exp - 1)
    if exp == 8:
        max_value = 2.0**127 * (2 - 2.0**-man)
        _, e = np.frexp(np.abs(x.astype(np.float64)))
        spacing = np.exp2(np.maximum(e - 1, min_exp) - man)
        low = np.floor(x / spacing) * spacing
        high = np.where(low == x, low, low + spacing)
        overflow = lambda v: np.where(np.abs(v) > max_value, np.copysign(np.inf, v), v)  # noqa: E731
        return overflow(low), overflow(high)
    max_value = 2.0 ** (2 ** (exp - 1)) * (2 - 2.0**-man)
    _, e = np.frexp(np.abs(x.astype(np.float64)))  # |x| = m * 2^e, 0.5 <= m < 1
    spacing = np.exp2(np.maximum(e - 1, min_exp) - man)
    low = np.floor(x / spacing) * spacing
    high = np.where(low == x, low, low + spacing)
    return np.clip(low, -max_value, max_value), np.clip(high, -max_value, max_value)


@pytest.mark.parametrize("exp,man", [(3, 1), (4, 3), (5, 2), (5, 3), (6, 9), (8, 7), (8, 11), (2, 5), (1, 1), (8, 22)])
@pytest.mark.parametrize("backend", ["fast", "torch"])
def test_stochastic_returns_only_the_two_neighbours(exp, man, backend):
    x = mixed_values(50_000, seed=exp + man)
    x = x[torch.isfinite(x)]
    got = float_quantize(x, exp, man, "stochastic", backend=backend).double().numpy()
    low, high = neighbours(x.numpy(), exp, man)
    ok = (got == low) | (got == high)
    assert ok.all(), f"{x[~torch.from_numpy(ok)][:5]} -> {got[~ok][:5]}"


def test_stochastic_is_the_same_on_every_instruction_set_thread_count_and_size(ext):
    x = mixed_values(50_003, seed=3)
    results = []
    for _, cap in isa_levels():
        ext.set_isa(cap)
        results.append(bits(float_quantize(x, 5, 2, "stochastic", seed=11)))
    ext.set_isa(2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        results.append(bits(float_quantize(x, 5, 2, "stochastic", seed=11)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results)
    # a value's random word depends on its index only: a prefix rounds the same way
    assert torch.equal(bits(float_quantize(x[:1237], 5, 2, "stochastic", seed=11)), results[0][:1237])


@pytest.mark.parametrize("backend", ["fast", "torch"])
def test_stochastic_is_reproducible_under_manual_seed(backend):
    x = torch.randn(10_000)
    torch.manual_seed(5)
    a = float_quantize(x, 4, 3, "stochastic", backend=backend)
    b = float_quantize(x, 4, 3, "stochastic", backend=backend)
    torch.manual_seed(5)
    c = float_quantize(x, 4, 3, "stochastic", backend=backend)
    assert torch.equal(a, c)
    assert not torch.equal(a, b)  # each call draws fresh random words


@pytest.mark.parametrize(
    "exp,man,value",
    [(5, 2, 1.1), (5, 2, -1.1), (5, 2, 3e-5), (5, 2, -1e-7), (4, 3, 0.0123), (8, 7, 1e-39), (3, 1, 0.3), (5, 2, 100_000.0)],
)
@pytest.mark.parametrize("backend", ["fast", "torch"])
def test_stochastic_is_unbiased(exp, man, value, backend):
    n = 1_000_000
    x = torch.full((n,), value)
    got = float_quantize(x, exp, man, "stochastic", backend=backend).double()
    low, high = (float(v[0]) for v in neighbours(x[:1].numpy(), exp, man))
    p = (float(x[0]) - low) / (high - low)
    assert set(got.unique().tolist()) <= {low, high}
    stderr = (high - low) * math.sqrt(p * (1 - p) / n)
    assert abs(got.mean().item() - float(x[0])) < 5 * stderr


def test_stochastic_random_words_look_uniform():
    # the fraction of values rounded up follows the dropped fraction over its whole range
    n = 400_000
    frac = torch.rand(n, generator=torch.Generator().manual_seed(4))
    x = 1.0 + frac * 0.25  # e5m2 spacing at 1 is 0.25
    up = (float_quantize(x, 5, 2, "stochastic", seed=9) > 1.0).double()
    for lo in np.arange(0.0, 1.0, 0.125):
        sel = (frac >= lo) & (frac < lo + 0.125)
        mean_frac = frac[sel].double().mean().item()
        stderr = math.sqrt(mean_frac * (1 - mean_frac) / int(sel.sum()))
        assert abs(up[sel].mean().item() - mean_frac) < 5 * stderr


def test_fixed_point_matches_qtorch_both_roundings():
    g = torch.Generator().manual_seed(6)
    x = torch.cat([torch.randn(20_000, generator=g) * s for s in (1e-3, 0.1, 1, 10, 1e3)])
    x = torch.cat([x, torch.tensor([0.0, -0.0, math.inf, -math.inf, 0.5, -0.5, 1.5, 2.5, 0.03125])])
    for wl, fl in [(8, 4), (8, 6), (4, 2), (16, 8), (12, 11), (24, 12), (2, 1)]:
        want = qq.fixed_point_quantize(x, wl, fl, rounding="nearest")
        assert torch.equal(bits(fixed_point_quantize(x, wl, fl, "nearest")), bits(want)), (wl, fl)
        torch.manual_seed(wl * 100 + fl)
        want = qq.fixed_point_quantize(x, wl, fl, rounding="stochastic")
        torch.manual_seed(wl * 100 + fl)
        got = fixed_point_quantize(x, wl, fl, "stochastic")
        assert torch.equal(bits(got), bits(want)), (wl, fl)


def test_fixed_point_keeps_nan_and_clamps():
    got = fixed_point_quantize(torch.tensor([math.nan, 100.0, -100.0, 0.09375]), 8, 4, "nearest")
    assert math.isnan(got[0].item()) and got[1:].tolist() == [7.9375, -8.0, 0.125]


@pytest.mark.parametrize("shape", [(1000,), (64, 3, 5, 5), (37, 100)])
def test_block_nearest_matches_qtorch(shape):
    g = torch.Generator().manual_seed(7)
    for scale in (1e-30, 1e-3, 1.0, 1e5):
        x = torch.randn(shape, generator=g) * scale
        x.view(-1)[::7] *= 1e-4
        for wl in range(2, 23):
            for dim in (-1, 0):
                want = qq.block_quantize(x, wl, dim, rounding="nearest")
                got = block_quantize(x, wl, dim, "nearest")
                assert torch.equal(bits(got), bits(want)), (shape, scale, wl, dim)


def test_block_stochastic_returns_neighbours_without_bias():
    rows = torch.tensor([[1.0, 0.3, -0.01, 0.77], [100.0, 3.3, 0.5, -60.0]])
    x = rows.repeat(1, 100_000)
    got = block_quantize(x, 4, 0, "stochastic").double()
    # block exponent 0 -> spacing 2^(0+2-4) = 0.25; block exponent 6 -> spacing 16
    for r, spacing in ((0, 0.25), (1, 16.0)):
        for c in range(4):
            v = got[r, c::4]
            value = float(rows[r, c])
            low = math.floor(value / spacing) * spacing
            assert set(v.unique().tolist()) <= {low, low + spacing}
            p = (value - low) / spacing
            stderr = spacing * math.sqrt(p * (1 - p) / v.numel())
            assert abs(v.mean().item() - value) <= 5 * stderr + 1e-12


def test_quantize_dispatches_on_the_format():
    x = torch.randn(1000)
    assert quantize(x, FP32) is x
    assert torch.equal(quantize(x, FloatFormat(5, 2), rounding="nearest"), float_quantize(x, 5, 2, "nearest"))
    assert torch.equal(quantize(x, parse_format("fixed8.6"), rounding="nearest"), fixed_point_quantize(x, 8, 6, "nearest"))
    assert torch.equal(quantize(x, BlockFormat(8, 0), rounding="nearest"), block_quantize(x, 8, 0, "nearest"))
    for fmt in (FloatFormat(4, 3), FixedFormat(8, 4), BlockFormat(6)):
        assert torch.equal(quantize(x, fmt, rounding="nearest", backend="qtorch"), quantize(x, fmt, rounding="nearest"))
    assert torch.equal(quantize(x, FloatFormat(5, 2), seed=3), quantize(x, FloatFormat(5, 2), seed=3))


def test_non_contiguous_input():
    x = torch.randn(64, 33).t()
    assert torch.equal(float_quantize(x, 5, 2, "nearest"), float_quantize(x.contiguous(), 5, 2, "nearest"))
    assert float_quantize(x, 5, 2, "stochastic").shape == x.shape


@pytest.mark.parametrize(
    "call",
    [
        lambda x: float_quantize(x, 9, 2),
        lambda x: float_quantize(x, 5, 0),
        lambda x: float_quantize(x, 5, 2, "up"),
        lambda x: float_quantize(x, 5, 2, backend="cuda"),
        lambda x: float_quantize(x.double(), 5, 2),
        lambda x: fixed_point_quantize(x, 8, 8),
        lambda x: block_quantize(x, 8, 2),
        lambda x: quantize(x, "e9m2"),
        lambda x: quantize(x, 3.5),
        lambda x: float_quantize(x, 5, 2, backend="qtorch", seed=1),
    ],
)
def test_bad_input_raises_one_line_pyppp_error(call):
    with pytest.raises(PepppError) as info:
        call(torch.randn(10))
    assert "\n" not in str(info.value)


def test_quantize_function_resolves_once():
    fn = quantize_function(FloatFormat(5, 2), rounding="nearest")
    x = torch.tensor([1.1, 1.3, -2.6])
    assert fn(x).tolist() == [1.0, 1.25, -2.5]


def test_without_a_compiler_it_warns_and_falls_back(tmp_path):
    # A fresh build directory and a compiler that does not exist: the build fails, the torch kernels
    # take over with a warning, and nearest rounding is still qtorch's.
    script = textwrap.dedent(
        """
        import warnings, torch
        from peppp.training.quant import float_quantize, extension_available
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = torch.tensor([1.125, -3e-5, 1e-8, 70000.0])
            print(float_quantize(x, 5, 2, "nearest").tolist())
            print(float_quantize(x, 5, 2, "stochastic").shape)
        print(extension_available(), any("pure-torch" in str(w.message) for w in caught))
        """
    )
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path), CXX=str(tmp_path / "no-such-compiler"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == str([1.25, -3.0517578125e-05, 0.0, 65536.0])
    assert lines[-1] == "False True"
