"""What every flow shares: train a batch of cells in parallel as Prefect tasks and log each one as it
finishes. The store's side (claims, finished seeds, recovery after a crash) is peppp.tracking's."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.training.recipes import get_recipe

TRAIN_RETRIES = 2
TRAIN_RETRY_DELAY_S = 2.0
# Long enough for any one cell; a crashed sweep's claims are freed sooner by recovery (peppp.tracking.liveness).
CLAIM_TTL_S = 6 * 3600.0


@dataclass(frozen=True)
class CellSpec:
    """One training to do: a cell and the seed of this repetition."""

    dataset: str
    config: str
    seed: int = 0


@dataclass(frozen=True)
class LoggedCell:
    """A trained (or failed) cell and the run it was logged as."""

    spec: CellSpec
    result: CellResult
    run_id: str


def canonical_dataset(dataset: str) -> str:
    """The name a dataset's cells are recorded under: its canonical form (`digits[0,1,2,3,4]` ->
    `digits[0-4]`), so that any spelling of it finds the same cells."""
    from peppp.training.datasets import parse_dataset

    return str(parse_dataset(dataset))


def cell_key(spec: CellSpec, recipe: str) -> str:
    """The store's key of the cell a spec trains."""
    from peppp.cells import CellKey

    return str(CellKey(canonical_dataset(spec.dataset), spec.config, get_recipe(recipe).name))


def failed_result(spec: CellSpec, recipe: str, message: str) -> CellResult:
    """A cell that could not be trained, recorded so that the sweep can go on."""
    rec = get_recipe(recipe)
    return CellResult(
        dataset=canonical_dataset(spec.dataset),
        config=spec.config,
        recipe=rec.name,
        network=rec.network,
        seed=spec.seed,
        error=math.nan,
        memory_mb=math.nan,
        train_seconds=math.nan,
        final_loss=math.nan,
        status="failed",
        message=message,
    )


@dataclass(frozen=True)
class CellClaim:
    """Train a cell only under its claim (see peppp.tracking.claims): the store, the owner (a sweep's
    parent run id) and how long the claim lasts."""

    experiment: str
    role: str
    owner: str
    tracking_uri: str
    ttl_s: float = CLAIM_TTL_S


def claim_key(spec: CellSpec, recipe: str, role: str) -> str:
    """The claim's key of one training: role, cell key and seed."""
    return f"{role}/{cell_key(spec, recipe)}/seed={spec.seed}"


@task(
    name="train-cell",
    task_run_name="train {spec.dataset} {spec.config} seed {spec.seed}",
    retries=TRAIN_RETRIES,
    retry_delay_seconds=TRAIN_RETRY_DELAY_S,
    cache_policy=NO_CACHE,
)
def train_cell_task(
    spec: CellSpec, recipe: str, claim: CellClaim | None = None, device: str = "auto"
) -> CellResult | None:
    """Train one cell on one thread. Bad input (PepppError) fails at once, recorded and not retried;
    any other exception is taken as transient and retried, then recorded as failed by the caller.

    With a `claim`, None when another sweep holds the cell or has already logged it: nothing trained.
    `device` as `peppp train --device`; with several GPUs a cell takes the least-used one of this
    process (or, in a local Dask worker, the worker's).
    """
    from peppp.training.devices import cell_device
    from peppp.training.engine import train_cell

    if claim is not None and not _take_claim(spec, recipe, claim):
        return None
    try:
        with cell_device(device, worker_index=_dask_worker_index()) as dev:
            # One thread per cell, one cell per core: more threads per cell only contend.
            return train_cell(canonical_dataset(spec.dataset), spec.config, recipe=recipe, seed=spec.seed, threads=1,
                              device=dev)
    except PepppError as exc:
        return failed_result(spec, recipe, str(exc))


