"""`frontier.json`, the stored form of a Frontier: its schema name, version and fields, writing it, and
reading it back. Only JSON is read: no eval, no pickle.

Reading checks what JSON can carry (types, fields, the schema and its version); the ranges and the
duplicate configurations are the values' own checks (`FrontierPoint`, `Frontier`), which run last.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from peppp.errors import PepppError
from peppp.frontier._point import BudgetLevel, FrontierPoint, is_number

if TYPE_CHECKING:
    from peppp.frontier._value import Frontier

SCHEMA = "peppp.frontier"
# Version 2 adds "budgets": how sure each memory level's pick is, from the method's joint draws (empty
# when the method has none). Version 1 files are still read (no budgets: independent normals).
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
JSON_FILE, CSV_FILE, PLOT_FILE = "frontier.json", "frontier.csv", "frontier.png"
ARTIFACT_FILES = (JSON_FILE, CSV_FILE, PLOT_FILE)
# A frontier of a few hundred configurations is tens of kB; anything far larger is not one of ours.
MAX_JSON_BYTES = 50 * 1024**2

_POINT_FIELDS = ("config", "memory_mb", "error", "error_std", "measured", "run_ids")
_BUDGET_FIELDS = ("memory_mb", "probability_best", "expected_regret")
_TOP_FIELDS = (
    "schema",
    "schema_version",
    "dataset",
    "meta_experiment",
    "method",
    "recipe",
    "created_at",
    "points",
)


def unknown_version(version: object) -> str:
    """The message for a schema_version this peppp cannot read (the value and the reader both say it)."""
    readable = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
    return f"frontier schema_version {version!r} is unknown; this peppp reads {readable}"


def _top_fields(version: int) -> tuple[str, ...]:
    return _TOP_FIELDS if version == 1 else (*_TOP_FIELDS, "budgets")


def to_dict(frontier: Frontier) -> dict:
    """The JSON object of a frontier, fields in the schema's order (version 1: no budgets)."""
    data = {
        "schema": SCHEMA,
        "schema_version": frontier.schema_version,
        "dataset": frontier.dataset,
        "meta_experiment": frontier.meta_experiment,
        "method": frontier.method,
        "recipe": frontier.recipe,
        "created_at": frontier.created_at,
        "points": [p.to_dict() for p in frontier.points],
    }
    if frontier.schema_version != 1:
        data["budgets"] = [b.to_dict() for b in frontier.budgets]
    return data


