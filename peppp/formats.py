"""Number formats, precision configurations (low/high format pairs) and grids of configurations.

Written forms (all round-trip through `str`): `e4m3` float, `fixed8.6` fixed point, `block8` /
`block8@0` block floating point, the hardware formats `fp8.e4m3`, `fp8.e5m2`, `bf16`, `fp16` and the
OCP MX block-scaled formats `mxfp8.e4m3`, `mxfp8.e5m2`, `mxfp6.e2m3`, `mxfp6.e3m2`, `mxfp4.e2m1`,
`mxint8`, and `fp32` unquantized; a configuration is `LOW/HIGH` (`e4m3/e7m9`, `mxfp4.e2m1/bf16`), or
`fp32` when both formats are unquantized. Pure Python: no torch, no qtorch.
"""

from __future__ import annotations

import itertools
import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from peppp.errors import PepppError

# What qtorch's kernels simulate exactly on float32 values.
FLOAT_EXP_RANGE = (1, 8)
FLOAT_MAN_RANGE = (1, 23)
FIXED_WL_RANGE = (2, 24)
BLOCK_WL_RANGE = (2, 23)
BLOCK_DIMS = (-1, 0)

FLOAT_SYNTAX = "eXmY with 1<=X<=8 exponent and 1<=Y<=23 mantissa bits"
FIXED_SYNTAX = "fixedW.F with word length 2<=W<=24 and fractional bits 1<=F<W"
BLOCK_SYNTAX = "blockW or blockW@0 with word length 2<=W<=23"
HARDWARE_SYNTAX = "fp8.e4m3, fp8.e5m2, bf16, fp16"
MX_SYNTAX = "mxfp8.e4m3, mxfp8.e5m2, mxfp6.e2m3, mxfp6.e3m2, mxfp4.e2m1, mxint8"
FORMAT_SYNTAX = f"{FLOAT_SYNTAX}, {FIXED_SYNTAX}, {BLOCK_SYNTAX}, {HARDWARE_SYNTAX}, {MX_SYNTAX}, or fp32"
CONFIG_SYNTAX = "LOW/HIGH with each a format (e.g. e4m3/e7m9), or fp32"


class NumberFormat(ABC):
    """A number format that a tensor is stored in: its written form and its width.

    Lifecycle: a value. Build it directly or with `parse_format`; `str(fmt)` gives the text back.
    """

    @property
    @abstractmethod
    def bits(self) -> float:
        """Storage bits per value (a fraction where a shared scale is counted: 4.25 for mxfp4.e2m1)."""

    @property
    @abstractmethod
    def family(self) -> str:
        """The family a report groups the format under (one of `FAMILIES`)."""


def _check_field(fmt: NumberFormat, field: str, what: str, low: int, high: int, written: str, syntax: str) -> None:
    """Validate an integer field and store it as a plain int (numpy integers come from tables)."""
    value = getattr(fmt, field)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= value <= high:
        raise PepppError(f"format {written}: {what} {value!r} is outside {low}..{high} (allowed: {syntax})")
    object.__setattr__(fmt, field, int(value))


@dataclass(frozen=True)
class FloatFormat(NumberFormat):
    """Floating point with 1 sign bit, `exp` exponent bits and `man` mantissa bits (`eXmY`)."""

    exp: int
    man: int

    def __post_init__(self) -> None:
        written = f"e{self.exp}m{self.man}"
        _check_field(self, "exp", "exponent bits", *FLOAT_EXP_RANGE, written, FLOAT_SYNTAX)
        _check_field(self, "man", "mantissa bits", *FLOAT_MAN_RANGE, written, FLOAT_SYNTAX)

    @property
    def bits(self) -> int:
        return 1 + self.exp + self.man

    @property
    def family(self) -> str:
        return "float"

    def __str__(self) -> str:
        return f"e{self.exp}m{self.man}"


@dataclass(frozen=True)
class FixedFormat(NumberFormat):
    """Two's-complement fixed point: `wl` bits in all, `fl` of them fractional (`fixedW.F`).

    Range [-2^(wl-fl-1), 2^(wl-fl-1) - 2^-fl], step 2^-fl, values clamped (qtorch `FixedPoint`).
    """

    wl: int
    fl: int

    def __post_init__(self) -> None:
        written = f"fixed{self.wl}.{self.fl}"
        _check_field(self, "wl", "word length", *FIXED_WL_RANGE, written, FIXED_SYNTAX)
        _check_field(self, "fl", "fractional bits", 1, self.wl - 1, written, FIXED_SYNTAX)

    @property
    def bits(self) -> int:
        return self.wl

    @property
    def family(self) -> str:
        return "fixed"

    def __str__(self) -> str:
        return f"fixed{self.wl}.{self.fl}"


