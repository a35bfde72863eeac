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
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows._report import frontier_page, run_logger
from flows._sweep import CellSpec, canonical_dataset, cell_summary, progress_bar, train_and_log
from peppp import _checks as checks
from peppp.active import MetaModel
from peppp.errors import PepppError
from peppp.frontier import Frontier
from peppp.methods import DEFAULT_METHOD
from peppp.tracking.tags import KIND_FRONTIER, KIND_ROUND, TAG_DATASET, TAG_METHOD, TAG_RECIPE, TAG_ROUND


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
    from peppp.tracking import search_cells
    from peppp.training.datasets import load_dataset
    from peppp.training.networks import network_counts
    from peppp.training.recipes import get_recipe

    name = canonical_dataset(dataset)
    found = search_cells(meta_experiment, name, recipe=None if recipe is None else get_recipe(recipe).name,
                         tracking_uri=tracking_uri)
    rec = get_recipe(found.recipe)
    meta = embed_meta_matrix(found.error.to_numpy(), rank=rank, seed=seed)
    configs = tuple(str(c) for c in found.error.columns)
    data = load_dataset(name, seed=rec.seed, max_train=rec.max_train)
    shape = (data.in_channels, *data.image_size)
    counts = network_counts(rec.network, classes=data.num_classes, input_shape=shape, batch=rec.batch_size, width=rec.width)
    memory = grid_memory_mb(configs, counts, classes=data.num_classes, batch=rec.batch_size, input_shape=shape)
    return SearchSetup(
        dataset=name,
        recipe=rec.name,
        configs=configs,
        meta_datasets=tuple(str(d) for d in found.error.index),
        memory_mb=np.asarray(memory, dtype=float),
        meta=meta,
        probes=found.probes,
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


def check_search_values(*, dataset, meta_experiment, n, rank, cap_mb, budget_mb, batch, recipe, seed) -> None:
    """The search's values, each checked as the command checks it, before any work."""
    checks.label(dataset, "dataset")
    checks.label(meta_experiment, "meta_experiment")
    for name, value in (("n", n), ("rank", rank), ("batch", batch)):
        checks.positive_int(value, name)
    checks.optional_megabytes(cap_mb, "cap_mb")
    checks.optional_megabytes(budget_mb, "budget_mb")
    checks.optional_label(recipe, "recipe")
    checks.seed(seed, "seed")


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
    from peppp.tracking import log_frontier_plot, log_metrics, parent_run, recover_orphans, resolve_tracking_uri

    check_search_values(dataset=dataset, meta_experiment=meta_experiment, n=n, rank=rank, cap_mb=cap_mb,
                        budget_mb=budget_mb, batch=batch, recipe=recipe, seed=seed)
    log = run_logger()
    uri = resolve_tracking_uri(tracking_uri)
    recover_orphans(meta_experiment, tracking_uri=uri)
    setup = prepare_search_task(dataset, meta_experiment, rank=rank, recipe=recipe, tracking_uri=uri, seed=seed)
    # As `peppp evaluate`: more measurements than configurations is a mistake, not "train them all".
    checks.positive_int(n, "n", at_most=len(setup.configs), what=f"the {len(setup.configs)} configurations of the grid")
    log.info(f"{setup.dataset}: {len(setup.configs)} configurations, meta-matrix of {len(setup.meta_datasets)} "
             f"datasets from {meta_experiment!r} (recipe {setup.recipe}), method {method}, n {n}")
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
        meta_observed=setup.meta.observed,
    )
    reused = observe_probes(search, setup)
    if reused:
        log.info(f"{reused} configurations already measured in earlier runs: observed, not trained again")
    failed: list[str] = []
    rounds: list[str] = []
    trained = 0
    bar = progress_bar(max(n - len(search.measured), 0), desc=f"search {setup.dataset}", enabled=progress)
    try:
        while not search.done:
            picks = search.next_batch(batch)
            if not picks:
                break
            number = len(rounds) + 1
            tags = {TAG_DATASET: setup.dataset, TAG_METHOD: method, TAG_ROUND: str(number), TAG_RECIPE: setup.recipe}
            chosen = ", ".join(setup.configs[i] for i in picks)
            log.info(f"round {number}: training {chosen}")
            description = (f"active-search round {number} on {setup.dataset}: method {method} picked {chosen} "
                           f"({len(search.measured)} measured before); its child runs are those trainings, its "
                           "artifact the frontier estimated after them")
            round_start = time.perf_counter()
            with parent_run(meta_experiment, kind=KIND_ROUND, name=f"{setup.dataset} round {number}", tags=tags,
                            tracking_uri=uri, description=description) as round_id:
                rounds.append(round_id)
                round_trained = round_failed = 0
                specs = [CellSpec(setup.dataset, setup.configs[i], seed) for i in picks]
                by_config = dict(zip((s.config for s in specs), picks))
                for cell in train_and_log(
                    specs, recipe=setup.recipe, experiment=meta_experiment, role="probe",
                    parent_run_id=round_id, tracking_uri=uri, device=device,
                ):
                    index = by_config[cell.spec.config]
                    trained += 1
                    round_trained += 1
                    if cell.result.status == "failed" or not math.isfinite(cell.result.error):
                        search.observe_failure(index)
                        failed.append(cell.spec.config)
                        round_failed += 1
                        log.warning(f"failed: {cell.spec.config} ({cell.result.message})")
                    else:
                        search.observe(index, cell.result.error, run_ids=(cell.run_id,))
                    bar.set_postfix_str(cell_summary(cell), refresh=False)
                    bar.update()
                log_metrics(round_id, {
                    "trained": round_trained,
                    "failed": round_failed,
                    "n_measured": float(len(search.measured)),
                    "spent_mb": search.spent_mb,
                    "best_measured_error": float(search.measured_errors.min()) if search.measured else math.nan,
                    "seconds": time.perf_counter() - round_start,
                }, tracking_uri=uri)
                if search.measured:
                    log_frontier_plot(round_id, search.frontier(setup.dataset, meta_experiment, method, recipe=setup.recipe),
                                      tracking_uri=uri, budget_mb=budget_mb)
    finally:
        bar.close()
    if not search.measured:
        raise PepppError(
            f"no configuration of {setup.dataset} could be measured"
            + (f" ({len(failed)} failed)" if failed else " within the memory cap and budget")
        )
    frontier, registered = estimate_frontier(search, setup, meta_experiment, method=method, register=register_frontier,
                                             tracking_uri=uri)
    log.info(f"{setup.dataset}: {len(search.measured)} configurations measured ({trained} trained now, {reused} "
             f"reused, {len(failed)} failed), {search.spent_mb:g} MB spent; frontier of {len(frontier.pareto())} points")
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