def dumps(data: dict) -> str:
    """`frontier.json` text of `to_dict`'s object; NaN or infinity is an error, never written."""
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def fields_from_dict(data: object) -> dict:
    """The Frontier's keyword arguments from parsed JSON, each field checked; any defect is a one-line PepppError."""
    if not isinstance(data, dict):
        raise PepppError(f"frontier JSON must be an object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA:
        raise PepppError(f"not a frontier: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    version = data.get("schema_version")
    # Stricter than the value's own check: JSON's 1.0 and true are not the integer 1.
    if not isinstance(version, int) or isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise PepppError(unknown_version(version) + " (upgrade peppp to read newer ones)")
    _check_fields("frontier", data, _top_fields(version), version)
    # Checked here although the value checks them too: created_at must be text before it is parsed.
    for name in ("dataset", "meta_experiment", "method", "recipe", "created_at"):
        if not isinstance(data[name], str):
            raise PepppError(f"frontier field {name!r} must be a string, got {data[name]!r}")
    try:
        datetime.fromisoformat(data["created_at"])
    except ValueError:
        raise PepppError(f"frontier created_at {data['created_at']!r} is not an ISO 8601 time") from None
    if not isinstance(data["points"], list):
        raise PepppError(f"frontier field 'points' must be a list, got {type(data['points']).__name__}")
    points = tuple(_point_from_dict(i, p) for i, p in enumerate(data["points"]))
    budgets = data.get("budgets", [])
    if not isinstance(budgets, list):
        raise PepppError(f"frontier field 'budgets' must be a list, got {type(budgets).__name__}")
    return {
        "budgets": tuple(_budget_from_dict(i, b) for i, b in enumerate(budgets)),
        "dataset": data["dataset"],
        "meta_experiment": data["meta_experiment"],
        "points": points,
        "method": data["method"],
        "recipe": data["recipe"],
        "created_at": data["created_at"],
        "schema_version": version,
    }


def loads(text: str | bytes) -> object:
    """Parse `frontier.json` text (UTF-8 when bytes); NaN, Infinity and corrupt text are one-line PepppErrors."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PepppError(f"frontier JSON is not UTF-8 text (byte {exc.start})") from None
    if not isinstance(text, str):
        raise PepppError(f"frontier JSON must be text, got {type(text).__name__}")

    def no_constants(name: str) -> None:
        raise PepppError(f"frontier JSON holds {name}; only finite numbers are allowed")

    try:
        data = json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise PepppError(f"frontier JSON is corrupt: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PepppError("frontier JSON is corrupt: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise PepppError(f"frontier JSON is corrupt: {str(exc).splitlines()[0]}") from None
    return data


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a `frontier.json` file, refusing one larger than MAX_JSON_BYTES before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise PepppError(f"{path} is {size} bytes; a frontier JSON is at most {MAX_JSON_BYTES}")
        return path.read_bytes()
    except OSError as exc:
        raise PepppError(f"cannot read frontier {path}: {exc.strerror or exc}") from None


def _check_fields(where: str, data: dict, expected: Sequence[str], version: int = SCHEMA_VERSION) -> None:
    missing = [k for k in expected if k not in data]
    if missing:
        raise PepppError(f"{where} lacks field(s) {', '.join(map(repr, missing))}")
    unknown = sorted(k for k in data if k not in expected)
    if unknown:
        raise PepppError(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; schema version "
            f"{version} allows {', '.join(expected)}"
        )


def _point_from_dict(index: int, data: object) -> FrontierPoint:
    where = f"frontier points[{index}]"
    if not isinstance(data, dict):
        raise PepppError(f"{where} must be an object, got {type(data).__name__}")
    _check_fields(where, data, _POINT_FIELDS)
    # JSON types here, named by the field's path; FrontierPoint then checks the ranges. Its own type
    # checks are looser where JSON needs none (any iterable of run ids, numpy booleans).
    if not isinstance(data["config"], str):
        raise PepppError(f"{where}.config must be a string, got {data['config']!r}")
    for name in ("memory_mb", "error"):
        if not is_number(data[name]):
            raise PepppError(f"{where}.{name} must be a number, got {data[name]!r}")
    if data["error_std"] is not None and not is_number(data["error_std"]):
        raise PepppError(f"{where}.error_std must be a number or null, got {data['error_std']!r}")
    if not isinstance(data["measured"], bool):
        raise PepppError(f"{where}.measured must be true or false, got {data['measured']!r}")
    if not isinstance(data["run_ids"], list) or not all(isinstance(r, str) for r in data["run_ids"]):
        raise PepppError(f"{where}.run_ids must be a list of strings, got {data['run_ids']!r}")
    try:
        return FrontierPoint(
            config=data["config"],
            memory_mb=data["memory_mb"],
            error=data["error"],
            error_std=data["error_std"],
            measured=data["measured"],
            run_ids=tuple(data["run_ids"]),
        )
    except PepppError as exc:
        raise PepppError(f"{where}: {exc}") from None


def _budget_from_dict(index: int, data: object) -> BudgetLevel:
    where = f"frontier budgets[{index}]"
    if not isinstance(data, dict):
        raise PepppError(f"{where} must be an object, got {type(data).__name__}")
    _check_fields(where, data, _BUDGET_FIELDS)
    for name in _BUDGET_FIELDS:
        if not is_number(data[name]):
            raise PepppError(f"{where}.{name} must be a number, got {data[name]!r}")
    try:
        return BudgetLevel(**{name: data[name] for name in _BUDGET_FIELDS})
    except PepppError as exc:
        raise PepppError(f"{where}: {exc}") from None
