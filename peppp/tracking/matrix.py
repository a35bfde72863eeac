"""Matrices out: the error and memory matrices (datasets x configs) rebuilt from an experiment's runs.

Always from the runs themselves, never from a side file. On a SQL store the cells are read with one
query over MLflow's own tables (runs, tags, latest_metrics); on a server with paged `search_runs`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType

from peppp.cells import STATUSES
from peppp.errors import PepppError
from peppp.tracking.runs import (
    METRIC_ERROR,
    METRIC_MEMORY,
    METRIC_SECONDS,
    ROLES,
    TAG_CELL_KEY,
    TAG_CONFIG,
    TAG_DATASET,
    TAG_RECIPE,
    TAG_ROLE,
    TAG_STATUS,
)
from peppp.tracking._mlflow_private import select_finished_runs, sql_store
from peppp.tracking.store import connect, get_or_create_experiment, search_all_runs, store_errors

FINISHED_STATUSES = ("ok", "diverged")  # trained to the end (a diverged cell is a measurement too)
# One row per active cell run of an experiment (parent runs and deleted runs never appear).
CELL_COLUMNS = (
    "run_id",
    "start_time",
    "cell_key",
    "dataset",
    "config",
    "recipe",
    "status",
    "role",
    METRIC_ERROR,
    METRIC_MEMORY,
    METRIC_SECONDS,
)
_TAG_COLUMNS = (
    ("cell_key", TAG_CELL_KEY),
    ("dataset", TAG_DATASET),
    ("config", TAG_CONFIG),
    ("recipe", TAG_RECIPE),
    ("status", TAG_STATUS),
    ("role", TAG_ROLE),
)
_REQUIRED_TAGS = ("cell_key", "dataset", "config")
_METRIC_COLUMNS = (METRIC_ERROR, METRIC_MEMORY, METRIC_SECONDS)


def load_cells(experiment: str, *, role: str | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every active cell run of `experiment` (of one role, or all), one row each: `CELL_COLUMNS`.

    A metric that was not logged is NaN. The experiment must exist.
    """
    _check_role(role)
    client = connect(tracking_uri, create=False)
    experiment_id = get_or_create_experiment(experiment, create=False, client=client)
    return read_cells(client, experiment_id, role=role)


def read_cells(
    client: MlflowClient, experiment_id: str, *, role: str | None = None, reader: str = "auto"
) -> pd.DataFrame:
    """`load_cells` for a connected client; `reader` is `auto`, `sql` (SQL stores only) or `search`."""
    if reader not in ("auto", "sql", "search"):
        raise PepppError(f"reader {reader!r} is not one of auto, sql, search")
    store = sql_store(client) if reader != "search" else None
    if reader == "sql" and store is None:
        raise PepppError(f"the sql reader needs a SQL tracking store, not {client.tracking_uri}")
    with store_errors(f"cannot read the runs of experiment {experiment_id} from {client.tracking_uri}"):
        if store is not None:
            cells = _cells_via_sql(store, experiment_id)
        else:
            cells = _cells_via_search(client, experiment_id, role)
    if role is not None:
        cells = cells[cells["role"] == role].reset_index(drop=True)
    return cells


def _cells_via_sql(store, experiment_id: str) -> pd.DataFrame:
    rows, names = select_finished_runs(
        store, experiment_id, tags=_TAG_COLUMNS, required_tags=_REQUIRED_TAGS, metrics=_METRIC_COLUMNS
    )
    frame = pd.DataFrame(rows, columns=names)
    for key in _METRIC_COLUMNS:
        values = frame[key].astype("float64")
        frame[key] = values.mask(frame.pop(f"{key}_is_nan").fillna(False).astype(bool))
    return _typed(frame)