@dataclass(frozen=True)
class BlockFormat(NumberFormat):
    """Block floating point: `wl`-bit values sharing one exponent per slice along `dim` (`blockW@D`).

    `dim=-1` (written `blockW`) shares one exponent over the whole tensor; `dim=0` one per index of the
    first axis (per sample for activations, per output channel for weights). The shared exponents are
    not counted in `bits`: there are few of them per tensor.
    """

    wl: int
    dim: int = -1

    def __post_init__(self) -> None:
        written = str(self)
        _check_field(self, "wl", "word length", *BLOCK_WL_RANGE, written, BLOCK_SYNTAX)
        if isinstance(self.dim, bool) or self.dim not in BLOCK_DIMS:
            raise PepppError(f"format {written}: block dimension {self.dim!r} is not -1 (whole tensor) or 0 (allowed: {BLOCK_SYNTAX})")
        object.__setattr__(self, "dim", int(self.dim))

    @property
    def bits(self) -> int:
        return self.wl

    @property
    def family(self) -> str:
        return "block"

    def __str__(self) -> str:
        return f"block{self.wl}" if self.dim == -1 else f"block{self.wl}@{self.dim}"


@dataclass(frozen=True)
class FP32Format(NumberFormat):
    """Plain float32: no quantization (`fp32`)."""

    @property
    def bits(self) -> int:
        return 32

    @property
    def family(self) -> str:
        return "fp32"

    def __str__(self) -> str:
        return "fp32"


FP32 = FP32Format()


@dataclass(frozen=True)
class ElementFormat:
    """The numbers of a hardware element format, as the kernels need them.

    A value is sign * 2^e * (1 + k / 2^man) for e >= emin (and 2^emin * k / 2^man below), so the
    spacing at magnitude |v| is 2^(max(floor(log2 |v|), emin) - man); `max_value` / `min_value` are the
    largest and smallest finite values (rounding saturates to them) and `emax` is the exponent of
    `max_value`, the one MX subtracts from a block's. An integer element (`int8`, 1.6 fixed point) is
    the same with emin = 0: spacing 2^-6 below 2, and its own most negative value -2.
    """

    name: str
    bits: int
    man: int
    emin: int
    emax: int
    max_value: float
    min_value: float


# OCP FP8 (v1.0), IEEE binary16, bfloat16, OCP MX v1.0 elements. E4M3, E2M3, E3M2 and E2M1 have no
# infinities (E4M3 keeps only S.1111.111 for NaN: its top value is 448, not 480).
ELEMENT_FORMATS: dict[str, ElementFormat] = {
    e.name: e
    for e in (
        ElementFormat("e4m3", 8, 3, -6, 8, 448.0, -448.0),
        ElementFormat("e5m2", 8, 2, -14, 15, 57344.0, -57344.0),
        ElementFormat("bf16", 16, 7, -126, 127, 3.3895313892515355e38, -3.3895313892515355e38),
        ElementFormat("fp16", 16, 10, -14, 15, 65504.0, -65504.0),
        ElementFormat("e2m3", 6, 3, 0, 2, 7.5, -7.5),
        ElementFormat("e3m2", 6, 2, -2, 4, 28.0, -28.0),
        ElementFormat("e2m1", 4, 1, 0, 2, 6.0, -6.0),
        ElementFormat("int8", 8, 6, 0, 0, 127 / 64, -2.0),
    )
}

HARDWARE_NAMES = ("fp8.e4m3", "fp8.e5m2", "bf16", "fp16")
_HARDWARE_ELEMENT = {"fp8.e4m3": "e4m3", "fp8.e5m2": "e5m2", "bf16": "bf16", "fp16": "fp16"}
MX_NAMES = ("mxfp8.e4m3", "mxfp8.e5m2", "mxfp6.e2m3", "mxfp6.e3m2", "mxfp4.e2m1", "mxint8")
_MX_ELEMENT = {name: (name.split(".")[1] if "." in name else "int8") for name in MX_NAMES}
MX_BLOCK = 32  # elements sharing one scale
MX_SCALE_BITS = 8  # the E8M0 scale
MX_SCALE_RANGE = (-127, 127)  # E8M0's exponents (255 is its NaN)


