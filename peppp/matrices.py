"""Labelled error and memory matrices (datasets x configurations) from CSV files, checked once.

The layout is the paper's: first column `dataset` (row labels), then one column per configuration,
an empty cell for a missing measurement. Used by the evaluation (which needs every cell) and by the
import into the tracking store (which accepts missing cells).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from peppp import _checks as checks
from peppp.errors import PepppError

# The paper's 88 x 99 matrix is 60 kB; a thousand times that is still a meta-dataset, more is a mistake
# (a 50 MB CSV once took 3 minutes and 4.6 GB before it failed).
MAX_CSV_BYTES = 16 * 1024**2
MAX_CSV_CELLS = 1_000_000


def canonical_config_label(label: str) -> str:
    """A configuration column's label as the format parser writes it (`E3M1/E7M9` -> `e3m1/e7m9`), so two
    spellings of one configuration are one column; a label that is no configuration is kept as written."""
    from peppp.formats import parse_config

    try:
        return str(parse_config(label))
    except PepppError:
        return label


def read_matrix_csv(path: str | os.PathLike, *, what: str = "matrix") -> pd.DataFrame:
    """A matrix CSV as floats (datasets x configs), every label checked; exact round-trip parsing."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            # Read at most one byte past the limit: /dev/zero or a huge file is refused, not read.
            data = handle.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise PepppError(f"{what} CSV {path} is larger than {MAX_CSV_BYTES // 1024**2} MB; a matrix CSV is far smaller")
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    except FileNotFoundError:
        raise PepppError(f"{what} CSV {path} does not exist") from None
    except OSError as exc:
        raise PepppError(f"cannot read the {what} CSV {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PepppError(f"{what} CSV {path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise PepppError(f"cannot parse the {what} CSV {path}: {exc}") from None
    rows = [row for row in rows if row]  # blank lines carry nothing
    if not rows or len(rows[0]) < 2:
        raise PepppError(f"{what} CSV {path} needs a header: dataset, then one column per configuration")
    header, body = rows[0], rows[1:]
    written = [h.strip() for h in header[1:]]
    if any(not label for label in written):
        raise PepppError(f"{what} CSV {path}: header column {written.index('') + 2} has no configuration name")
    labels = []
    for j, text in enumerate(written):
        try:
            labels.append(checks.label(canonical_config_label(text), f"configuration in column {j + 2}"))
        except PepppError as exc:
            raise PepppError(f"{what} CSV {path}: {exc}") from None
    seen: dict[str, str] = {}
    for text, label in zip(written, labels):
        if label in seen:
            same = f" ({seen[label]!r} and {text!r} are one configuration)" if seen[label] != text else ""
            raise PepppError(f"{what} CSV {path}: configuration {label!r} appears twice{same}; each must appear once")
        seen[label] = text
    if not body:
        raise PepppError(f"{what} CSV {path} has no rows; it needs one row per dataset")
    if len(body) * len(labels) > MAX_CSV_CELLS:
        raise PepppError(f"{what} CSV {path} has {len(body)} x {len(labels)} cells; at most {MAX_CSV_CELLS:,} are read")
    names: list[str] = []
    values = np.full((len(body), len(labels)), np.nan)
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise PepppError(
                f"{what} CSV {path}: data row {i + 1} has {len(row)} fields but the header has {len(header)}"
            )
        if not row[0].strip():
            raise PepppError(f"{what} CSV {path}: data row {i + 1} has no dataset name")
        try:
            name = checks.label(row[0], f"dataset in data row {i + 1}")
        except PepppError as exc:
            raise PepppError(f"{what} CSV {path}: {exc}") from None
        names.append(name)
        for j, text in enumerate(row[1:]):
            text = text.strip()
            if not text:
                continue  # a missing cell
            try:
                # Strict (no nan, inf, 1_0 or full-width digits), then Python's correctly rounded float():
                # values survive a round trip exactly.
                values[i, j] = checks.parse_float(text, "cell")
            except PepppError:
                raise PepppError(f"{what} CSV {path}: cell ({name!r}, {labels[j]!r}) = {text[:40]!r} is not a number "
                                 "(ASCII decimal; leave the cell empty for a missing measurement)") from None
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise PepppError(f"{what} CSV {path}: dataset {duplicate!r} appears twice")
    frame = pd.DataFrame(values, index=pd.Index(names, name="dataset"), columns=labels)
    return frame


def align_matrices(error: pd.DataFrame, memory: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check that both matrices carry the same dataset and configuration labels; memory in error's order."""
    for axis, a, b in (("dataset", error.index, memory.index), ("configuration", error.columns, memory.columns)):
        set_a, set_b = set(a), set(b)
        only_error = [x for x in a if x not in set_b]
        only_memory = [x for x in b if x not in set_a]
        if only_error or only_memory:
            side, label = ("error", only_error[0]) if only_error else ("memory", only_memory[0])
            raise PepppError(f"{axis} {label!r} is in the {side} matrix only; both matrices need the same labels")
    return error, memory.reindex(index=error.index, columns=error.columns)


def validate_matrices(
    error: pd.DataFrame, memory: pd.DataFrame, *, complete: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check an (error, memory_mb) pair and return them aligned to the error matrix's labels.

    Errors lie in [0, 1]; every measured error has a finite, positive memory; a missing error is a
    missing cell, refused when `complete` (the evaluation needs the held-out rows' every value).
    """
    error, memory = align_matrices(error, memory)
    values = error.to_numpy(dtype=float)
    mem = memory.to_numpy(dtype=float)
    measured = ~np.isnan(values)
    if complete and not measured.all():
        i, j = np.argwhere(~measured)[0]
        raise PepppError(
            f"error matrix has {int((~measured).sum())} empty cells (first: {error.index[i]}, {error.columns[j]}); "
            "evaluation needs every cell measured"
        )
    if not measured.any():
        raise PepppError("the error matrix has no measured cell")
    bad = measured & ~((values >= 0) & (values <= 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise PepppError(f"error cell ({error.index[i]!r}, {error.columns[j]!r}) = {values[i, j]} is outside [0, 1]")
    bad = measured & ~(np.isfinite(mem) & (mem > 0))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise PepppError(
            f"memory cell ({error.index[i]!r}, {error.columns[j]!r}) = {mem[i, j]} must be a finite number of MB > 0"
        )
    return error, memory
