"""Matrices rebuilt from runs: averaging, missing cells, what counts and what does not."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from peppp.errors import PepppError
from peppp.formats import paper_grid
from peppp.tracking import (
    config_sort_key,
    connect,
    delete_run,
    finished_cells,
    get_or_create_experiment,
    load_cells,
    rebuild_matrices,
    log_cell,
    log_cells_batch,
    start_parent_run,
)
from peppp.tracking.matrix import read_cells


@pytest.fixture
def logged(store_uri, cell):
    """Two datasets x three configs with every case: seeds, a missing cell, failed, deleted, probe."""
    parent = start_parent_run("meta", kind="sweep")
    log_cells_batch(
        "meta",
        [
            cell("mnist", "e5m3/e8m11", 0.10, 300.0),
            cell("mnist", "e3m1/e6m7", 0.40, 100.0, seed=0),
            cell("mnist", "e3m1/e6m7", 0.50, 100.0, seed=1),
            cell("mnist", "e3m1/e6m11", 0.90, 150.0, status="diverged"),
            cell("digits", "e3m1/e6m7", 0.30, 90.0),
            cell("digits", "e3m1/e6m11", math.nan, 140.0, status="failed"),
        ],
        parent_run_id=parent,
    )
    deleted = log_cell("meta", cell("digits", "e5m3/e8m11", 0.99, 999.0))
    delete_run(deleted)
    log_cell("meta", cell("digits", "e5m3/e8m11", 0.77, 777.0), role="probe")
    return parent


def test_rebuild_averages_seeds_and_leaves_missing_cells_empty(logged):
    error, memory = rebuild_matrices("meta")
    expected_error = pd.DataFrame(
        [[0.45, 0.90, 0.10], [0.30, np.nan, np.nan]],
        index=pd.Index(["mnist", "digits"], name="dataset"),
        columns=["e3m1/e6m7", "e3m1/e6m11", "e5m3/e8m11"],
    )
    pd.testing.assert_frame_equal(error, expected_error)
    expected_memory = expected_error.copy()
    expected_memory.loc[:, :] = [[100.0, 150.0, 300.0], [90.0, np.nan, np.nan]]
    pd.testing.assert_frame_equal(memory, expected_memory)


def test_statuses_and_roles_choose_the_runs(logged):
    error, _ = rebuild_matrices("meta", statuses=("ok",))
    assert "e3m1/e6m11" not in error.columns  # its only runs diverged or failed
    error, memory = rebuild_matrices("meta", role="probe")
    assert error.shape == (1, 1) and error.at["digits", "e5m3/e8m11"] == 0.77
    error, _ = rebuild_matrices("meta", role=None)
    assert error.at["digits", "e5m3/e8m11"] == 0.77  # the deleted 0.99 never counts


def test_cells_are_one_row_per_active_cell_run(logged):
    assert len(load_cells("meta")) == 7  # the parent and the deleted run are not cells
    cells = load_cells("meta", role="meta")
    assert len(cells) == 6
    assert set(cells["status"]) == {"ok", "diverged", "failed"}
    assert cells["test_error"].isna().sum() == 1


def test_sql_reader_and_search_reader_agree(logged):
    client = connect()
    experiment_id = get_or_create_experiment("meta")
    for role in (None, "meta", "probe"):
        by_sql, by_search = (
            read_cells(client, experiment_id, role=role, reader=reader).sort_values("run_id", ignore_index=True)
            for reader in ("sql", "search")
        )
        pd.testing.assert_frame_equal(by_sql, by_search)


def test_rows_in_order_of_first_run_columns_in_grid_order(store_uri, cell):
    configs = [str(c) for c in paper_grid()]
    shuffled = random.Random(0).sample(configs, len(configs))
    log_cells_batch("meta", [cell(d, c) for d in ("zeta", "alpha", "mid") for c in shuffled[:7]])
    error, _ = rebuild_matrices("meta")
    assert list(error.index) == ["zeta", "alpha", "mid"]
    assert list(error.columns) == [c for c in configs if c in shuffled[:7]]


def test_config_sort_key_is_the_paper_grid_order():
    configs = [str(c) for c in paper_grid()]
    assert sorted(reversed(configs), key=config_sort_key) == configs
    assert sorted(["fp32", "e4m3/e7m9", "fixed8.6/e6m7"], key=config_sort_key) == ["e4m3/e7m9", "fixed8.6/e6m7", "fp32"]


def test_finished_cells_skip_failed_and_respect_role(logged):
    assert finished_cells("meta") == {
        "mnist|e5m3/e8m11|quick",
        "mnist|e3m1/e6m7|quick",
        "mnist|e3m1/e6m11|quick",
        "digits|e3m1/e6m7|quick",
        "digits|e5m3/e8m11|quick",
    }
    assert finished_cells("meta", role="probe") == {"digits|e5m3/e8m11|quick"}
    assert finished_cells("not-started") == set()


def test_unknown_experiment(store_uri):
    with pytest.raises(PepppError, match="no experiment named 'nope'"):
        rebuild_matrices("nope")


def test_experiment_without_runs(store_uri):
    get_or_create_experiment("empty")
    with pytest.raises(PepppError, match="no cell runs at all"):
        rebuild_matrices("empty")


def test_experiment_with_only_failed_runs(store_uri, cell):
    log_cell("meta", cell(error=math.nan, status="failed"))
    with pytest.raises(PepppError, match="no cell runs with status ok/diverged"):
        rebuild_matrices("meta")


def test_mixed_recipes_need_a_choice(store_uri, cell):
    log_cells_batch("meta", [cell(recipe="quick", error=0.2), cell(recipe="paper", error=0.3)])
    with pytest.raises(PepppError, match="mixes recipes paper, quick"):
        rebuild_matrices("meta")
    error, _ = rebuild_matrices("meta", recipe="paper")
    assert error.iloc[0, 0] == 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"statuses": ()}, "statuses"), ({"statuses": ("done",)}, "statuses"), ({"role": "x"}, "role 'x'")],
)
def test_bad_selection(logged, kwargs, match):
    with pytest.raises(PepppError, match=match):
        rebuild_matrices("meta", **kwargs)