def estimate_frontier(search, setup: SearchSetup, meta_experiment: str, *, method: str, register: bool, tracking_uri: str):
    """The search's frontier; with `register`, logged on a new parent run (kind `frontier`) and registered.

    Returns (frontier, (model name, version) or None).
    """
    from peppp.registry import register_frontier
    from peppp.tracking import parent_run

    if not register:
        return search.frontier(setup.dataset, meta_experiment, method, recipe=setup.recipe), None
    from peppp.registry import DEFAULT_ALIAS
    from peppp.tracking import log_metrics, log_params, run_link

    tags = {TAG_DATASET: setup.dataset, TAG_METHOD: method, TAG_RECIPE: setup.recipe}
    description = (f"the estimated (memory, error) frontier of {setup.dataset} by method {method} from "
                   f"{len(search.measured)} measured configurations and the meta-matrix of {len(setup.meta_datasets)} "
                   "datasets; registered in the model registry (artifacts: frontier.json, .csv, .png)")
    with parent_run(meta_experiment, kind=KIND_FRONTIER, name=f"{setup.dataset} frontier", tags=tags,
                    tracking_uri=tracking_uri, description=description) as run_id:
        frontier = search.frontier(setup.dataset, meta_experiment, method, recipe=setup.recipe, fit_run_ids=(run_id,))
        log_params(run_id, {"dataset": setup.dataset, "method": method, "recipe": setup.recipe,
                            "meta_experiment": meta_experiment, "meta_datasets": len(setup.meta_datasets),
                            "configurations": len(setup.configs)}, tracking_uri=tracking_uri)
        pareto = frontier.pareto()
        log_metrics(run_id, {"n_measured": frontier.n_measured, "spent_mb": search.spent_mb,
                             "pareto_points": len(pareto), "min_error": min(p.error for p in pareto),
                             "min_memory_mb": min(p.memory_mb for p in pareto)}, tracking_uri=tracking_uri)
        registered = register_frontier(frontier, run_id=run_id, tracking_uri=tracking_uri)
    name, version = registered
    run_logger().info(f"registered {name} version {version}; alias {DEFAULT_ALIAS!r} moved to it")
    frontier_page(dataset=setup.dataset, name=name, version=version, alias=DEFAULT_ALIAS, frontier=frontier,
                  run_link=run_link(meta_experiment, run_id, tracking_uri=tracking_uri))
    return frontier, registered


@task(name="prepare-search", cache_policy=NO_CACHE)
def prepare_search_task(dataset: str, meta_experiment: str, *, rank: int, recipe: str | None, tracking_uri: str,
                        seed: int = 0) -> SearchSetup:
    """The meta-matrix from the store, completed and embedded; the dataset's memory and earlier probes."""
    return prepare_search(dataset, meta_experiment, rank=rank, recipe=recipe, tracking_uri=tracking_uri, seed=seed)
