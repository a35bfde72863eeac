"""Number formats, precision configurations and grids: written forms, validation, the paper's order."""

import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.errors import PepppError
from peppp.formats import (
    FP32,
    FP32_CONFIG,
    PAPER_HIGH_FORMATS,
    PAPER_LOW_FORMATS,
    BlockFormat,
    FixedFormat,
    FloatFormat,
    PrecisionConfig,
    make_grid,
    paper_grid,
    parse_config,
    parse_format,
    parse_grid,
)


@pytest.mark.parametrize(
    "text, fmt, bits",
    [
        ("e4m3", FloatFormat(4, 3), 8),
        ("e8m23", FloatFormat(8, 23), 32),
        ("e1m1", FloatFormat(1, 1), 3),
        ("fixed8.6", FixedFormat(8, 6), 8),
        ("fixed24.1", FixedFormat(24, 1), 24),
        ("block8", BlockFormat(8, -1), 8),
        ("block8@0", BlockFormat(8, 0), 8),
        ("fp32", FP32, 32),
    ],
)
def test_format_round_trip_and_bits(text, fmt, bits):
    parsed = parse_format(text)
    assert parsed == fmt
    assert str(parsed) == text
    assert parse_format(str(parsed)) == parsed
    assert parsed.bits == bits


def test_parse_format_ignores_case_and_spaces():
    assert parse_format(" E5M2 ") == FloatFormat(5, 2)
    assert parse_format("FP32") is FP32
    assert str(parse_format("block8@-1")) == "block8"


@pytest.mark.parametrize(
    "text, names",
    [
        ("e0m3", ["e0m3", "exponent bits 0", "1..8"]),
        ("e9m2", ["e9m2", "exponent bits 9", "1..8"]),
        ("e5m30", ["e5m30", "mantissa bits 30", "1..23"]),
        ("e5m0", ["e5m0", "mantissa bits 0"]),
        ("fixed8.8", ["fixed8.8", "fractional bits 8", "1..7"]),
        ("fixed8.0", ["fixed8.0", "fractional bits 0"]),
        ("fixed40.8", ["fixed40.8", "word length 40", "2..24"]),
        ("block1", ["block1", "word length 1", "2..23"]),
        ("block8@2", ["block8@2", "dimension 2"]),
        ("fp17", ["'fp17'", "eXmY", "fixedW.F", "blockW", "mxfp4.e2m1", "fp32"]),
        ("e4", ["'e4'", "eXmY"]),
        ("", ["''", "eXmY"]),
    ],
)
def test_bad_formats_say_what_is_allowed(text, names):
    with pytest.raises(PepppError) as info:
        parse_format(text)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_direct_construction_is_validated_too():
    with pytest.raises(PepppError, match="exponent bits 9"):
        FloatFormat(9, 2)
    with pytest.raises(PepppError, match="mantissa bits"):
        FloatFormat(5, 2.5)
    with pytest.raises(PepppError, match="must be a NumberFormat"):
        PrecisionConfig("e4m3", FP32)


def test_formats_are_frozen_values():
    fmt = FloatFormat(4, 3)
    with pytest.raises(AttributeError):
        fmt.exp = 5
    assert {FloatFormat(4, 3), parse_format("e4m3"), FixedFormat(8, 4)} == {fmt, FixedFormat(8, 4)}
    assert FloatFormat(4, 3) != FixedFormat(4, 3)


def test_config_round_trip_and_bits():
    config = parse_config("e4m3/e7m9")
    assert config == PrecisionConfig(FloatFormat(4, 3), FloatFormat(7, 9))
    assert str(config) == "e4m3/e7m9"
    assert (config.low_bits, config.high_bits, config.is_fp32) == (8, 17, False)
    mixed = parse_config("fixed8.6/fp32")
    assert str(mixed) == "fixed8.6/fp32"
    assert (mixed.low_bits, mixed.high_bits, mixed.is_fp32) == (8, 32, False)
    assert parse_config(config) is config


def test_fp32_config_prints_as_fp32():
    assert parse_config("fp32") == FP32_CONFIG
    assert parse_config("fp32/fp32") == FP32_CONFIG
    assert str(FP32_CONFIG) == "fp32"
    assert FP32_CONFIG.is_fp32 and FP32_CONFIG.low_bits == FP32_CONFIG.high_bits == 32


@pytest.mark.parametrize("text", ["e4m3", "e4m3/e7m9/e8m7", "e4m3/", "/e7m9", "e4m3-e7m9"])
def test_bad_configs(text):
    with pytest.raises(PepppError, match="LOW/HIGH|format"):
        parse_config(text)


def test_bad_format_inside_a_config_is_named():
    with pytest.raises(PepppError, match="e9m2"):
        parse_config("e4m3/e9m2")