@dataclass(frozen=True)
class HardwareFloatFormat(NumberFormat):
    """A float format of today's hardware: OCP FP8 (`fp8.e4m3`, `fp8.e5m2`), `bf16` or `fp16`.

    Nearest rounding is IEEE round-half-to-even, saturating: past the largest finite value gives +-max,
    NaN stays NaN. Subnormals are kept.
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in _HARDWARE_ELEMENT:
            raise PepppError(f"unknown hardware float {self.name!r}; allowed: {HARDWARE_SYNTAX}")

    @property
    def element(self) -> ElementFormat:
        return ELEMENT_FORMATS[_HARDWARE_ELEMENT[self.name]]

    @property
    def bits(self) -> int:
        return self.element.bits

    @property
    def family(self) -> str:
        return "fp8" if self.name.startswith("fp8") else "fp16/bf16"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class MXFormat(NumberFormat):
    """An OCP Microscaling (MX v1.0) format: blocks of 32 consecutive values along a tensor's last
    dimension (a shorter tail block where that size is not a multiple of 32) share one E8M0 scale
    2^s, s = floor(log2(max |v| in the block)) - emax(element) clamped to -127..127; each value is
    stored as the element format's saturating rounding of v / 2^s. NaN is left out of the maximum (and
    stays NaN), an infinity counts as float32's largest value (and saturates). Stored bits: the
    element's plus 8 per 32 values (4.25 for `mxfp4.e2m1`). Where the last dimension is short (a 3x3
    convolution's weights, an 8-pixel-wide activation) the simulated blocks are that short and so finer
    than the memory model's 32; hardware that blocks along the reduction dimension would differ there."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in _MX_ELEMENT:
            raise PepppError(f"unknown MX format {self.name!r}; allowed: {MX_SYNTAX}")

    @property
    def element(self) -> ElementFormat:
        return ELEMENT_FORMATS[_MX_ELEMENT[self.name]]

    @property
    def bits(self) -> float:
        return self.element.bits + MX_SCALE_BITS / MX_BLOCK

    @property
    def family(self) -> str:
        return "mx"

    def __str__(self) -> str:
        return self.name


FAMILIES = ("float", "fixed", "block", "fp8", "fp16/bf16", "mx", "fp32")

# At most 9 digits a field: longer ones are no format (and Python refuses int() of > 4300 digits).
# ASCII digits only: `e４m3` (full-width 4) is no format.
_FLOAT = re.compile(r"e(\d{1,9})m(\d{1,9})", re.ASCII)
_FIXED = re.compile(r"fixed(\d{1,9})\.(\d{1,9})", re.ASCII)
_BLOCK = re.compile(r"block(\d{1,9})(?:@(-?\d{1,9}))?", re.ASCII)


def parse_format(text: str) -> NumberFormat:
    """The format written as `text` (`e4m3`, `fixed8.6`, `block8`, `block8@0`, `fp8.e4m3`, `bf16`,
    `mxfp4.e2m1`, `mxint8`, `fp32`; case-insensitive)."""
    s = str(text).strip().lower()
    if s == "fp32":
        return FP32
    if s in _HARDWARE_ELEMENT:
        return HardwareFloatFormat(s)
    if s in _MX_ELEMENT:
        return MXFormat(s)
    if m := _FLOAT.fullmatch(s):
        return FloatFormat(int(m[1]), int(m[2]))
    if m := _FIXED.fullmatch(s):
        return FixedFormat(int(m[1]), int(m[2]))
    if m := _BLOCK.fullmatch(s):
        return BlockFormat(int(m[1]), -1 if m[2] is None else int(m[2]))
    raise PepppError(f"unknown number format {text!r}; allowed: {FORMAT_SYNTAX}")


@dataclass(frozen=True)
class PrecisionConfig:
    """Which format each tensor class gets (the paper's pair).

    `low`: activations and their gradients, weights, weight gradients. `high`: momentum, the master
    weights (accumulator), the network input and the output logits.
    """

    low: NumberFormat
    high: NumberFormat

    def __post_init__(self) -> None:
        for role in ("low", "high"):
            if not isinstance(getattr(self, role), NumberFormat):
                raise PepppError(f"the {role} format must be a NumberFormat, got {getattr(self, role)!r}")

    @property
    def low_bits(self) -> float:
        return self.low.bits

    @property
    def high_bits(self) -> float:
        return self.high.bits

    @property
    def is_fp32(self) -> bool:
        return self.low == FP32 and self.high == FP32

    def __str__(self) -> str:
        return "fp32" if self.is_fp32 else f"{self.low}/{self.high}"


FP32_CONFIG = PrecisionConfig(FP32, FP32)


def parse_config(text: str | PrecisionConfig) -> PrecisionConfig:
    """The configuration written as `text`: `LOW/HIGH` (e.g. `e4m3/e7m9`) or `fp32`.

    A `PrecisionConfig` is returned as is, so callers may accept either.
    """
    if isinstance(text, PrecisionConfig):
        return text
    s = str(text).strip()
    if s.lower() == "fp32":
        return FP32_CONFIG
    parts = s.split("/")
    if len(parts) != 2 or not all(part.strip() for part in parts):
        # name what is wrong with the formats too: a misspelt one is the commoner mistake
        bad = [part for part in parts if not _is_format(part)]
        what = f"; unknown format {bad[0]!r}" if bad and bad[0].strip() else ""
        raise PepppError(f"precision configuration {text!r} is not {CONFIG_SYNTAX}{what}; formats: {FORMAT_SYNTAX}")
    try:
        return PrecisionConfig(parse_format(parts[0]), parse_format(parts[1]))
    except PepppError as e:
        raise PepppError(f"precision configuration {text!r}: {e}") from None


