"""Pure-torch quantization kernels: qtorch-exact nearest rounding, unbiased stochastic rounding.

They run on any device and need no compiler. Float nearest, fixed point (both roundings, from the same
`torch.rand_like` draw as qtorch) and block nearest reproduce qtorch 0.3.0 bit for bit; float and block
stochastic use torch's generator, so `torch.manual_seed` makes them reproducible.
"""

from __future__ import annotations

import torch

_SIGN = -(2**31)  # 0x80000000 as int32


def _as_float32(x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32:
        raise TypeError(f"expected a float32 tensor, got {x.dtype}")
    return x.contiguous()


def float_spec(exp: int, man: int) -> dict[str, int | float]:
    """qtorch's constants for eXmY on float32 bit patterns (see float_kernel.cpp)."""
    d = 23 - man
    min_exp = -((1 << (exp - 1)) - 2)
    maxe_b = (1 << (exp - 1)) + 127
    max_man = (0x7FFFFF >> d) << d
    return {
        "d": d,
        "mask": (1 << d) - 1,
        "half": (1 << (d - 1)) if d > 0 else 0,
        "emin_b": 127 + min_exp,
        "maxe_b": maxe_b,
        "maxbits": (maxe_b << 23) | max_man,
        "sub_scale": 2.0 ** (min_exp - man),
    }


# Branch-free on int32 bit patterns: a condition is a lane mask of -1 (true) or 0 (false) made with
# an arithmetic shift, lanes are chosen with xor/and, and buffers are reused in place; torch.where,
# bool tensors and fresh temporaries are several times slower on the CPU.


def _lt_mask_(buf: torch.Tensor, rhs: int) -> torch.Tensor:
    """buf := -1 where buf < rhs else 0, in place, for 0 <= buf, rhs < 2^31."""
    buf.sub_(rhs)
    buf.bitwise_right_shift_(31)
    return buf


def _select_(dst: torch.Tensor, mask: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """dst := src where mask else dst, in place; src is clobbered."""
    src.bitwise_xor_(dst).bitwise_and_(mask)
    return dst.bitwise_xor_(src)


def _saturate_(q: torch.Tensor, a: torch.Tensor, spec: dict, tmp1: torch.Tensor, tmp2: torch.Tensor) -> torch.Tensor:
    """q, with lanes past the top exponent set to +-max (the sign of a), in place."""
    over = torch.bitwise_and(q, 0x7F800000, out=tmp1).neg_().add_(spec["maxe_b"] << 23).bitwise_right_shift_(31)
    sat = torch.bitwise_and(a, _SIGN, out=tmp2).bitwise_or_(spec["maxbits"])
    return _select_(q, over, sat)


def float_quantize_nearest(x: torch.Tensor, exp: int, man: int) -> torch.Tensor:
    """eXmY with qtorch's nearest rounding (ties away from zero, saturation, its subnormal path)."""
    x = _as_float32(x)
    s = float_spec(exp, man)
    a = x.view(torch.int32)
    notmask = ~s["mask"]
    emin_bits = s["emin_b"] << 23
    t1, t2 = torch.empty_like(a), torch.empty_like(a)
    q = _saturate_((a + s["half"]).bitwise_and_(notmask), a, s, t1, t2)
    # below the smallest normal (zeros included): qtorch's shift, round, shift back
    below = _lt_mask_(torch.bitwise_and(a, 0x7FFFFFFF, out=t1), emin_bits)
    shift = torch.bitwise_and(a, _SIGN, out=t2).bitwise_or_(emin_bits).view(torch.float32)
    qs = x + shift
    qs.view(torch.int32).add_(s["half"]).bitwise_and_(notmask)
    qs.sub_(shift)
    return _select_(q, below, qs.view(torch.int32)).view(torch.float32)


def _random_words(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform 32-bit words (as int32) shaped like x, from torch's generator."""
    return torch.randint(-(2**31), 2**31, x.shape, dtype=torch.int32, device=x.device, generator=generator)


def float_quantize_stochastic(x: torch.Tensor, exp: int, man: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """eXmY with stochastic rounding: the upper neighbour with probability (x - lower) / spacing."""
    x = _as_float32(x)
    s = float_spec(exp, man)
    a = x.view(torch.int32)
    r = _random_words(x, generator)
    t1, t2 = torch.empty_like(a), torch.empty_like(a)
    q = _saturate_((r & s["mask"]).add_(a).bitwise_and_(~s["mask"]), a, s, t1, t2)
    absa = torch.bitwise_and(a, 0x7FFFFFFF, out=t1)
    nonzero = torch.sub(absa, 1, out=t2).bitwise_right_shift_(31).bitwise_not_()
    below = _lt_mask_(absa, s["emin_b"] << 23)
    q.bitwise_and_(below.bitwise_not())  # zeros (and, for now, the tiny values) come out +0
    tiny = nonzero.bitwise_and_(below)
    if int(tiny.min()) < 0:
        # Below the smallest normal the grid is fixed (spacing sub_scale): round the significand
        # exactly in integers, comparing 32 random bits with the dropped fraction.
        idx = tiny.view(-1).nonzero().squeeze(1)
        a_s = a.reshape(-1)[idx].long()
        e_s = (a_s >> 23) & 0xFF
        sig = (a_s & 0x7FFFFF) | ((e_s > 0).long() << 23)
        sh = (s["emin_b"] - e_s.clamp(min=1) + s["d"]).clamp(max=63)
        k = sig >> sh
        rem = sig - (k << sh)
        frac = (rem << 32) >> sh
        k = k + ((r.reshape(-1)[idx].long() & 0xFFFFFFFF) < frac).long()
        mag = (k.to(torch.float32) * s["sub_scale"]).view(torch.int32)
        signed = mag | ((a_s.to(torch.int32) & _SIGN) & -(mag != 0).int())
        q.view(-1)[idx] = signed
    return q.view(torch.float32)


def fixed_point_quantize(
    x: torch.Tensor,
    wl: int,
    fl: int,
    *,
    rounding: str = "stochastic",
    clamp: bool = True,
    symmetric: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fixed point (wl bits, fl fractional) as qtorch: nearbyint(x*2^fl + r - 0.5) * 2^-fl, clamped."""
    x = _as_float32(x)
    scaled = x * (2.0**fl)
    r = 0.5 if rounding == "nearest" else torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    t = scaled + r
    # qtorch subtracts the 0.5 in double precision; in float32 a small t would lose its low bits.
    rounded = torch.round(t.double() - 0.5).float()
    out = rounded * (2.0**-fl)
    if clamp:
        t_min = -(2.0 ** (wl - fl - 1))
        t_max = -t_min - 2.0**-fl
        if symmetric:
            t_min += 2.0**-fl
        out = out.clamp(t_min, t_max)
    return out


def _block_max(x: torch.Tensor, dim: int) -> torch.Tensor:
    """qtorch's shared maximum: over the whole tensor for dim == -1, else per index along `dim`."""
    if dim == -1 or x.dim() == 0:
        return x.abs().max().expand_as(x)
    d = dim % x.dim()
    others = [i for i in range(x.dim()) if i != d]
    if not others:
        return x.abs()
    return x.abs().amax(dim=others, keepdim=True).expand_as(x)


def block_quantize(
    x: torch.Tensor, wl: int, dim: int = -1, *, rounding: str = "stochastic", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Block floating point: wl-bit values sharing the exponent of the largest magnitude per block.

    Nearest follows qtorch exactly (add 6*2^E, round to wl bits, subtract, saturate). Stochastic rounds
    on the same grid (spacing 2^(E+2-wl)) exactly, with the upper neighbour taken with probability
    (x - lower) / spacing, to 2^-53.
    """
    x = _as_float32(x)
    max_exp_bits = _block_max(x, dim).view(torch.int32) & 0x7F800000
    if rounding == "nearest":
        base = max_exp_bits.view(torch.float32) * 6.0
        mask = (1 << (23 - wl)) - 1
        half = 1 << (22 - wl) if wl < 23 else 0  # qtorch shifts by -1 at wl == 23 (undefined)
        q = (((x + base).view(torch.int32) + half) & ~mask).view(torch.float32) - base
        qb = q.view(torch.int32)
        max_man = (0x7FFFFF >> (25 - wl)) << (25 - wl)
        over = (qb & 0x7F800000) > max_exp_bits
        return torch.where(over, (qb & _SIGN) | max_exp_bits | max_man, qb).view(torch.float32)
    # On the grid of spacing 2^(E + 2 - wl), E the unbiased exponent of the block maximum (at least
    # -126), in float64 where the scaling, the floor and the fraction are exact.
    k = (max_exp_bits >> 23).clamp(min=1).long() - 127 + 2 - wl
    step = ((k + 1023) << 52).view(torch.float64)
    y = x.double() / step
    lower = torch.floor(y)
    u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
    top = float(2 ** (wl - 1) - 1)
    n = (lower + (u < (y - lower)).double()).clamp(-top, top)
    return (n * step).float()


def _pow2(exponent: torch.Tensor) -> torch.Tensor:
    """2^exponent exactly as float32, for integer exponents in -149..127 (int32 tensor; subnormals too)."""
    if exponent.numel() == 0 or int(exponent.min()) >= -126:  # the common case: one pass, not six
        return torch.bitwise_left_shift(exponent + 127, 23).view(torch.float32)
    normal = torch.bitwise_left_shift(exponent.clamp(min=-126) + 127, 23)
    subnormal = torch.bitwise_left_shift(torch.ones_like(exponent), (exponent + 149).clamp(0, 22))
    return torch.where(exponent >= -126, normal, subnormal).view(torch.float32)


def element_round(
    y: torch.Tensor,
    *,
    man: int,
    emin: int,
    max_value: float,
    min_value: float,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """float32 `y` rounded onto a hardware element format's grid (see `formats.ElementFormat`).

    The spacing at |y| is 2^(max(floor(log2 |y|), emin) - man), at least 2^-133 (bf16's), a float32;
    y / spacing (a division, so a subnormal spacing stays exact) is below 2^(man+1) and exact, so nearest
    (torch.round: half to even) and stochastic (floor, then up with probability equal to the fraction,
    from 24 random bits) are exact, as is the product back. Then clamped to [min_value, max_value]:
    saturation, and NaN stays NaN.
    """
    e = ((y.view(torch.int32) >> 23) & 0xFF) - 127  # floor(log2 |y|); float32 subnormals give -127, below any emin
    step = _pow2(e.clamp_(min=emin, max=127 + man).sub_(man))
    t = y / step
    if rounding == "nearest":
        t = torch.round(t)
    else:
        lower = torch.floor(t)
        u = torch.rand(y.shape, dtype=torch.float32, device=y.device, generator=generator)
        t = lower.add_((u < t.sub_(lower)).to(torch.float32))
    return t.mul_(step).clamp_(min_value, max_value)


def hardware_float_quantize(
    x: torch.Tensor,
    *,
    man: int,
    emin: int,
    max_value: float,
    min_value: float,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`x` (float32) rounded to a hardware float (fp8, bf16, fp16): half to even or stochastic, saturating."""
    x = _as_float32(x)
    return element_round(x, man=man, emin=emin, max_value=max_value, min_value=min_value,
                         rounding=rounding, generator=generator)


def mx_quantize(
    x: torch.Tensor,
    *,
    man: int,
    emin: int,
    emax: int,
    max_value: float,
    min_value: float,
    block: int = 32,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`x` (float32) in an OCP MX format: blocks of `block` along the last dimension (a shorter tail),
    scale 2^s with s = floor(log2 max|v|) - emax clamped to -127..127 (NaN left out of the maximum and
    infinities counted as float32's largest, so they saturate; a block of zeros gets -127), each value
    the element rounding of v / 2^s, times 2^s.

    In float32 throughout: v * 2^-s is exact wherever it matters (a product that underflows is far below
    the element's smallest value and rounds to a signed zero either way), and so is the product back,
    since every element value times 2^s is at least 2^-136."""
    x = _as_float32(x)
    if x.numel() == 0:
        return x.clone()
    shape = x.shape
    last = shape[-1] if x.dim() > 0 else 1
    rows = x.reshape(-1, last)
    width = min(block, last)  # a last dimension of at most 32 is one (tail) block per row: no padding
    pad = (-last) % width
    if pad:
        rows = torch.nn.functional.pad(rows, (0, pad))
    blocks = rows.reshape(rows.shape[0], -1, width)
    amax = torch.nan_to_num(blocks.abs(), nan=0.0).amax(dim=-1, keepdim=True)  # and inf as float32's largest
    # floor(log2) of a float32 is its exponent field - 127; subnormals and 0 clamp to -127 anyway
    shared = ((amax.view(torch.int32) >> 23) - (127 + emax)).clamp_(-127, 127)
    y = blocks / _pow2(shared)
    q = element_round(y, man=man, emin=emin, max_value=max_value, min_value=min_value,
                      rounding=rounding, generator=generator)
    out = q.mul_(_pow2(shared)).reshape(rows.shape)
    if pad:
        out = out[:, :last]
    return out.reshape(shape).contiguous()
