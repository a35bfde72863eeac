"""Triton quantization kernels for GPU tensors: one fused launch per tensor, and one per optimizer step.

The same source runs on a GPU and, with `TRITON_INTERPRET=1`, on the CPU (how the tests check it
without a GPU). Semantics are those of `torch_kernels` (and so of qtorch 0.3.0):

- float eXmY: nearest is qtorch's (ties away from zero, its subnormal path, overflow, inf and NaN
  saturate to +-max), bit for bit; stochastic takes the upper neighbour with probability
  (x - lower) / spacing, from 32 random bits per value.
- fixed point: nearbyint(x * 2^fl + r - 0.5) * 2^-fl clamped (r = 0.5 for nearest), as qtorch.
- block floating point: qtorch's nearest bit for bit; stochastic exact on the block's grid to 2^-53.
- hardware floats (fp8, bf16, fp16) and MX elements: IEEE half-to-even or stochastic on the element's
  grid, exact in float64, saturating (NaN stays NaN), as `torch_kernels.element_round`; MX computes each
  block's E8M0 scale from its 32 values in the same launch.

Random bits come from Philox (`tl.randint4x`) keyed by a 64-bit seed per call and the element's index,
so a seed drawn from torch's generator reproduces a run. The format's bits are compile-time constants
(one specialised kernel per format), which is what makes each quantizer one launch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass

import torch

try:  # triton ships with CUDA builds of torch; CPU-only installs may lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None

from peppp.training.quant.torch_kernels import float_spec

AVAILABLE = triton is not None
BLOCK = 1024
_GOLDEN = 0x9E3779B97F4A7C15
_SEED_MASK = (1 << 63) - 1
_SEED_HIGH = 1 << 62  # every drawn seed >= 2^62: always an int64 argument, never a recompile for int32
# A step counter read on the device mixes into the seed by this odd multiplier (< 2^63: an int64 constant).
_COUNTER_MIX = 0x5851F42D4C957F2D

FAM_FLOAT, FAM_FIXED, FAM_ELEMENT, FAM_IDENTITY = 0, 1, 2, 3
MX_BLOCK = 32
MX_BLOCKS_PER_PROGRAM = 32


def interpreted() -> bool:
    """Whether Triton runs its interpreter (CPU tensors) instead of compiling for a GPU."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def usable_on(x: torch.Tensor) -> bool:
    """Whether these kernels can quantize `x` where it lives (a CUDA tensor, or any under the interpreter)."""
    return AVAILABLE and (x.is_cuda or interpreted())


@dataclass(frozen=True)
class ElementwiseSpec:
    """A float or fixed format as the kernels' compile-time constants (FAM, P0..P6)."""

    fam: int
    params: tuple

    @staticmethod
    def float_(exp: int, man: int) -> "ElementwiseSpec":
        s = float_spec(exp, man)
        return ElementwiseSpec(FAM_FLOAT, (s["mask"], s["half"], s["emin_b"], s["maxe_b"], s["maxbits"], s["d"], float(s["sub_scale"])))

    @staticmethod
    def fixed(wl: int, fl: int) -> "ElementwiseSpec":
        lo = -(2.0 ** (wl - fl - 1))
        hi = -lo - 2.0**-fl
        return ElementwiseSpec(FAM_FIXED, (2.0**fl, 2.0**-fl, lo, hi, 0, 0, 0.0))

    @staticmethod
    def element(man: int, emin: int, max_value: float, min_value: float) -> "ElementwiseSpec":
        """A hardware element format (see `formats.ElementFormat`)."""
        return ElementwiseSpec(FAM_ELEMENT, (man, emin, float(max_value), float(min_value), 0, 0, 0.0))

    @staticmethod
    def identity() -> "ElementwiseSpec":
        return ElementwiseSpec(FAM_IDENTITY, (0, 0, 0, 0, 0, 0, 0.0))


def next_seed(base: int, count: int) -> int:
    """The Philox seed of call `count` of a quantizer whose base seed is `base` (in [2^62, 2^63))."""
    return ((base + count * _GOLDEN) & _SEED_MASK) | _SEED_HIGH


_local = threading.local()


@contextlib.contextmanager
def _thread_setting(name: str, value):
    previous = getattr(_local, name, None)
    setattr(_local, name, value)
    try:
        yield value
    finally:
        setattr(_local, name, previous)


