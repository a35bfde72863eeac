"""The meta-training sweep: datasets x configurations -> one training per cell, each logged as a run.

Resumable: cells already in the store are skipped, so a rerun after a crash trains nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows._sweep import (
    CellSpec,
    canonical_dataset,
    cell_key,
    cell_summary,
    progress_bar,
    train_and_log,
    unique_in_order,
)
from flows._report import run_logger, sweep_table
from peppp import _checks as checks
from peppp.errors import PepppError

DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: how many cells it trained or skipped, which failed or diverged, its parent run."""

    experiment: str
    tracking_uri: str
    planned: int
    skipped: int
    trained: int
    failed: tuple[str, ...] = ()
    diverged: tuple[str, ...] = ()
    parent_run_id: str | None = None
    recovered: tuple[int, int] = (0, 0)
    run_ids: tuple[str, ...] = field(default=(), repr=False)


def plan_cells(datasets: Sequence[str], configs: Sequence[str], seeds: Sequence[int]) -> list[CellSpec]:
    """Every (dataset, configuration, seed), dataset by dataset, each name checked and made canonical."""
    from peppp.formats import parse_config

    if not datasets:
        raise PepppError("datasets is empty; give at least one dataset name")
    names = unique_in_order(canonical_dataset(checks.label(d, "dataset")) for d in datasets)
    grid = unique_in_order(str(parse_config(c)) for c in configs)
    if not grid:
        raise PepppError("configs is empty; give at least one precision configuration")
    seed_list = unique_in_order(checks.seed(s, "seed") for s in seeds) if seeds else []
    if not seed_list:
        raise PepppError("seeds is empty; give at least one seed (e.g. 0)")
    return [CellSpec(dataset=d, config=c, seed=s) for d in names for c in grid for s in seed_list]


