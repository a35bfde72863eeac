"""Active search on a new dataset: embed from the stored meta-matrix, then rounds of pick -> train -> log
-> re-estimate, until n measurements or the memory budget is spent; optionally register the frontier.

Resumable: the dataset's probe runs already in the store are observed first and never trained again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows._cells import (
    TAG_PROCESS,
    CellSpec,
    canonical_dataset,
    describe,
    process_tag,
    progress_bar,
    recover_orphans,
    train_and_log,
)
from peppp.active import MetaModel
from peppp.errors import PepppError
from peppp.frontier import Frontier
from peppp.methods import DEFAULT_METHOD

TAG_DATASET = "peppp.dataset"
TAG_METHOD = "peppp.method"
TAG_ROUND = "peppp.round"


@dataclass(frozen=True)
class SearchSetup:
    """Everything a search or a re-estimation of one dataset starts from, read from the store."""

    dataset: str  # canonical name: its cells, its frontier and its registered model go by it
    recipe: str
    configs: tuple[str, ...]
    meta_datasets: tuple[str, ...]
    memory_mb: np.ndarray
    meta: MetaModel
    probes: pd.DataFrame  # the dataset's finished probe cells (ok or diverged)


@dataclass(frozen=True)
class SearchSummary:
    """What a search did and what it estimated."""

    dataset: str
    meta_experiment: str
    tracking_uri: str
    measured: tuple[str, ...]
    trained: int
    reused: int
    failed: tuple[str, ...]
    spent_mb: float
    frontier: Frontier
    round_run_ids: tuple[str, ...] = ()
    registered: tuple[str, int] | None = None


def prepare_search(
    dataset: str, meta_experiment: str, *, rank: int, recipe: str | None, tracking_uri: str, seed: int = 0
) -> SearchSetup:
    """Read the meta-training matrix (without the dataset's own row), complete and embed it, compute the
    dataset's memory for every configuration, and collect the dataset's finished probe runs."""
    from peppp.active import embed_meta_matrix
    from peppp.memory import grid_memory_mb
    from peppp.tracking import load_cells, matrices_from_cells
    from peppp.training.datasets import load_dataset
    from peppp.training.networks import network_counts
    from peppp.training.recipes import get_recipe

    name = canonical_dataset(dataset)
    cells = load_cells(meta_experiment, tracking_uri=tracking_uri)
    meta_cells = cells[(cells["role"] == "meta") & cells["status"].isin(("ok", "diverged"))]
    if meta_cells.empty:
        raise PepppError(
            f"experiment {meta_experiment!r} has no finished meta-training runs; run `peppp meta-train` into it first"
        )
    if recipe is None:
        recipes = sorted(set(meta_cells["recipe"].dropna()))
        if len(recipes) != 1:
            raise PepppError(f"{meta_experiment!r} mixes recipes {', '.join(recipes)}; pass recipe= to pick one")
        recipe = recipes[0]
    rec = get_recipe(recipe)
    others = meta_cells[meta_cells["dataset"] != name]
    if others.empty:
        raise PepppError(f"{meta_experiment!r} has meta-training runs of {name} only; it needs other datasets")
    error, _ = matrices_from_cells(others, recipe=rec.name, experiment=meta_experiment)
    meta = embed_meta_matrix(error.to_numpy(), rank=rank, seed=seed)
    configs = tuple(str(c) for c in error.columns)
    data = load_dataset(name, seed=rec.seed, max_train=rec.max_train)
    shape = (data.in_channels, *data.image_size)
    counts = network_counts(rec.network, classes=data.num_classes, input_shape=shape, batch=rec.batch_size, width=rec.width)
    memory = grid_memory_mb(configs, counts, classes=data.num_classes, batch=rec.batch_size, input_shape=shape)
    probes = cells[
        (cells["role"] == "probe")
        & (cells["dataset"] == name)
        & (cells["recipe"] == rec.name)
        & cells["status"].isin(("ok", "diverged"))
        & cells["config"].isin(configs)
    ]
    return SearchSetup(
        dataset=name,
        recipe=rec.name,
        configs=configs,
        meta_datasets=tuple(str(d) for d in error.index),
        memory_mb=np.asarray(memory, dtype=float),
        meta=meta,
        probes=probes.sort_values("start_time", kind="stable").reset_index(drop=True),
    )


def observe_probes(search, setup: SearchSetup) -> int:
    """Feed the stored probe measurements to the search in the order they were made (seeds averaged);
    returns how many configurations."""
    index = {c: i for i, c in enumerate(setup.configs)}
    count = 0
    for config, group in setup.probes.groupby("config", sort=False):
        errors = group["test_error"].dropna()
        if errors.empty:
            continue
        search.observe(index[config], float(errors.mean()), run_ids=tuple(group["run_id"]))
        count += 1
    return count


def _log_round_metrics(run_id: str, search, *, tracking_uri: str) -> None:
    from mlflow.entities import Metric

    from peppp.tracking import connect

    now = int(time.time() * 1000)
    values = {
        "n_measured": float(len(search.measured)),
        "spent_mb": search.spent_mb,
        "best_measured_error": float(search.measured_errors.min()) if search.measured else math.nan,
    }
    metrics = [Metric(k, v, now, 0) for k, v in values.items() if math.isfinite(v)]
    connect(tracking_uri).log_batch(run_id, metrics=metrics)


@flow(name="active-search", task_runner=ThreadPoolTaskRunner(max_workers=2))
def active_search(
    dataset: str,
    meta_experiment: str,
    n: int = 5,
    method: str = DEFAULT_METHOD,
    rank: int = 5,
    cap_mb: float | None = None,
    budget_mb: float | None = None,
    batch: int = 1,
    recipe: str | None = None,
    seed: int = 0,
    register_frontier: bool = False,
    tracking_uri: str | None = None,
    progress: bool = False,
    device: str = "auto",
) -> SearchSummary:
    """Estimate the (memory, error) frontier of `dataset` from at most `n` trainings (on `device`).

    Each round picks up to `batch` configurations with the design `method` (within `cap_mb`, and
    within what is left of `budget_mb`, the total memory of the measurements), trains them in
    parallel, logs them as `probe` runs under one parent run (kind `round`) and re-estimates.
    """
    from peppp.active import ActiveSearch
    from peppp.tracking import end_run, resolve_tracking_uri, start_parent_run

    uri = resolve_tracking_uri(tracking_uri)
    recover_orphans(meta_experiment, tracking_uri=uri)
    setup = prepare_search(dataset, meta_experiment, rank=rank, recipe=recipe, tracking_uri=uri, seed=seed)
    search = ActiveSearch(
        setup.configs,
        setup.meta.embeddings,
        setup.memory_mb,
        method=method,
        n=n,
        cap_mb=cap_mb,
        budget_mb=budget_mb,
        seed=seed,
        noise_std=setup.meta.noise_std,
        meta_error=setup.meta.completed,
    )
    reused = observe_probes(search, setup)
    failed: list[str] = []
    rounds: list[str] = []
    trained = 0
    bar = progress_bar(max(n - len(search.measured), 0), desc=f"search {setup.dataset}", enabled=progress)
    try:
        while not search.done:
            picks = search.next_batch(batch)
            if not picks:
                break
            round_id = start_parent_run(
                meta_experiment,
                kind="round",
                name=f"{setup.dataset} round {len(rounds) + 1}",
                tags={
                    TAG_DATASET: setup.dataset,
                    TAG_METHOD: method,
                    TAG_ROUND: str(len(rounds) + 1),
                    "peppp.recipe": setup.recipe,
                    TAG_PROCESS: process_tag(),
                },
                tracking_uri=uri,
            )
            rounds.append(round_id)
            status = "FAILED"
            try:
                specs = [CellSpec(setup.dataset, setup.configs[i], seed) for i in picks]
                by_config = dict(zip((s.config for s in specs), picks))
                for cell in train_and_log(
                    specs, recipe=setup.recipe, experiment=meta_experiment, role="probe",
                    parent_run_id=round_id, tracking_uri=uri, device=device,
                ):
                    index = by_config[cell.spec.config]
                    trained += 1
                    if cell.result.status == "failed" or not math.isfinite(cell.result.error):
                        search.observe_failure(index)
                        failed.append(cell.spec.config)
                    else:
                        search.observe(index, cell.result.error, run_ids=(cell.run_id,))
                    bar.set_postfix_str(describe(cell), refresh=False)
                    bar.update()
                _log_round_metrics(round_id, search, tracking_uri=uri)
                status = "FINISHED"
            finally:
                end_run(round_id, status=status, tracking_uri=uri)
    finally:
        bar.close()
    if not search.measured:
        raise PepppError(
            f"no configuration of {setup.dataset} could be measured"
            + (f" ({len(failed)} failed)" if failed else " within the memory cap and budget")
        )
    frontier, registered = finish(search, setup, meta_experiment, method=method, register=register_frontier, tracking_uri=uri)
    return SearchSummary(
        dataset=setup.dataset,
        meta_experiment=meta_experiment,
        tracking_uri=uri,
        measured=tuple(setup.configs[i] for i in search.measured),
        trained=trained,
        reused=reused,
        failed=tuple(failed),
        spent_mb=search.spent_mb,
        frontier=frontier,
        round_run_ids=tuple(rounds),
        registered=registered,
    )


def finish(search, setup: SearchSetup, meta_experiment: str, *, method: str, register: bool, tracking_uri: str):
    """The search's frontier; with `register`, logged on a new parent run (kind `frontier`) and registered.

    Returns (frontier, (model name, version) or None).
    """
    from peppp.registry import register_frontier
    from peppp.tracking import end_run, start_parent_run

    if not register:
        return search.frontier(setup.dataset, meta_experiment, method, recipe=setup.recipe), None
    run_id = start_parent_run(
        meta_experiment,
        kind="frontier",
        name=f"{setup.dataset} frontier",
        tags={TAG_DATASET: setup.dataset, TAG_METHOD: method, "peppp.recipe": setup.recipe},
        tracking_uri=tracking_uri,
    )
    status = "FAILED"
    try:
        frontier = search.frontier(
            setup.dataset, meta_experiment, method, recipe=setup.recipe, fit_run_ids=(run_id,)
        )
        registered = register_frontier(frontier, run_id=run_id, tracking_uri=tracking_uri)
        status = "FINISHED"
    finally:
        end_run(run_id, status=status, tracking_uri=tracking_uri)
    return frontier, registered
