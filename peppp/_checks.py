"""Every value a command or flow takes, checked once and the same way everywhere, before any work.

Two halves: strict text parsers (`parse_int`, `parse_float`: ASCII digits only, no `_`, no `nan` or
`inf`), used for command-line options and CSV cells alike; and one check per kind of option
(`positive_int`, `seed`, `megabytes`, `label`, ...), used by the commands (through `arg`, an argparse
`type=`) and again by the flows, which Prefect or a library caller may start with any value. Each
raises a one-line `PepppError` naming the option, the value and what is allowed. Standard library only.
"""

from __future__ import annotations

import argparse
import math
import re
import unicodedata
from collections.abc import Callable, Sequence

from peppp.errors import PepppError

# Datasets, recipes, networks, experiments: MLflow cuts tag values at 8,000 characters and peppp keeps
# claims in columns of a few hundred; a label is refused long before, never cut.
MAX_LABEL_CHARS = 200
SEED_LIMIT = 2**32  # numpy and torch seeds: 0 <= seed < 2**32

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_MAX_NUMBER_CHARS = 64


def parse_int(text: str, name: str) -> int:
    """`text` as an integer: ASCII digits with an optional sign (no `1_0`, no full-width digits)."""
    s = str(text).strip()
    if len(s) > _MAX_NUMBER_CHARS or not _INT.fullmatch(s):
        raise PepppError(f"{name} {_shown(text)} is not an integer (ASCII digits, e.g. 3)")
    return int(s)


def parse_float(text: str, name: str) -> float:
    """`text` as a finite number: ASCII decimal or scientific notation (no `nan`, `inf`, `1_0e-1`)."""
    s = str(text).strip()
    if len(s) > _MAX_NUMBER_CHARS or not _FLOAT.fullmatch(s):
        raise PepppError(f"{name} {_shown(text)} is not a number (ASCII decimal, e.g. 0.25 or 1e-3)")
    value = float(s)
    if not math.isfinite(value):
        raise PepppError(f"{name} {_shown(text)} is too large a number")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------------------------
# one check per kind of option


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: object, name: str, *, at_most: int | None = None, what: str = "") -> int:
    """An integer >= 1 (and <= `at_most`, where `what` says why that bound)."""
    if not _is_int(value) or value < 1:
        raise PepppError(f"{name} {_shown(value)} must be a positive integer")
    if at_most is not None and value > at_most:
        raise PepppError(f"{name} {value} is more than {what or at_most}; give at most {at_most}")
    return int(value)


def seed(value: object, name: str = "--seed") -> int:
    """A random seed: an integer in 0 .. 2**32 - 1."""
    if not _is_int(value) or not 0 <= value < SEED_LIMIT:
        raise PepppError(f"{name} {_shown(value)} must be an integer from 0 to {SEED_LIMIT - 1}")
    return int(value)


def seeds(values: object, name: str = "--seeds") -> list[int]:
    """One or more distinct seeds."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise PepppError(f"{name} {_shown(values)} must be one or more seeds")
    checked = [seed(v, name) for v in values]
    if len(set(checked)) != len(checked):
        raise PepppError(f"{name} {_shown(values)} names a seed twice")
    return checked


def megabytes(value: object, name: str) -> float:
    """A memory size in MB: a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise PepppError(f"{name} {_shown(value)} must be a finite number of MB > 0")
    return float(value)


def optional_megabytes(value: object, name: str) -> float | None:
    return None if value is None else megabytes(value, name)


def label(value: object, name: str) -> str:
    """A dataset, recipe, network or experiment name: non-empty text of at most MAX_LABEL_CHARS
    characters, no control characters; returned stripped and in Unicode NFC (one spelling, one label)."""
    if not isinstance(value, str):
        raise PepppError(f"{name} {_shown(value)} must be text")
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise PepppError(f"{name} {_shown(value)} is empty; give a name")
    if len(text) > MAX_LABEL_CHARS:
        raise PepppError(f"{name} {_shown(value)} is {len(text)} characters long; at most {MAX_LABEL_CHARS} are kept")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise PepppError(f"{name} {_shown(value)} holds a control character")
    return text


def optional_label(value: object, name: str) -> str | None:
    return None if value is None else label(value, name)


# ----------------------------------------------------------------------------------------------------
# the same checks as argparse types


def arg(check: Callable, parse: Callable[[str, str], object] | None = parse_int) -> Callable[[str], object]:
    """An argparse `type=`: the text parsed strictly (`parse`, None for text), then `check`ed; a bad
    value is a usage error (one line, exit 2) before the command does anything."""

    def convert(text: str):
        try:
            value = text if parse is None else parse(text, "value")
            return check(value, "value")
        except PepppError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    convert.__name__ = getattr(check, "__name__", "value")  # argparse names it in "invalid X value"
    return convert


def int_list(text: str, name: str) -> list[int]:
    """Comma-separated integers (`3,5,8`), each parsed strictly."""
    items = [v for v in str(text).split(",") if v.strip()]
    if not items:
        raise PepppError(f"{name} {_shown(text)} holds no integer; give a comma-separated list")
    try:
        return [parse_int(v, name) for v in items]
    except PepppError:
        raise PepppError(f"{_shown(text)} is not a comma-separated list of integers (ASCII digits)") from None
