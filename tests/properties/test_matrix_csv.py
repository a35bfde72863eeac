"""Random, CSV-shaped and broken bytes given to both matrix CSV readers: valid matrices or one PepppError."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from peppp import evaluate
from peppp.errors import PepppError
from peppp.formats import parse_config
from peppp.tracking import transfer
from properties.support import (
    NOT_UTF8,
    ROW_LONGER_THAN_HEADER,
    Refused,
    budget,
    csv_bytes,
    outcome,
    paper_slice,
)

ERROR = paper_slice("error.csv")
MEMORY = paper_slice("memory_mb.csv")
# Bugs of peppp.tracking.transfer.read_matrix_csv, pinned by the xfail tests at the end of this file.
TRANSFER_BUGS = (NOT_UTF8, ROW_LONGER_THAN_HEADER)

_counter = itertools.count()


def _write(folder: Path, payload: bytes) -> Path:
    """A new file per example: hypothesis reuses the test's tmp folder for all of them."""
    path = folder / f"m{next(_counter)}.csv"
    path.write_bytes(payload)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csv")


def _check_evaluate_pair(error: pd.DataFrame, memory: pd.DataFrame) -> None:
    """What load_matrices promises: aligned, complete, errors in [0, 1], memory finite and positive."""
    assert error.index.equals(memory.index) and error.columns.equals(memory.columns)
    assert error.index.is_unique and error.columns.is_unique and error.size > 0
    e, m = error.to_numpy(), memory.to_numpy()
    assert e.dtype == float and m.dtype == float
    assert not np.isnan(e).any() and ((e >= 0) & (e <= 1)).all()
    assert np.isfinite(m).all() and (m > 0).all()


def _check_transfer_pair(error: pd.DataFrame, memory: pd.DataFrame) -> None:
    """What import_matrix relies on: aligned labels, valid configurations, errors in [0, 1] or missing,
    memory finite and positive wherever an error is measured, at least one measured cell."""
    assert error.index.equals(memory.index) and error.columns.equals(memory.columns)
    assert error.index.is_unique and error.columns.is_unique
    assert all(isinstance(name, str) and name.strip() == name and name for name in error.index)
    for config in error.columns:
        parse_config(config)
    e, m = error.to_numpy(dtype=float), memory.to_numpy(dtype=float)
    measured = ~np.isnan(e)
    assert measured.any()
    assert ((e[measured] >= 0) & (e[measured] <= 1)).all()
    assert (np.isfinite(m[measured]) & (m[measured] > 0)).all()


@budget(150)
@given(csv_bytes(ERROR), csv_bytes(MEMORY))
@example(ERROR, MEMORY)
@example(ERROR[:-30], MEMORY)
@example(b"", b"")
def test_evaluate_load_matrices_gives_valid_matrices_or_one_pepppError(folder, error_bytes, memory_bytes):
    error_csv, memory_csv = _write(folder, error_bytes), _write(folder, memory_bytes)
    loaded = outcome(lambda: evaluate.load_matrices(str(error_csv), str(memory_csv)))
    if not isinstance(loaded, Refused):
        _check_evaluate_pair(*loaded)
    single = outcome(lambda: evaluate.read_matrix_csv(str(error_csv), what="error"))
    if not isinstance(single, Refused):
        assert single.size > 0 and single.to_numpy().dtype == float and single.index.is_unique


@budget(150)
@given(csv_bytes(ERROR), csv_bytes(MEMORY))
@example(ERROR, MEMORY)
@example(ERROR[:-30], MEMORY)
@example(b"", b"")
def test_import_reader_gives_valid_matrices_or_one_pepppError(folder, error_bytes, memory_bytes):
    error_csv, memory_csv = _write(folder, error_bytes), _write(folder, memory_bytes)
    error = outcome(lambda: transfer.read_matrix_csv(error_csv, what="error"), known=TRANSFER_BUGS)
    memory = outcome(lambda: transfer.read_matrix_csv(memory_csv, what="memory"), known=TRANSFER_BUGS)
    if isinstance(error, Refused) or isinstance(memory, Refused):
        return
    pair = outcome(lambda: transfer.validate_matrices(error, memory))
    if not isinstance(pair, Refused):
        _check_transfer_pair(*pair)


def test_the_unbroken_slices_load_in_both_readers(folder):
    """The property tests above only mean something if the valid slice is accepted."""
    error, memory = evaluate.load_matrices(str(_write(folder, ERROR)), str(_write(folder, MEMORY)))
    assert error.shape == (3, 6)
    imported = transfer.validate_matrices(
        transfer.read_matrix_csv(_write(folder, ERROR)), transfer.read_matrix_csv(_write(folder, MEMORY))
    )
    pd.testing.assert_frame_equal(imported[0], error)


_TRANSFER_XFAIL = "bug in peppp.tracking.transfer.read_matrix_csv: "


@pytest.mark.xfail(strict=True, raises=UnicodeDecodeError,
                   reason=_TRANSFER_XFAIL + "a CSV that is not UTF-8 raises UnicodeDecodeError (header read)")
def test_import_reader_refuses_bytes_that_are_not_utf8(folder):
    with pytest.raises(PepppError):
        transfer.read_matrix_csv(_write(folder, b"\x80"))


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason=_TRANSFER_XFAIL + "a data row longer than the header raises pandas' 'Length mismatch'")
def test_import_reader_refuses_a_row_longer_than_the_header(folder):
    with pytest.raises(PepppError):
        transfer.read_matrix_csv(_write(folder, b"dataset,a\nx,1,2\n"))


@pytest.mark.xfail(strict=True, raises=csv.Error,
                   reason=_TRANSFER_XFAIL + "a header field over csv.field_size_limit() (128 KiB) raises csv.Error")
def test_import_reader_refuses_a_header_field_over_the_csv_limit(folder):
    with pytest.raises(PepppError):
        transfer.read_matrix_csv(_write(folder, b"dataset," + b"a" * (csv.field_size_limit() + 1) + b"\nx,1\n"))