def device_counter(counter: torch.Tensor) -> contextlib.AbstractContextManager[torch.Tensor]:
    """While active (in this thread), stochastic kernels add `counter` (an int64 scalar on the device,
    read by the kernel) to their seed: what a CUDA graph needs, since a captured launch replays the same
    host arguments. The training loop increments the counter once per step (inside the graph)."""
    return _thread_setting("counter", counter)


def seed_source(generator: torch.Generator) -> contextlib.AbstractContextManager[torch.Generator]:
    """While active (in this thread), quantizers and the fused optimizer draw their base seeds from
    `generator` instead of torch's default one: cells trained by several threads at once stay
    reproducible."""
    return _thread_setting("generator", generator)


def draw_base_seed() -> int:
    """A base seed from this thread's `seed_source`, else from torch's default generator."""
    return int(torch.randint(0, 2**62, (1,), generator=getattr(_local, "generator", None)))


def active_counter() -> torch.Tensor | None:
    """The device step counter of `device_counter` in this thread, or None."""
    return getattr(_local, "counter", None)


if AVAILABLE:

    @triton.jit
    def _uniform24(r):
        """[0, 1) from the top 24 bits of an int32 holding 32 random bits."""
        return ((r >> 8) & 0xFFFFFF).to(tl.float32) * 5.9604644775390625e-08

    @triton.jit
    def _float_q(x, r, STOCH: tl.constexpr, MASK: tl.constexpr, HALF: tl.constexpr, EMIN_B: tl.constexpr,
                 MAXE_B: tl.constexpr, MAXBITS: tl.constexpr, D: tl.constexpr, SUB_SCALE: tl.constexpr):
        # int32 bit patterns; additions wrap as qtorch's uint32 ones do, and every shift is masked
        a = x.to(tl.int32, bitcast=True)
        absa = a & 0x7FFFFFFF
        sign = a ^ absa
        e = absa >> 23
        if STOCH:
            q = (a + (r & MASK)) & ~MASK
        else:
            q = (a + HALF) & ~MASK
        q = tl.where(((q >> 23) & 0xFF) > MAXE_B, sign | MAXBITS, q)
        if STOCH:
            # below the smallest normal the grid is fixed (spacing SUB_SCALE): round the significand
            # exactly in integers, comparing 32 random bits with the dropped fraction
            sig = ((absa & 0x7FFFFF) | tl.where(e > 0, 0x800000, 0)).to(tl.int64)
            sh = tl.minimum((EMIN_B + D) - tl.maximum(e, 1), 63).to(tl.int64)
            k = sig >> sh
            rem = sig - (k << sh)
            frac = (rem << 32) >> sh
            k = k + ((r.to(tl.int64) & 0xFFFFFFFF) < frac).to(tl.int64)
            mb = (k.to(tl.float64) * SUB_SCALE).to(tl.float32).to(tl.int32, bitcast=True)
            low = tl.where(mb != 0, mb | sign, 0).to(tl.float32, bitcast=True)
        else:
            # qtorch's subnormal path: shift onto the smallest normal's exponent, round, shift back
            shift = (sign | (EMIN_B << 23)).to(tl.float32, bitcast=True)
            low = (((x + shift).to(tl.int32, bitcast=True) + HALF) & ~MASK).to(tl.float32, bitcast=True) - shift
        return tl.where(e < EMIN_B, low, q.to(tl.float32, bitcast=True))

    @triton.jit
    def _fixed_q(x, r, STOCH: tl.constexpr, SCALE: tl.constexpr, INV: tl.constexpr, LO: tl.constexpr, HI: tl.constexpr):
        if STOCH:
            t = x * SCALE + _uniform24(r)
        else:
            t = x * SCALE + 0.5
        v = t.to(tl.float64) - 0.5
        # round half to even (nearbyint): exact through the 1.5 * 2^52 trick below 2^51
        rounded = tl.where(tl.abs(v) < 2251799813685248.0, (v + 6755399441055744.0) - 6755399441055744.0, v)
        rounded = tl.where(rounded == 0.0, v * 0.0, rounded)  # -0.4 rounds to -0, as nearbyint
        out = rounded.to(tl.float32) * INV
        out = tl.where(out < LO, LO, out)  # comparisons keep NaN, as qtorch's clamp
        return tl.where(out > HI, HI, out)

    @triton.jit
    def _element_round(y, r, STOCH: tl.constexpr, MAN: tl.constexpr, EMIN: tl.constexpr, MAXV: tl.constexpr,
                       MINV: tl.constexpr):
        """float64 y onto the element grid (spacing 2^(max(floor(log2|y|), EMIN) - MAN)), clamped: exact in float64."""
        e = ((y.to(tl.int64, bitcast=True) >> 52) & 0x7FF) - 1023
        e = tl.minimum(tl.maximum(e, EMIN), 1023 + MAN)
        step = ((e + (1023 - MAN)) << 52).to(tl.float64, bitcast=True)
        t = y / step
        if STOCH:
            lower = tl.floor(t)
            u = (r.to(tl.int64) & 0xFFFFFFFF).to(tl.float64) * 2.3283064365386963e-10
            t = lower + tl.where(u < (t - lower), 1.0, 0.0)
        else:
            # round half to even: exact through the 1.5 * 2^52 trick below 2^51 (|t| < 2^(MAN+1) but for inf)
            rounded = tl.where(tl.abs(t) < 2251799813685248.0, (t + 6755399441055744.0) - 6755399441055744.0, t)
            t = tl.where(rounded == 0.0, t * 0.0, rounded)  # -0.3 rounds to -0, as IEEE
        out = t * step
        out = tl.where(out < MINV, MINV, out)  # comparisons keep NaN
        return tl.where(out > MAXV, MAXV, out)

    @triton.jit
    def _element_q(x, r, STOCH: tl.constexpr, MAN: tl.constexpr, EMIN: tl.constexpr, MAXV: tl.constexpr,
                   MINV: tl.constexpr):
        return _element_round(x.to(tl.float64), r, STOCH, MAN, EMIN, MAXV, MINV).to(tl.float32)

    @triton.jit
    def _q(x, r, STOCH: tl.constexpr, FAM: tl.constexpr, P0: tl.constexpr, P1: tl.constexpr, P2: tl.constexpr,
           P3: tl.constexpr, P4: tl.constexpr, P5: tl.constexpr, P6: tl.constexpr):
        if FAM == 0:
            y = _float_q(x, r, STOCH, P0, P1, P2, P3, P4, P5, P6)
        elif FAM == 1:
            y = _fixed_q(x, r, STOCH, P0, P1, P2, P3)
        elif FAM == 2:
            y = _element_q(x, r, STOCH, P0, P1, P2, P3)
        else:
            y = x
        return y

    @triton.jit
    def _seed_of(seed, counter_ptr, HAS_COUNTER: tl.constexpr):
        if HAS_COUNTER:
            s = seed + tl.load(counter_ptr) * 0x5851F42D4C957F2D
        else:
            s = seed
        return s

    @triton.jit(do_not_specialize=["seed"])
    def _elementwise_kernel(x_ptr, out_ptr, n, seed, counter_ptr, BLOCK_SIZE: tl.constexpr, STOCH: tl.constexpr,
                            HAS_COUNTER: tl.constexpr, FAM: tl.constexpr, P0: tl.constexpr, P1: tl.constexpr,
                            P2: tl.constexpr, P3: tl.constexpr, P4: tl.constexpr, P5: tl.constexpr, P6: tl.constexpr):
        offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m, other=0.0)
        if STOCH:
            r = tl.randint(_seed_of(seed, counter_ptr, HAS_COUNTER), offs).to(tl.int32, bitcast=True)
        else:
            r = offs
        tl.store(out_ptr + offs, _q(x, r, STOCH, FAM, P0, P1, P2, P3, P4, P5, P6), mask=m)

    @triton.jit(do_not_specialize=["seed"])
    def _block_kernel(x_ptr, out_ptr, max_ptr, seg_ptr, n, row, seed, counter_ptr, BLOCK_SIZE: tl.constexpr,
                      STOCH: tl.constexpr, HAS_COUNTER: tl.constexpr, HAS_SEG: tl.constexpr, WL: tl.constexpr, MASK: tl.constexpr, HALF: tl.constexpr,
                      MAX_MAN: tl.constexpr, TOP: tl.constexpr):
        offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m, other=0.0)
        if HAS_SEG:
            seg = tl.load(seg_ptr + offs, mask=m, other=0)
        else:
            seg = offs // row
        mb = tl.load(max_ptr + seg, mask=m, other=0.0).to(tl.int32, bitcast=True) & 0x7F800000
        if STOCH:
            r0, r1, r2, r3 = tl.randint4x(_seed_of(seed, counter_ptr, HAS_COUNTER), offs)
            k = tl.maximum(mb >> 23, 1) - (125 + WL)
            step = ((k + 1023).to(tl.int64) << 52).to(tl.float64, bitcast=True)
            y = x.to(tl.float64) / step
            lower = tl.floor(y)
            u = (((r0 >> 5) & 0x7FFFFFF).to(tl.float64) * 67108864.0 + ((r1 >> 6) & 0x3FFFFFF).to(tl.float64)) * 1.1102230246251565e-16
            k2 = lower + tl.where(u < (y - lower), 1.0, 0.0)
            k2 = tl.where(k2 < -TOP, -TOP, k2)
            k2 = tl.where(k2 > TOP, TOP, k2)
            out = (k2 * step).to(tl.float32)
        else:
            base = mb.to(tl.float32, bitcast=True) * 6.0
            q = (((x + base).to(tl.int32, bitcast=True) + HALF) & ~MASK).to(tl.float32, bitcast=True) - base
            qb = q.to(tl.int32, bitcast=True)
            over = (qb & 0x7F800000) > mb
            out = tl.where(over, (qb ^ (qb & 0x7FFFFFFF)) | mb | MAX_MAN, qb).to(tl.float32, bitcast=True)
        tl.store(out_ptr + offs, out, mask=m)

    @triton.jit(do_not_specialize=["seed"])
    def _mx_kernel(x_ptr, out_ptr, n_blocks, blocks_per_row, row_len, seed, counter_ptr, NB: tl.constexpr,
                   MXB: tl.constexpr, STOCH: tl.constexpr, HAS_COUNTER: tl.constexpr, EMAX: tl.constexpr,
                   MAN: tl.constexpr, EMIN: tl.constexpr, MAXV: tl.constexpr, MINV: tl.constexpr):
        """NB MX blocks per program: each block's scale from its own values, then its elements."""
        b = tl.program_id(0) * NB + tl.arange(0, NB)
        row = b // blocks_per_row
        col = (b % blocks_per_row)[:, None] * MXB + tl.arange(0, MXB)[None, :]
        m = (b < n_blocks)[:, None] & (col < row_len)
        offs = row[:, None] * row_len + col
        x = tl.load(x_ptr + offs, mask=m, other=0.0)
        # NaN left out of the maximum, infinities counted as float32's largest (they then saturate)
        amax = tl.max(tl.where(x == x, tl.minimum(tl.abs(x), 3.4028234663852886e38), 0.0), axis=1)
        # floor(log2 amax) - EMAX from the float32 exponent field (a subnormal or 0 clamps to -127 anyway)
        shared = ((amax.to(tl.int32, bitcast=True) >> 23) & 0xFF) - (127 + EMAX)
        shared = tl.minimum(tl.maximum(shared, -127), 127).to(tl.int64)
        down = ((1023 - shared) << 52).to(tl.float64, bitcast=True)
        up = ((1023 + shared) << 52).to(tl.float64, bitcast=True)
        if STOCH:
            r = tl.randint(_seed_of(seed, counter_ptr, HAS_COUNTER), offs).to(tl.int32, bitcast=True)
        else:
            r = offs
        q = _element_round(x.to(tl.float64) * down[:, None], r, STOCH, MAN, EMIN, MAXV, MINV) * up[:, None]
        tl.store(out_ptr + offs, q.to(tl.float32), mask=m)

    @triton.jit(do_not_specialize=["seed", "lr", "wd", "mom", "gscale"])
    def _sgd_lp_kernel(w_ptr, acc_ptr, g_ptr, buf_ptr, n, seed, counter_ptr, lr, lr_ptr, wd, mom, gscale,
                       BLOCK_SIZE: tl.constexpr, STOCH: tl.constexpr, HAS_COUNTER: tl.constexpr,
                       LR_FROM_PTR: tl.constexpr, FIRST: tl.constexpr, HAS_MOM: tl.constexpr,
                       LF: tl.constexpr, L0: tl.constexpr, L1: tl.constexpr, L2: tl.constexpr, L3: tl.constexpr,
                       L4: tl.constexpr, L5: tl.constexpr, L6: tl.constexpr,
                       HF: tl.constexpr, H0: tl.constexpr, H1: tl.constexpr, H2: tl.constexpr, H3: tl.constexpr,
                       H4: tl.constexpr, H5: tl.constexpr, H6: tl.constexpr):
        """qtorch's OptimLP over torch's SGD, for every parameter at once (flat buffers):
        g = low(g * gscale); d = g + wd * acc; buf = d (first step) or mom * buf + d; acc -= lr * buf;
        acc = high(acc); w = low(acc); buf = high(buf)."""
        offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        m = offs < n
        if LR_FROM_PTR:
            step_lr = tl.load(lr_ptr)
        else:
            step_lr = lr
        if STOCH:
            r0, r1, r2, r3 = tl.randint4x(_seed_of(seed, counter_ptr, HAS_COUNTER), offs)
            r0 = r0.to(tl.int32, bitcast=True)
            r1 = r1.to(tl.int32, bitcast=True)
            r2 = r2.to(tl.int32, bitcast=True)
            r3 = r3.to(tl.int32, bitcast=True)
        else:
            r0 = offs
            r1 = offs
            r2 = offs
            r3 = offs
        g = tl.load(g_ptr + offs, mask=m, other=0.0) * gscale
        g = _q(g, r0, STOCH, LF, L0, L1, L2, L3, L4, L5, L6)
        tl.store(g_ptr + offs, g, mask=m)
        acc = tl.load(acc_ptr + offs, mask=m, other=0.0)
        d = g + acc * wd
        if HAS_MOM:
            if FIRST:
                buf = d
            else:
                buf = tl.load(buf_ptr + offs, mask=m, other=0.0) * mom + d
            acc = acc + buf * (-step_lr)
            tl.store(buf_ptr + offs, _q(buf, r3, STOCH, HF, H0, H1, H2, H3, H4, H5, H6), mask=m)
        else:
            acc = acc + d * (-step_lr)
        acc = _q(acc, r1, STOCH, HF, H0, H1, H2, H3, H4, H5, H6)
        tl.store(acc_ptr + offs, acc, mask=m)
        tl.store(w_ptr + offs, _q(acc, r2, STOCH, LF, L0, L1, L2, L3, L4, L5, L6), mask=m)