def _is_format(text: str) -> bool:
    try:
        parse_format(text)
    except PepppError:
        return False
    return True


PAPER_LOW_FORMATS: tuple[FloatFormat, ...] = tuple(
    FloatFormat(e, m) for e, m in [(3, 1), (3, 2), (3, 3), (3, 4), (4, 1), (4, 2), (4, 3), (4, 4), (5, 1), (5, 2), (5, 3)]
)
PAPER_HIGH_FORMATS: tuple[FloatFormat, ...] = tuple(FloatFormat(e, m) for e in (6, 7, 8) for m in (7, 9, 11))


def _reject_duplicates(items: Sequence, what: str) -> None:
    seen = set()
    for item in items:
        if item in seen:
            raise PepppError(f"{what} {item} appears twice; each must appear once")
        seen.add(item)


def make_grid(lows: Iterable[NumberFormat | str], highs: Iterable[NumberFormat | str]) -> tuple[PrecisionConfig, ...]:
    """Every (low, high) pair, low-major: column `len(highs) * i_low + i_high`, as in the paper."""
    low_formats = [f if isinstance(f, NumberFormat) else parse_format(f) for f in lows]
    high_formats = [f if isinstance(f, NumberFormat) else parse_format(f) for f in highs]
    if not low_formats or not high_formats:
        raise PepppError("a grid needs at least one low and one high format")
    _reject_duplicates(low_formats, "low format")
    _reject_duplicates(high_formats, "high format")
    return tuple(PrecisionConfig(low, high) for low, high in itertools.product(low_formats, high_formats))


def paper_grid() -> tuple[PrecisionConfig, ...]:
    """The paper's 99 configurations (11 low x 9 high) in its column order."""
    return make_grid(PAPER_LOW_FORMATS, PAPER_HIGH_FORMATS)


MODERN_LOW_FORMATS: tuple[NumberFormat, ...] = tuple(
    parse_format(name) for name in ("fp8.e4m3", "fp8.e5m2", *MX_NAMES)
)
MODERN_HIGH_FORMATS: tuple[NumberFormat, ...] = (HardwareFloatFormat("bf16"), HardwareFloatFormat("fp16"))


def modern_grid() -> tuple[PrecisionConfig, ...]:
    """Today's hardware formats: the two FP8 and six MX formats as the low format, each with bf16 and
    fp16 as the high one (16 configurations, low-major)."""
    return make_grid(MODERN_LOW_FORMATS, MODERN_HIGH_FORMATS)


GRID_SYNTAX = "'paper', 'modern', a comma-separated list of configurations (e3m1/e6m7,e5m2/e8m11,fp32) or a product 'LOWS x HIGHS' (e3m1,e4m3 x e6m7,e8m9)"

_PRODUCT = re.compile(r"\s+x\s+")


def parse_grid(text: str) -> tuple[PrecisionConfig, ...]:
    """A grid of configurations from text.

    Three forms:
    - `paper`: the paper's 99 configurations (`paper_grid()`);
    - `modern`: FP8 and MX low formats with bf16 or fp16 high (`modern_grid()`, 16 configurations);
    - a comma-separated list of configurations, kept in the given order: `e3m1/e6m7,e5m2/e8m11,fp32`;
    - a product `LOWS x HIGHS` of two comma-separated format lists, the `x` surrounded by spaces:
      `e3m1,e4m3 x e6m7,e8m9` gives e3m1/e6m7, e3m1/e8m9, e4m3/e6m7, e4m3/e8m9 (low-major, as `make_grid`).
    A configuration (or a format in a product) given twice is rejected.
    """
    s = str(text).strip()
    if s.lower() == "paper":
        return paper_grid()
    if s.lower() == "modern":
        return modern_grid()
    sides = _PRODUCT.split(s)
    if len(sides) == 2:
        return make_grid(_split_list(sides[0], text), _split_list(sides[1], text))
    if len(sides) > 2:
        raise PepppError(f"grid {text!r} has more than one ' x '; write {GRID_SYNTAX}")
    configs = [parse_config(item) for item in _split_list(s, text)]
    _reject_duplicates(configs, "configuration")
    return tuple(configs)


def _split_list(part: str, text: str) -> list[str]:
    items = [item.strip() for item in part.split(",")]
    if not part.strip() or any(not item for item in items):
        raise PepppError(f"grid {text!r} has an empty entry; write {GRID_SYNTAX}")
    return items
