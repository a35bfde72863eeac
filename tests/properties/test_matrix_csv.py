"""Random, CSV-shaped and broken bytes given to the matrix CSV reader and both of its users (evaluation
and import): valid matrices or one PepppError."""

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
from peppp.matrices import read_matrix_csv
from peppp.tracking import transfer
from properties.support import Refused, budget, csv_bytes, outcome, paper_slice

ERROR = paper_slice("error.csv")
MEMORY = paper_slice("memory_mb.csv")
PAPER_NAMES = ["cifar10", "cifar100-aquatic_mammals", "cifar100-fish"]

_counter = itertools.count()


def _write(folder: Path, payload: bytes) -> Path:
    """A new file per example: hypothesis runs every example in the same test's folder."""
    path = folder / f"m{next(_counter)}.csv"
    path.write_bytes(payload)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csv")


def _check_labelled(matrix: pd.DataFrame) -> None:
    """Floats with unique, non-empty, stripped dataset and configuration labels."""
    assert matrix.size > 0 and matrix.to_numpy().dtype == float
    for labels in (matrix.index, matrix.columns):
        assert labels.is_unique and all(isinstance(x, str) and x and x.strip() == x for x in labels)


def _check_pair(error: pd.DataFrame, memory: pd.DataFrame, *, complete: bool) -> None:
    """Aligned; errors in [0, 1] where measured (everywhere when `complete`); memory finite and
    positive wherever an error is measured; at least one measured cell."""
    _check_labelled(error)
    assert error.index.equals(memory.index) and error.columns.equals(memory.columns)
    e, m = error.to_numpy(dtype=float), memory.to_numpy(dtype=float)
    measured = ~np.isnan(e)
    assert measured.any() and (measured.all() or not complete)
    assert ((e[measured] >= 0) & (e[measured] <= 1)).all()
    assert (np.isfinite(m[measured]) & (m[measured] > 0)).all()


@budget(150)
@given(csv_bytes(ERROR))
@example(ERROR)
@example(b"")
@example(b"\x80")
def test_read_matrix_csv_gives_a_labelled_float_matrix_or_one_pepppError(folder, payload):
    matrix = outcome(lambda: read_matrix_csv(_write(folder, payload), what="error"))
    if not isinstance(matrix, Refused):
        _check_labelled(matrix)


@budget(150)
@given(csv_bytes(ERROR), csv_bytes(MEMORY), st.lists(st.one_of(st.sampled_from(PAPER_NAMES), st.text(max_size=4)),
                                                      max_size=2))
@example(ERROR, MEMORY, [])
@example(ERROR[:-30], MEMORY, [])
@example(ERROR, MEMORY, PAPER_NAMES)
def test_evaluate_load_matrices_gives_complete_valid_matrices_or_one_pepppError(folder, error_bytes, memory_bytes,
                                                                                exclude):
    error_csv, memory_csv = _write(folder, error_bytes), _write(folder, memory_bytes)
    loaded = outcome(lambda: evaluate.load_matrices(str(error_csv), str(memory_csv), exclude=exclude))
    if not isinstance(loaded, Refused):
        _check_pair(*loaded, complete=True)
        assert not set(exclude) & set(loaded[0].index)


@budget(150)
@given(csv_bytes(ERROR), csv_bytes(MEMORY))
@example(ERROR, MEMORY)
@example(ERROR, MEMORY.replace(b"e3m1/e6m7", b"e3m1/e6m8"))
@example(ERROR, b',\x00\n"\x00\n"\x00,\x00')  # a quoted label with a newline in a cell message
def test_import_validation_gives_valid_matrices_or_one_pepppError(folder, error_bytes, memory_bytes):
    error = outcome(lambda: read_matrix_csv(_write(folder, error_bytes), what="error"))
    memory = outcome(lambda: read_matrix_csv(_write(folder, memory_bytes), what="memory"))
    if isinstance(error, Refused) or isinstance(memory, Refused):
        return
    pair = outcome(lambda: transfer.validate_import(error, memory))
    if not isinstance(pair, Refused):
        _check_pair(*pair, complete=False)
        for config in pair[0].columns:
            parse_config(config)


def test_the_unbroken_slices_load_for_evaluation_and_import(folder):
    """The properties above only mean something if the valid slices are accepted."""
    error, memory = evaluate.load_matrices(str(_write(folder, ERROR)), str(_write(folder, MEMORY)))
    assert error.shape == (3, 6) and list(error.index) == PAPER_NAMES
    imported = transfer.validate_import(
        read_matrix_csv(_write(folder, ERROR)), read_matrix_csv(_write(folder, MEMORY))
    )
    pd.testing.assert_frame_equal(imported[0], error)
    pd.testing.assert_frame_equal(imported[1], memory)


# Found by these tests in the import reader before it became peppp.matrices.read_matrix_csv.
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x80", id="not-utf8"),
        pytest.param(b"dataset,a\nx,1,2\n", id="row-longer-than-header"),
        pytest.param(b"dataset," + b"a" * (csv.field_size_limit() + 1) + b"\nx,1\n", id="field-over-csv-limit"),
    ],
)
def test_inputs_that_once_crashed_the_reader_are_one_pepppError(folder, payload):
    with pytest.raises(PepppError):
        read_matrix_csv(_write(folder, payload))