def _cells_via_search(client: MlflowClient, experiment_id: str, role: str | None) -> pd.DataFrame:
    filter_string = f"tags.`{TAG_ROLE}` = '{role}'" if role is not None else ""
    rows = []
    for run in search_all_runs(client, experiment_id, filter_string, ViewType.ACTIVE_ONLY):
        if run.info.status not in ("FINISHED", "FAILED"):
            continue  # cut off while it was being logged: no cell (yet)
        tags, metrics = run.data.tags, run.data.metrics
        if any(tags.get(key) is None for label, key in _TAG_COLUMNS if label in _REQUIRED_TAGS):
            continue
        rows.append(
            [run.info.run_id, run.info.start_time]
            + [tags.get(key) for _, key in _TAG_COLUMNS]
            + [metrics.get(key, math.nan) for key in _METRIC_COLUMNS]
        )
    return _typed(pd.DataFrame(rows, columns=list(CELL_COLUMNS)))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.loc[:, list(CELL_COLUMNS)]
    frame["start_time"] = frame["start_time"].astype("int64")
    for key in _METRIC_COLUMNS:
        frame[key] = frame[key].astype("float64")
    for label, _ in _TAG_COLUMNS:
        frame[label] = frame[label].astype(object)
    return frame


def rebuild_matrices(
    experiment: str,
    *,
    role: str | None = "meta",
    statuses: Iterable[str] = ("ok", "diverged"),
    recipe: str | None = None,
    tracking_uri: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (error, memory_mb) matrices of `experiment`, rebuilt from its runs.

    Datasets x configurations (index name `dataset`); a cell without runs is NaN; repeated runs of a
    cell (seeds) are averaged. Rows come in order of each dataset's first run start (so an imported
    matrix keeps its row order), columns in `config_sort_key` order (the paper's grid order for its
    configurations). Only active runs of the given role and statuses count; deleted runs never do.
    An experiment mixing recipes needs `recipe=` to say which one.
    """
    statuses = _check_statuses(statuses)
    cells = load_cells(experiment, role=role, tracking_uri=tracking_uri)
    return matrices_from_cells(cells, statuses=statuses, recipe=recipe, experiment=experiment)


def matrices_from_cells(
    cells: pd.DataFrame,
    *,
    statuses: Iterable[str] = ("ok", "diverged"),
    recipe: str | None = None,
    experiment: str = "the experiment",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pivot a `load_cells` frame into the (error, memory_mb) matrices; see `rebuild_matrices`."""
    statuses = _check_statuses(statuses)
    chosen = cells[cells["status"].isin(statuses)]
    if recipe is not None:
        chosen = chosen[chosen["recipe"] == recipe]
    if chosen.empty:
        roles = sorted(set(cells["role"].dropna()))
        raise PepppError(
            f"{experiment!r} has no cell runs with status {'/'.join(statuses)}"
            + (f" and recipe {recipe!r}" if recipe is not None else "")
            + (f" (roles present: {', '.join(roles)})" if roles else " (it has no cell runs at all)")
        )
    single_recipe(chosen, experiment=experiment)
    first_start = chosen.groupby("dataset", sort=False)["start_time"].min()
    rows = sorted(first_start.index, key=lambda d: (first_start[d], d))
    columns = sorted(chosen["config"].unique(), key=config_sort_key)
    means = chosen.groupby(["dataset", "config"], sort=False)[[METRIC_ERROR, METRIC_MEMORY]].mean()
    matrices = []
    for key in (METRIC_ERROR, METRIC_MEMORY):
        matrix = means[key].unstack("config").reindex(index=rows, columns=columns).astype("float64")
        matrix.index.name = "dataset"
        matrix.columns.name = None
        matrices.append(matrix)
    return matrices[0], matrices[1]


def single_recipe(cells: pd.DataFrame, *, experiment: str = "the experiment") -> str:
    """The one recipe of a `load_cells` frame; a frame mixing recipes needs the caller to pick one."""
    recipes = sorted(set(cells["recipe"].fillna("")))
    if len(recipes) > 1:
        raise PepppError(f"{experiment!r} mixes recipes {', '.join(recipes)}; pass recipe= to pick one")
    return recipes[0] if recipes else ""


