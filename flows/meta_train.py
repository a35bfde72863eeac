"""The meta-training sweep: datasets x configurations -> one training per cell, each logged as a run.

Resumable: cells already in the store are skipped, so a rerun after a crash trains nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect import flow
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
    names = unique_in_order(canonical_dataset(d) for d in datasets)
    grid = unique_in_order(str(parse_config(c)) for c in configs)
    if not grid:
        raise PepppError("configs is empty; give at least one precision configuration")
    seed_list = unique_in_order(int(s) for s in seeds) if seeds else []
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
    from peppp.tracking import finished_seeds, parent_run, recover_orphans, resolve_tracking_uri
    from peppp.tracking.tags import KIND_SWEEP, TAG_RECIPE
    from peppp.training.recipes import get_recipe

    uri = resolve_tracking_uri(tracking_uri)
    recipe_name = get_recipe(recipe).name
    specs = plan_cells(datasets, configs, seeds)
    recovered = recover_orphans(experiment, tracking_uri=uri)
    done = finished_seeds(experiment, role="meta", tracking_uri=uri)
    todo = [s for s in specs if s.seed not in done.get(cell_key(s, recipe), ())]
    summary = {
        "experiment": experiment, "tracking_uri": uri, "planned": len(specs), "skipped": len(specs) - len(todo),
        "recovered": recovered,
    }
    if not todo:
        return SweepSummary(trained=0, **summary)
    failed, diverged, run_ids = [], [], []
    trained = 0
    bar = progress_bar(len(todo), desc="meta-train", enabled=progress)
    try:
        with parent_run(experiment, kind=KIND_SWEEP, name=f"sweep {len(todo)} cells", tags={TAG_RECIPE: recipe_name},
                        tracking_uri=uri) as parent:
            for cell in train_and_log(
                todo, recipe=recipe, experiment=experiment, role="meta", parent_run_id=parent, tracking_uri=uri,
                claims=True, device=device,
            ):
                trained += 1
                run_ids.append(cell.run_id)
                if cell.result.status == "failed":
                    failed.append(str(cell.result.key))
                elif cell.result.status == "diverged":
                    diverged.append(str(cell.result.key))
                bar.set_postfix_str(cell_summary(cell), refresh=False)
                bar.update()
    finally:
        bar.close()
    # Cells another sweep held or logged meanwhile count as skipped.
    summary["skipped"] += len(todo) - trained
    return SweepSummary(
        trained=trained, failed=tuple(failed), diverged=tuple(diverged), parent_run_id=parent,
        run_ids=tuple(run_ids), **summary,
    )
