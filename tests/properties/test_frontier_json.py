"""Random JSON, truncated and mutated frontier.json given to Frontier.from_json: a Frontier or one PepppError."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from peppp.errors import PepppError
from peppp.frontier import Frontier, FrontierPoint
from properties.support import Refused, budget, outcome

VALID = Frontier(
    dataset="fashion-mnist:0,2,4,6",
    meta_experiment="meta-paper",
    method="ed",
    recipe="paper-resnet18",
    points=(
        FrontierPoint("e3m1/e6m7", 100.0, 0.40, 0.05, False, ("fit",)),
        FrontierPoint("e4m3/e8m7", 150.0, 0.30, None, True, ("r1", "r2")),
        FrontierPoint("e8m23/e8m23", 500.0, 0.10, 0.0, True, ()),
    ),
    created_at="2025-01-02T03:04:05+00:00",
)
TEXT = VALID.to_json()

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**320), 10**320),  # beyond float range: must not overflow unchecked
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["", " ", "peppp.frontier", "e3m1/e6m7", "2025-01-02", "not a time", "\ud800"]),
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
# Every field of the schema, of the first point and of the whole point list, plus unknown ones.
PATHS = [(k,) for k in VALID.to_dict()] + [("points", 0, k) for k in VALID.points[0].to_dict()] + [
    ("points", 0), ("points", 2), ("points", 1, "run_ids", 0), ("unknown",), ("points", 1, "unknown"),
]


def _check(text) -> None:
    frontier = outcome(lambda: Frontier.from_json(text))
    if isinstance(frontier, Refused):
        return
    assert isinstance(frontier, Frontier) and frontier.points
    assert Frontier.from_json(frontier.to_json()) == frontier


@budget(150)
@given(ANY_JSON)
def test_random_json_is_a_frontier_or_one_pepppError(value):
    _check(json.dumps(value))


@budget(150)
@given(st.integers(0, len(TEXT)), st.one_of(st.just(""), st.text(max_size=8)))
@example(len(TEXT), "")
@example(0, "[" * 100_000)
def test_truncated_or_spliced_frontier_json_is_a_frontier_or_one_pepppError(cut, inserted):
    _check(TEXT[:cut] + inserted)
    _check((TEXT[:cut] + inserted).encode("utf-8", "surrogatepass"))


@budget(200)
@given(st.sampled_from(PATHS), ANY_JSON, st.booleans())
@example(("points", 0, "memory_mb"), 10**308, False)
@example(("schema_version",), 1.0, False)
def test_a_mutated_field_is_a_frontier_or_one_pepppError(path, value, delete):
    data = copy.deepcopy(VALID.to_dict())
    holder = data
    for key in path[:-1]:
        holder = holder[key]
    if delete and isinstance(holder, dict):
        holder.pop(path[-1], None)
    else:
        holder[path[-1]] = value
    _check(json.dumps(data))


@budget(100)
@given(st.binary(max_size=64))
def test_random_bytes_are_one_pepppError_or_a_frontier(payload):
    _check(payload)


def test_the_unbroken_frontier_reads_back_equal():
    assert Frontier.from_json(TEXT) == VALID == Frontier.from_json(TEXT.encode())


# Found by these tests: math.isfinite(10**309) is an OverflowError, and json.loads of an integer of
# over 4300 digits is Python's own ValueError, not a JSONDecodeError.


@pytest.mark.parametrize("field", ["memory_mb", "error", "error_std"])
def test_an_integer_beyond_float_range_is_one_pepppError(field):
    data = VALID.to_dict()
    data["points"][0][field] = 10**309
    with pytest.raises(PepppError):
        Frontier.from_json(json.dumps(data))


def test_an_integer_literal_of_more_than_4300_digits_is_one_pepppError():
    with pytest.raises(PepppError):
        Frontier.from_json(TEXT.replace('"memory_mb": 100.0', '"memory_mb": 1' + "0" * 4300))