@dataclass(frozen=True)
class SearchCells:
    """What an active search of one dataset reads from its meta-experiment."""

    recipe: str
    error: pd.DataFrame  # the meta-training error matrix of the other datasets (datasets x configurations)
    probes: pd.DataFrame  # the dataset's finished probe cells of that recipe over those configurations, by start


def search_cells(
    experiment: str, dataset: str, *, recipe: str | None = None, tracking_uri: str | None = None
) -> SearchCells:
    """The cells an active search of `dataset` (its canonical name) starts from; `recipe` None means
    the meta-training runs' one recipe."""
    cells = load_cells(experiment, tracking_uri=tracking_uri)
    finished = cells["status"].isin(FINISHED_STATUSES)
    meta = cells[(cells["role"] == "meta") & finished]
    if meta.empty:
        raise PepppError(
            f"experiment {experiment!r} has no finished meta-training runs; run `peppp meta-train` into it first"
        )
    if recipe is None:
        recipe = single_recipe(meta, experiment=experiment)
    others = meta[meta["dataset"] != dataset]
    if others.empty:
        raise PepppError(f"{experiment!r} has meta-training runs of {dataset} only; it needs other datasets")
    error, _ = matrices_from_cells(others, recipe=recipe, experiment=experiment)
    probes = cells[
        (cells["role"] == "probe")
        & (cells["dataset"] == dataset)
        & (cells["recipe"] == recipe)
        & finished
        & cells["config"].isin(error.columns)
    ]
    return SearchCells(recipe=recipe, error=error, probes=probes.sort_values("start_time", kind="stable").reset_index(drop=True))


def config_sort_key(config: str) -> tuple:
    """Order configurations by the numbers in their names: `e3m1/e6m9` before `e3m1/e6m11`.

    For float pairs this is (low exponent, low mantissa, high exponent, high mantissa), which is the
    paper's column order (9 * low_index + high_index).
    """
    return tuple(
        (1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", str(config)) if part
    )


def finished_cells(experiment: str, *, role: str | None = None, tracking_uri: str | None = None) -> set[str]:
    """Cell keys already trained to the end (status ok or diverged), to skip them on resume.

    An experiment that does not exist yet has finished nothing.
    """
    _check_role(role)
    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return set()
    cells = read_cells(client, found.experiment_id, role=role)
    return set(cells.loc[cells["status"].isin(("ok", "diverged")), "cell_key"])


def _check_role(role: str | None) -> None:
    if role is not None and role not in ROLES:
        raise PepppError(f"role {role!r} is not one of {', '.join(ROLES)} (or None for all)")


def _check_statuses(statuses: Iterable[str]) -> tuple[str, ...]:
    chosen = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    bad = [s for s in chosen if s not in STATUSES]
    if bad or not chosen:
        raise PepppError(f"statuses {chosen!r} must be a non-empty selection of {', '.join(STATUSES)}")
    return chosen


def finished_seeds(experiment: str, *, role: str, tracking_uri: str | None = None,
                   cell_key: str | None = None) -> dict[str, set[int]]:
    """For each cell key (or the one `cell_key`), the seeds already trained to the end: run FINISHED,
    status ok or diverged. A run cut off mid-logging is still RUNNING and never skips a training."""
    _check_role(role)
    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return {}
    filter_string = f"attributes.status = 'FINISHED' and tags.`{TAG_ROLE}` = '{role}'"
    if cell_key is not None:
        quoted = cell_key.replace("'", "\\'")
        filter_string += f" and tags.`{TAG_CELL_KEY}` = '{quoted}'"
    done: dict[str, set[int]] = {}
    with store_errors(f"cannot read the finished runs of {experiment!r} from {client.tracking_uri}"):
        runs = search_all_runs(client, found.experiment_id, filter_string, ViewType.ACTIVE_ONLY)
    for run in runs:
        tags = run.data.tags
        if tags.get(TAG_STATUS) not in ("ok", "diverged") or TAG_CELL_KEY not in tags:
            continue
        try:
            seed = int(run.data.params.get("seed", "0"))
        except ValueError:
            continue
        done.setdefault(tags[TAG_CELL_KEY], set()).add(seed)
    return done