def test_paper_grid_matches_the_released_column_order():
    columns = pd.read_csv(PAPER_DIR / "configs.csv")
    grid = paper_grid()
    assert len(grid) == 99 == len(set(grid))
    assert [str(c) for c in grid] == list(columns["config"])
    assert [c.low.exp for c in grid] == list(columns["low_exp"])
    assert [c.high.man for c in grid] == list(columns["high_man"])
    for j, config in enumerate(grid):
        assert config.low == PAPER_LOW_FORMATS[j // 9] and config.high == PAPER_HIGH_FORMATS[j % 9]


def test_paper_grid_headers_of_the_matrices():
    header = pd.read_csv(PAPER_DIR / "memory_mb.csv", nrows=0).columns[1:]
    assert [str(c) for c in paper_grid()] == list(header)


def test_make_grid_is_low_major():
    grid = make_grid(["e3m1", "e5m2"], [FloatFormat(6, 7), "e8m9", "fp32"])
    assert [str(c) for c in grid] == [
        "e3m1/e6m7", "e3m1/e8m9", "e3m1/fp32", "e5m2/e6m7", "e5m2/e8m9", "e5m2/fp32",
    ]


def test_make_grid_rejects_duplicates_and_empty_sides():
    with pytest.raises(PepppError, match="low format e3m1 appears twice"):
        make_grid(["e3m1", "E3M1"], ["e6m7"])
    with pytest.raises(PepppError, match="high format e6m7"):
        make_grid(["e3m1"], ["e6m7", "e6m7"])
    with pytest.raises(PepppError, match="at least one"):
        make_grid([], ["e6m7"])


def test_parse_grid_forms():
    assert parse_grid("paper") == paper_grid()
    listed = parse_grid("e3m1/e6m7, e5m2/e8m11,fp32")
    assert [str(c) for c in listed] == ["e3m1/e6m7", "e5m2/e8m11", "fp32"]
    product = parse_grid("e3m1,e4m3 x e6m7,e8m9")
    assert product == make_grid(["e3m1", "e4m3"], ["e6m7", "e8m9"])
    assert parse_grid("fixed8.6 x block8@0") == (PrecisionConfig(FixedFormat(8, 6), BlockFormat(8, 0)),)
    assert [str(c) for c in parse_grid("fp32")] == ["fp32"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("e3m1/e6m7,e3m1/e6m7", "configuration e3m1/e6m7 appears twice"),
        ("fp32,fp32/fp32", "configuration fp32 appears twice"),
        ("e3m1,e3m1 x e6m7", "low format e3m1 appears twice"),
        ("e3m1/e6m7,,fp32", "empty entry"),
        ("e3m1 x e6m7 x e8m9", "more than one"),
        ("e3m1 x ", "empty entry|LOW/HIGH"),
        ("e3m1/e6m7,e4m3", "LOW/HIGH"),
    ],
)
def test_parse_grid_rejections(text, match):
    with pytest.raises(PepppError, match=match):
        parse_grid(text)


def test_formats_module_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, peppp.formats; assert 'torch' not in sys.modules and 'qtorch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_integers_become_plain_ints():
    np = pytest.importorskip("numpy")
    fmt = FloatFormat(np.int64(4), np.int32(3))
    assert type(fmt.exp) is int and fmt == FloatFormat(4, 3) and str(fmt) == "e4m3"
    assert type(BlockFormat(np.int64(8), np.int64(0)).dim) is int
    with pytest.raises(PepppError):
        BlockFormat(8, True)


HARDWARE_AND_MX = ["fp8.e4m3", "fp8.e5m2", "bf16", "fp16", "mxfp8.e4m3", "mxfp8.e5m2", "mxfp6.e2m3", "mxfp6.e3m2",
                   "mxfp4.e2m1", "mxint8"]


@pytest.mark.parametrize("text", HARDWARE_AND_MX)
def test_hardware_and_mx_formats_round_trip(text):
    fmt = parse_format(text.upper())
    assert str(fmt) == text and parse_format(str(fmt)) == fmt


def test_hardware_and_mx_bits_and_families():
    from peppp.formats import ELEMENT_FORMATS, MX_BLOCK, MX_SCALE_BITS

    bits = {t: parse_format(t).bits for t in HARDWARE_AND_MX}
    assert bits == {"fp8.e4m3": 8, "fp8.e5m2": 8, "bf16": 16, "fp16": 16, "mxfp8.e4m3": 8.25, "mxfp8.e5m2": 8.25,
                    "mxfp6.e2m3": 6.25, "mxfp6.e3m2": 6.25, "mxfp4.e2m1": 4.25, "mxint8": 8.25}
    assert MX_BLOCK == 32 and MX_SCALE_BITS == 8
    assert {parse_format(t).family for t in HARDWARE_AND_MX} == {"fp8", "fp16/bf16", "mx"}
    # the element formats' largest values follow from their fields (E4M3: S.1111.110 = 448)
    for name, el in ELEMENT_FORMATS.items():
        if name != "int8":
            assert el.max_value == pytest.approx(2.0**el.emax * (2 - 2.0 ** -el.man) - (2.0 ** (el.emax - el.man) if name == "e4m3" else 0))


def test_configurations_and_grids_mix_every_family():
    cfg = parse_config("mxfp4.e2m1/bf16")
    assert str(cfg) == "mxfp4.e2m1/bf16" and cfg.low_bits == 4.25
    grid = parse_grid("mxint8,e4m3,fixed8.6 x fp16,e8m7")
    assert [str(c) for c in grid][:2] == ["mxint8/fp16", "mxint8/e8m7"] and len(grid) == 6
    modern = parse_grid("modern")
    assert len(modern) == 16 and {str(c.high) for c in modern} == {"bf16", "fp16"}
    assert {str(c.low) for c in modern} == {"fp8.e4m3", "fp8.e5m2", *HARDWARE_AND_MX[4:]}
    assert parse_grid(" Modern ") == modern


@pytest.mark.parametrize("text", ["mxfp5", "fp8.e4m4", "mxfp4.e2m1/", "/bf16", "mxfp4.e2m1/bf16/fp16"])
def test_bad_hardware_names_list_the_families(text):
    with pytest.raises(PepppError) as info:
        parse_config(text)
    message = str(info.value)
    assert "\n" not in message and repr(text) in message
    for family in ("eXmY", "fixedW.F", "blockW", "fp8.e4m3", "bf16", "mxfp4.e2m1", "mxint8", "fp32"):
        assert family in message