def _dask_worker_index() -> int | None:
    """This process's index among a local Dask cluster's workers (their names are 0, 1, ...), else None."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return None
    return name if isinstance(name, int) else None


def _take_claim(spec: CellSpec, recipe: str, claim: CellClaim) -> bool:
    from peppp.tracking import claim_cell, finished_seeds, release_claim

    key = claim_key(spec, recipe, claim.role)
    if not claim_cell(claim.experiment, key, owner=claim.owner, ttl_s=claim.ttl_s, tracking_uri=claim.tracking_uri):
        return False
    # Another sweep may have logged the cell and released its claim since this sweep planned it.
    ckey = cell_key(spec, recipe)
    logged = finished_seeds(claim.experiment, role=claim.role, tracking_uri=claim.tracking_uri, cell_key=ckey)
    if spec.seed in logged.get(ckey, set()):
        release_claim(claim.experiment, key, owner=claim.owner, tracking_uri=claim.tracking_uri)
        return False
    return True


@task(name="log-cell", retries=3, retry_delay_seconds=1.0, cache_policy=NO_CACHE)
def log_cell_task(
    experiment: str, result: CellResult, *, role: str, parent_run_id: str, tracking_uri: str
) -> str:
    from peppp.tracking import log_cell

    return log_cell(experiment, result, role=role, parent_run_id=parent_run_id, tracking_uri=tracking_uri)


def train_and_log(
    specs: Sequence[CellSpec],
    *,
    recipe: str,
    experiment: str,
    role: str,
    parent_run_id: str,
    tracking_uri: str,
    progress: Callable[[LoggedCell], None] | None = None,
    claims: bool = False,
    device: str = "auto",
) -> Iterator[LoggedCell]:
    """Submit every training to the flow's task runner and log each cell as soon as it is trained.

    Yields cells in the order they finish. Logging happens here, one cell at a time, so a sqlite store
    sees one writer; a cell is in the store only once its run is complete (see `recover_orphans`).
    With `claims`, each training first takes its cell's claim (owner: `parent_run_id`) and a cell that
    another sweep holds or has logged is skipped (not yielded); the claim is released once logged.
    `device` is where each cell trains (`train_cell_task`).
    """
    claim = CellClaim(experiment, role, parent_run_id, tracking_uri) if claims else None
    futures = {train_cell_task.submit(spec, recipe, claim, device): spec for spec in specs}
    for future in as_completed(list(futures)):
        spec = futures[future]
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - retries are spent: the failure is recorded, the sweep goes on
            text = str(exc).strip().splitlines()
            result = failed_result(spec, recipe, f"{type(exc).__name__}: {text[0] if text else ''}")
        if result is None:
            continue
        run_id = log_cell_task(experiment, result, role=role, parent_run_id=parent_run_id, tracking_uri=tracking_uri)
        if claim is not None:
            _release_quietly(spec, recipe, claim)
        cell = LoggedCell(spec=spec, result=result, run_id=run_id)
        if progress is not None:
            progress(cell)
        yield cell


def _release_quietly(spec: CellSpec, recipe: str, claim: CellClaim) -> None:
    from peppp.tracking import release_claim

    try:
        release_claim(claim.experiment, claim_key(spec, recipe, claim.role), owner=claim.owner,
                      tracking_uri=claim.tracking_uri)
    except PepppError:
        pass  # the cell is logged, which is what counts; its claim lapses or is freed when this sweep ends


def progress_bar(total: int, *, desc: str, enabled: bool):
    """A tqdm bar over cells on stderr (a no-op object when disabled)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="cell", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def cell_summary(cell: LoggedCell) -> str:
    """A short line for a progress bar: dataset, configuration and error (or `failed`)."""
    r = cell.result
    if r.status == "failed":
        return f"{r.dataset} {r.config}: failed"
    return f"{r.dataset} {r.config}: error {r.error:.3f}"


def unique_in_order(items: Iterable) -> list:
    """The items without repeats, in the order of first appearance."""
    return list(dict.fromkeys(items))