def _grid(n: int) -> tuple[int]:
    return ((n + BLOCK - 1) // BLOCK,)


def _launch_options() -> dict:
    # No fused multiply-add: products are rounded before they are added, as torch's kernels do.
    return {} if interpreted() else {"enable_fp_fusion": False}


def _on_the_tensors_device(fn):
    """Run `fn(x, ...)` with x's GPU current (Triton launches on the current device)."""

    @functools.wraps(fn)
    def wrapper(x: torch.Tensor, *args, **kwargs):
        if x.is_cuda and x.device.index != torch.cuda.current_device():
            with torch.cuda.device(x.device):
                return fn(x, *args, **kwargs)
        return fn(x, *args, **kwargs)

    return wrapper


@_on_the_tensors_device
def elementwise_quantize(x: torch.Tensor, spec: ElementwiseSpec, *, stochastic: bool, seed: int = 0) -> torch.Tensor:
    """`x` (float32) quantized to a float or fixed format in one launch, as a new tensor."""
    x = x.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    params = dict(zip(("P0", "P1", "P2", "P3", "P4", "P5", "P6"), spec.params))
    counter = active_counter() if stochastic else None
    _elementwise_kernel[_grid(n)](x, out, n, seed, x if counter is None else counter, BLOCK_SIZE=BLOCK,
                                  STOCH=stochastic, HAS_COUNTER=counter is not None, FAM=spec.fam, **params,
                                  **_launch_options())
    return out


def float_quantize(x: torch.Tensor, exp: int, man: int, *, stochastic: bool, seed: int = 0) -> torch.Tensor:
    """`x` rounded to eXmY (qtorch's semantics)."""
    return elementwise_quantize(x, ElementwiseSpec.float_(exp, man), stochastic=stochastic, seed=seed)


def fixed_point_quantize(x: torch.Tensor, wl: int, fl: int, *, stochastic: bool, seed: int = 0) -> torch.Tensor:
    """`x` rounded to fixed point (wl bits, fl fractional), clamped to its range."""
    return elementwise_quantize(x, ElementwiseSpec.fixed(wl, fl), stochastic=stochastic, seed=seed)


@_on_the_tensors_device
def mx_quantize(x: torch.Tensor, spec: ElementwiseSpec, emax: int, *, stochastic: bool, seed: int = 0) -> torch.Tensor:
    """`x` (float32) in an MX format whose element is `spec` (FAM_ELEMENT) with top exponent `emax`:
    blocks of 32 along the last dimension, in one launch."""
    if spec.fam != FAM_ELEMENT:
        raise ValueError("MX elements are hardware element formats (ElementwiseSpec.element)")
    x = x.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    row_len = x.shape[-1] if x.dim() > 0 else 1
    blocks_per_row = (row_len + MX_BLOCK - 1) // MX_BLOCK
    n_blocks = (n // row_len) * blocks_per_row
    man, emin, max_value, min_value = spec.params[:4]
    counter = active_counter() if stochastic else None
    grid = ((n_blocks + MX_BLOCKS_PER_PROGRAM - 1) // MX_BLOCKS_PER_PROGRAM,)
    _mx_kernel[grid](x, out, n_blocks, blocks_per_row, row_len, seed, x if counter is None else counter,
                     NB=MX_BLOCKS_PER_PROGRAM, MXB=MX_BLOCK, STOCH=stochastic, HAS_COUNTER=counter is not None,
                     EMAX=emax, MAN=man, EMIN=emin, MAXV=max_value, MINV=min_value, **_launch_options())
    return out


@_on_the_tensors_device
def block_quantize(
    x: torch.Tensor,
    wl: int,
    *,
    stochastic: bool,
    seed: int = 0,
    rows: int = 1,
    segments: torch.Tensor | None = None,
    n_segments: int | None = None,
) -> torch.Tensor:
    """`x` rounded to wl-bit block floating point.

    One shared exponent for the whole tensor (rows=1), one per row of a (rows, -1) view (qtorch's
    dim=0), or one per segment where `segments` (int32, shaped like x) gives each element's segment
    in 0..n_segments-1 (the parameters of a flat optimizer buffer).
    """
    x = x.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    if segments is None:
        maxima = x.view(rows, -1).abs().amax(dim=1)
        seg, row = maxima, n // rows  # seg_ptr is unused without HAS_SEG
    else:
        maxima = torch.zeros(n_segments, dtype=x.dtype, device=x.device)
        maxima.scatter_reduce_(0, segments.view(-1).long(), x.view(-1).abs(), reduce="amax", include_self=True)
        seg, row = segments, 1
    mask = (1 << (23 - wl)) - 1
    half = 1 << (22 - wl) if wl < 23 else 0
    max_man = (0x7FFFFF >> (25 - wl)) << (25 - wl)
    counter = active_counter() if stochastic else None
    _block_kernel[_grid(n)](x, out, maxima, seg, n, row, seed, x if counter is None else counter, BLOCK_SIZE=BLOCK,
                            STOCH=stochastic, HAS_COUNTER=counter is not None, HAS_SEG=segments is not None, WL=wl, MASK=mask, HALF=half, MAX_MAN=max_man,
                            TOP=float(2 ** (wl - 1) - 1), **_launch_options())
    return out


def sgd_lp_step(
    *,
    weights: torch.Tensor,
    acc: torch.Tensor,
    grads: torch.Tensor,
    momentum_buffer: torch.Tensor,
    low: ElementwiseSpec,
    high: ElementwiseSpec,
    lr: float,
    weight_decay: float,
    momentum: float,
    grad_scale: float,
    first: bool,
    stochastic: bool,
    seed: int = 0,
    lr_tensor: torch.Tensor | None = None,
) -> None:
    """One low-precision SGD step over flat float32 buffers, in place, in one launch (see _sgd_lp_kernel).

    With `lr_tensor` (a float32 scalar on the device) the kernel reads the learning rate from it, so a
    captured step follows a schedule; with `device_counter` active the seed mixes in the step counter."""
    n = weights.numel()
    if n == 0:
        return
    counter = active_counter() if stochastic else None
    launch = _on_the_tensors_device(lambda w, *args, **kwargs: _sgd_lp_kernel[_grid(n)](w, *args, **kwargs))
    launch(
        weights, acc, grads, momentum_buffer, n, seed, weights if counter is None else counter, float(lr),
        weights if lr_tensor is None else lr_tensor, float(weight_decay), float(momentum), float(grad_scale),
        BLOCK_SIZE=BLOCK, STOCH=stochastic, HAS_COUNTER=counter is not None, LR_FROM_PTR=lr_tensor is not None,
        FIRST=first, HAS_MOM=momentum != 0,
        LF=low.fam, L0=low.params[0], L1=low.params[1], L2=low.params[2], L3=low.params[3], L4=low.params[4],
        L5=low.params[5], L6=low.params[6],
        HF=high.fam, H0=high.params[0], H1=high.params[1], H2=high.params[2], H3=high.params[3], H4=high.params[4],
        H5=high.params[5], H6=high.params[6],
        **_launch_options(),
    )
