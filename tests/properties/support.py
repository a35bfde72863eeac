"""Shared pieces of the property tests: the example budget, the PepppError contract, broken CSVs."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from peppp.errors import PepppError

# The default run keeps every property test to a few seconds on 2 shared cores; a deeper search is
# PEPPP_PROPERTY_SCALE=20 pytest tests/properties.
SCALE = float(os.environ.get("PEPPP_PROPERTY_SCALE", "1"))


def budget(max_examples: int) -> settings:
    """Hypothesis settings for one property test: `max_examples` times the scale, no deadline (the
    machine is shared, so timing says nothing), no example database written into the work tree."""
    return settings(
        max_examples=max(1, int(max_examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


def event(label: str) -> None:
    """Count an outcome in hypothesis' statistics (`--hypothesis-show-statistics`); a no-op outside it."""
    if currently_in_test_context():
        _event(label)


@dataclass(frozen=True)
class Refused:
    """What `outcome` returns for an input the function refused: its one-line message."""

    message: str


def outcome(call: Callable[[], object]):
    """The call's result, or `Refused` for a PepppError; any other exception fails the test.

    A refusal must be one non-empty line: the CLI prints it as the whole message.
    """
    try:
        result = call()
    except PepppError as exc:
        event("refused")
        text = str(exc)
        assert text.strip(), "a PepppError without a message"
        assert "\n" not in text and "\r" not in text, f"PepppError spans several lines: {text!r}"
        return Refused(text)
    event("accepted")
    return result


# ----------------------------------------------------------------------------------------------------
# CSV matrices: valid slices of the paper's matrices and ways to break them

PAPER_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "meta" / "paper88x99"


def paper_slice(name: str, *, rows: int = 3, columns: int = 6) -> bytes:
    """The first `rows` datasets and `columns` configurations of a paper CSV, as its bytes."""
    lines = (PAPER_DIR / name).read_text().splitlines()[: rows + 1]
    return "".join(",".join(line.split(",")[: columns + 1]) + "\n" for line in lines).encode()


CELLS = st.one_of(
    st.sampled_from(["", "0.5", "0.25", "1", "0", "-0.1", "1.5", "nan", "NaN", "inf", "-inf", "1e400", "1e-400",
                     "0x1", "1_0", " 0.2 ", '"', '""', '"0.5"', "e3m1/e6m7", "e4m3/e7m9", "fp32", "dataset", "a",
                     "\x00", "\r", "NA", "None", "#", "\ufeff", "\u0661", ";", "'"]),
    st.floats().map(repr),
    st.text(max_size=4),
)
_LINES = st.lists(CELLS, max_size=5).map(",".join)
STRUCTURED = st.tuples(_LINES, st.lists(_LINES, max_size=4), st.sampled_from(["\n", "\r\n", "\r"])).map(
    lambda t: t[2].join([t[0], *t[1]]).encode("utf-8", "surrogatepass")
)


@st.composite
def broken(draw, valid: bytes) -> bytes:
    """`valid` truncated, with a stretch replaced by random bytes or a random cell, or with a line
    dropped or repeated."""
    how = draw(st.sampled_from(["truncate", "bytes", "cell", "line"]))
    if how == "truncate":
        return valid[: draw(st.integers(0, len(valid)))]
    if how == "bytes":
        start = draw(st.integers(0, len(valid)))
        end = draw(st.integers(start, min(len(valid), start + 8)))
        return valid[:start] + draw(st.binary(max_size=6)) + valid[end:]
    lines = valid.decode().split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    if how == "cell":
        cells = lines[i].split(",")
        cells[draw(st.integers(0, len(cells) - 1))] = draw(CELLS)
        lines[i] = ",".join(cells)
    elif draw(st.booleans()):
        del lines[i]
    else:
        lines.insert(i, lines[i])
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def csv_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    """Bytes for a CSV reader: random, CSV-shaped random text, `valid` itself or `valid` broken."""
    return st.one_of(st.binary(max_size=200), STRUCTURED, st.just(valid), broken(valid))
