"""Any text given to the format, configuration and grid parsers: a value that round-trips, or one PepppError."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from peppp.errors import PepppError
from peppp.formats import (
    BLOCK_WL_RANGE,
    FIXED_WL_RANGE,
    FLOAT_EXP_RANGE,
    FLOAT_MAN_RANGE,
    BlockFormat,
    FixedFormat,
    FloatFormat,
    NumberFormat,
    PrecisionConfig,
    parse_config,
    parse_format,
    parse_grid,
)
from properties.support import Refused, budget, outcome

# Text near the grammar finds the edges (signs, leading zeros, stray separators) far more often than
# uniformly random characters; both are drawn.
_PIECES = st.one_of(
    st.sampled_from(["e", "m", "E", "M", "fixed", "FIXED", "block", "@", "-", "+", ".", "/", ",", " x ", "x",
                     "fp32", "FP32", "paper", " ", "\t", "\n", "\u00a0", "\u0663", "\uff18", "0", "00"]),
    st.text("0123456789", min_size=1, max_size=30),
    st.text(max_size=3),
)
TEXT = st.one_of(st.text(), st.lists(_PIECES, max_size=12).map("".join))


def _grid_text(grid: tuple[PrecisionConfig, ...]) -> str:
    return ",".join(str(config) for config in grid)


def _round_trips(parse, value, render) -> None:
    written = render(value)
    again = parse(written)
    assert again == value, f"{written!r} parses to {again!r}, not {value!r}"
    assert render(again) == written


@budget(300)
@given(TEXT)
@example("e4m3/e7m9,fp32 x e6m7")
@example("block8@-0")
@example(" E4M3 / E7M9 ")
@example("e" + "9" * 40 + "m1")
def test_any_text_parses_to_a_round_tripping_value_or_one_pepppError(text):
    fmt = outcome(lambda: parse_format(text))
    if not isinstance(fmt, Refused):
        assert isinstance(fmt, NumberFormat)
        _round_trips(parse_format, fmt, str)
    config = outcome(lambda: parse_config(text))
    if not isinstance(config, Refused):
        assert isinstance(config, PrecisionConfig)
        _round_trips(parse_config, config, str)
    grid = outcome(lambda: parse_grid(text))
    if not isinstance(grid, Refused):
        assert grid and all(isinstance(c, PrecisionConfig) for c in grid)
        assert len(set(grid)) == len(grid)
        _round_trips(parse_grid, grid, _grid_text)


FLOATS = st.builds(FloatFormat, st.integers(*FLOAT_EXP_RANGE), st.integers(*FLOAT_MAN_RANGE))
FIXEDS = st.integers(*FIXED_WL_RANGE).flatmap(lambda wl: st.builds(FixedFormat, st.just(wl), st.integers(1, wl - 1)))
BLOCKS = st.builds(BlockFormat, st.integers(*BLOCK_WL_RANGE), st.sampled_from([-1, 0]))
FORMATS = st.one_of(FLOATS, FIXEDS, BLOCKS, st.just(parse_format("fp32")))
CONFIGS = st.builds(PrecisionConfig, FORMATS, FORMATS)


@budget(120)
@given(FORMATS, CONFIGS, st.sampled_from(["", " ", "\t", "\n"]), st.booleans())
def test_every_valid_format_and_configuration_round_trips_in_any_case_and_padding(fmt, config, pad, upper):
    def dress(text: str) -> str:
        return pad + (text.upper() if upper else text) + pad

    assert parse_format(dress(str(fmt))) == fmt
    assert parse_config(dress(str(config))) == config
    assert parse_config(config) is config


@budget(80)
@given(st.lists(CONFIGS, min_size=1, max_size=8, unique=True),
       st.lists(FORMATS, min_size=1, max_size=4, unique=True),
       st.lists(FORMATS, min_size=1, max_size=4, unique=True))
def test_valid_grids_round_trip_as_lists_and_as_products(configs, lows, highs):
    assert parse_grid(_grid_text(tuple(configs))) == tuple(configs)
    product = parse_grid(f"{','.join(map(str, lows))} x {','.join(map(str, highs))}")
    assert product == tuple(PrecisionConfig(low, high) for low in lows for high in highs)


@budget(150)
@given(st.sampled_from(["e{}m{}", "fixed{}.{}", "block{}@{}"]), st.integers(-50, 200), st.integers(-50, 200))
def test_numbers_outside_the_ranges_are_one_pepppError(pattern, a, b):
    text = pattern.format(a, b)
    fmt = outcome(lambda: parse_format(text))
    if isinstance(fmt, Refused):
        return
    # Accepted only inside the documented ranges.
    if isinstance(fmt, FloatFormat):
        assert FLOAT_EXP_RANGE[0] <= a <= FLOAT_EXP_RANGE[1] and FLOAT_MAN_RANGE[0] <= b <= FLOAT_MAN_RANGE[1]
    elif isinstance(fmt, FixedFormat):
        assert FIXED_WL_RANGE[0] <= a <= FIXED_WL_RANGE[1] and 1 <= b < a
    else:
        assert BLOCK_WL_RANGE[0] <= a <= BLOCK_WL_RANGE[1] and b in (-1, 0)
    assert str(fmt) == text or (isinstance(fmt, BlockFormat) and b == -1 and str(fmt) == f"block{a}")


def test_a_field_of_more_than_4300_digits_is_one_pepppError():
    # Found by these tests: int() of a text of over 4300 digits is Python's own ValueError.
    for text in ("e" + "1" * 4301 + "m1", "block8@" + "0" * 5000):
        with pytest.raises(PepppError):
            parse_format(text)