@flow(name="meta-train", task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_WORKERS))
def meta_train(
    experiment: str,
    datasets: list[str],
    configs: list[str],
    recipe: str = "cpu",
    seeds: list[int] = [0],  # noqa: B006 - Prefect shows JSON defaults
    tracking_uri: str | None = None,
    progress: bool = False,
    device: str = "auto",
) -> SweepSummary:
    """Train every cell of datasets x configs (x seeds) that the store does not hold yet.

    One parent run (kind `sweep`) per call with a child run (role `meta`) per cell. Trainings that
    raise are retried, then logged as failed; diverged cells are logged as such; the sweep goes on.
    Each training first claims its cell, so sweeps started at once over one store train each cell once.
    The task runner is chosen by the caller: `meta_train.with_options(task_runner=flows._runner.task_runner(...))`;
    its workers are the cells trained at once (on a GPU, K per GPU: `peppp meta-train --cells-per-gpu K`).
    `device`: auto (a GPU where torch sees one), cpu, cuda or cuda:N.
    """
    from peppp.tracking import parent_run, resolve_tracking_uri
    from peppp.tracking.tags import KIND_SWEEP, TAG_RECIPE
    from peppp.training.recipes import get_recipe

    # Every value checked before anything is trained or logged (Prefect may start a flow with any value).
    experiment, recipe = checks.label(experiment, "experiment"), checks.label(recipe, "recipe")
    seeds = checks.seeds(seeds, "seeds")
    log = run_logger()
    start = time.perf_counter()
    uri = resolve_tracking_uri(tracking_uri)
    recipe_name = get_recipe(recipe).name
    specs = plan_cells(datasets, configs, seeds)
    names, grid = unique_in_order(s.dataset for s in specs), unique_in_order(s.config for s in specs)
    log.info(f"{len(specs)} cells planned: {len(names)} datasets x {len(grid)} configurations x "
             f"{len(specs) // max(len(names) * len(grid), 1)} seeds, recipe {recipe_name}, store {uri}")
    recovered = recover_task(experiment, uri)
    if any(recovered):
        log.warning(f"recovered after a dead sweep: {recovered[0]} half-written cell runs deleted, "
                    f"{recovered[1]} parent runs closed as KILLED")
    done = finished_task(experiment, uri)
    todo = [s for s in specs if s.seed not in done.get(cell_key(s, recipe), ())]
    log.info(f"{len(specs) - len(todo)} cells already in the store, {len(todo)} to train")
    summary = {
        "experiment": experiment, "tracking_uri": uri, "planned": len(specs), "skipped": len(specs) - len(todo),
        "recovered": recovered,
    }
    if not todo:
        sweep_table(experiment, [], totals={"planned": len(specs), "skipped": len(specs), "trained": 0})
        return SweepSummary(trained=0, **summary)
    failed, diverged, run_ids, rows = [], [], [], []
    trained = 0
    bar = progress_bar(len(todo), desc="meta-train", enabled=progress)
    description = (f"meta-train sweep: {len(todo)} of {len(specs)} cells ({len(names)} datasets x {len(grid)} "
                   f"configurations) trained with recipe {recipe_name}; its child runs are the cells, its "
                   "artifacts the error and memory matrices of the grid and their heatmap")
    try:
        with parent_run(experiment, kind=KIND_SWEEP, name=f"sweep {len(todo)} cells", tags={TAG_RECIPE: recipe_name},
                        tracking_uri=uri, description=description) as parent:
            for cell in train_and_log(
                todo, recipe=recipe, experiment=experiment, role="meta", parent_run_id=parent, tracking_uri=uri,
                claims=True, device=device,
            ):
                trained += 1
                run_ids.append(cell.run_id)
                r = cell.result
                rows.append({"dataset": r.dataset, "config": r.config, "seed": r.seed, "status": r.status,
                             "test_error": r.error, "memory_mb": r.memory_mb, "run_id": cell.run_id})
                if r.status == "failed":
                    failed.append(str(r.key))
                    log.warning(f"failed: {r.key} ({r.message})")
                elif r.status == "diverged":
                    diverged.append(str(r.key))
                    log.warning(f"diverged: {r.key} ({r.message})")
                bar.set_postfix_str(cell_summary(cell), refresh=False)
                bar.update()
            skipped = len(specs) - trained  # cells another sweep held or logged meanwhile count as skipped
            totals = {"planned": len(specs), "skipped": skipped, "trained": trained, "failed": len(failed),
                      "diverged": len(diverged), "seconds": time.perf_counter() - start}
            summarise_task(parent, experiment, names, grid, recipe_name, totals, uri)
    finally:
        bar.close()
    summary["skipped"] = skipped
    log.info(f"{trained} cells trained ({len(failed)} failed, {len(diverged)} diverged), {skipped} skipped, "
             f"in {totals['seconds']:.0f} s; parent run {parent}")
    sweep_table(experiment, rows, totals=totals)
    return SweepSummary(
        trained=trained, failed=tuple(failed), diverged=tuple(diverged), parent_run_id=parent,
        run_ids=tuple(run_ids), **summary,
    )


@task(name="recover-orphans", cache_policy=NO_CACHE)
def recover_task(experiment: str, tracking_uri: str) -> tuple[int, int]:
    """Close dead sweeps' parent runs, delete their half-written cells, free their claims."""
    from peppp.tracking import recover_orphans

    return recover_orphans(experiment, tracking_uri=tracking_uri)


@task(name="find-finished-cells", cache_policy=NO_CACHE)
def finished_task(experiment: str, tracking_uri: str) -> dict[str, set[int]]:
    """The cells (and seeds) the store already holds: they are skipped."""
    from peppp.tracking import finished_seeds

    return finished_seeds(experiment, role="meta", tracking_uri=tracking_uri)


@task(name="summarise-sweep", cache_policy=NO_CACHE)
def summarise_task(run_id: str, experiment: str, datasets: list[str], configs: list[str], recipe: str,
                   totals: dict, tracking_uri: str) -> bool:
    """The sweep's counts as metrics of its parent run, and the matrices of its grid as artifacts."""
    from peppp.tracking import log_params, log_sweep_summary

    log_params(run_id, {"experiment": experiment, "recipe": recipe, "datasets": len(datasets),
                        "configurations": len(configs)}, tracking_uri=tracking_uri)
    return log_sweep_summary(run_id, experiment=experiment, datasets=datasets, configs=configs, recipe=recipe,
                             counts=totals, tracking_uri=tracking_uri)
