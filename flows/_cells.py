"""What every flow shares: train a batch of cells in parallel and log each one as it finishes, and clean
up after a crashed run of an earlier process."""

from __future__ import annotations

import math
import os
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.training.recipes import get_recipe

# A flow run owns its parent run; this tag says which process that is, so a later run can tell a
# crashed sweep (process gone) from one still going.
TAG_PROCESS = "peppp.process"
TRAIN_RETRIES = 2
TRAIN_RETRY_DELAY_S = 2.0
# Long enough for any one cell; a crashed sweep's claims are freed sooner by `free_dead_claims`.
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
    import sys

    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return None
    return name if isinstance(name, int) else None


def _take_claim(spec: CellSpec, recipe: str, claim: CellClaim) -> bool:
    from peppp.tracking import claim_cell, release_claim

    key = claim_key(spec, recipe, claim.role)
    if not claim_cell(claim.experiment, key, owner=claim.owner, ttl_s=claim.ttl_s, tracking_uri=claim.tracking_uri):
        return False
    # Another sweep may have logged the cell and released its claim since this sweep planned it.
    if spec.seed in _seeds_logged(claim.experiment, cell_key(spec, recipe), role=claim.role, tracking_uri=claim.tracking_uri):
        release_claim(claim.experiment, key, owner=claim.owner, tracking_uri=claim.tracking_uri)
        return False
    return True


def _seeds_logged(experiment: str, key: str, *, role: str, tracking_uri: str) -> set[int]:
    from mlflow.entities import ViewType

    from peppp.tracking import connect
    from peppp.tracking.runs import TAG_CELL_KEY, TAG_ROLE, TAG_STATUS

    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return set()
    quoted = key.replace("'", "\\'")
    runs = _search_all(
        client, found.experiment_id,
        f"attributes.status = 'FINISHED' and tags.`{TAG_ROLE}` = '{role}' and tags.`{TAG_CELL_KEY}` = '{quoted}'",
        ViewType.ACTIVE_ONLY,
    )
    return {int(r.data.params.get("seed", "0")) for r in runs if r.data.tags.get(TAG_STATUS) in ("ok", "diverged")}


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


def free_dead_claims(experiment: str, *, tracking_uri: str) -> int:
    """Release claims whose owner (a sweep's parent run) is no longer RUNNING, e.g. closed as KILLED by
    `recover_orphans`; returns how many. Call after `recover_orphans`."""
    from mlflow.exceptions import MlflowException

    from peppp.tracking import connect, list_claims, release_claim

    client = connect(tracking_uri)
    freed = 0
    status: dict[str, str] = {}
    for claim in list_claims(experiment, tracking_uri=tracking_uri):
        if claim.owner not in status:
            try:
                status[claim.owner] = client.get_run(claim.owner).info.status
            except MlflowException:
                status[claim.owner] = "GONE"
        if status[claim.owner] != "RUNNING":
            freed += release_claim(experiment, claim.cell_key, owner=claim.owner, tracking_uri=tracking_uri)
    return freed


# ----------------------------------------------------------------------------------------------------
# crashed runs


def process_tag() -> str:
    """`host:pid:start` of this process; `start` tells a live process from a later one reusing its pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (start time since boot); the command name in field 2 may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(tag: str | None) -> bool:
    """Whether the process a parent run's tag names still runs; other hosts' processes are assumed to."""
    if not tag:
        return False
    host, _, rest = tag.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if Path("/proc").is_dir():
        return Path(f"/proc/{pid}").exists() and _start_ticks(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_orphans(experiment: str, *, tracking_uri: str) -> tuple[int, int]:
    """Clean up after a process that died mid-flow: returns (cell runs deleted, parent runs closed).

    A parent run still RUNNING whose process is gone is closed as KILLED. A cell run still RUNNING was
    cut off between its creation and its completion (MLflow writes a run in several steps) unless its
    parent is alive and logging it right now; it is deleted, so it never counts as a finished cell.
    """
    from mlflow.entities import ViewType

    from peppp.tracking import connect
    from peppp.tracking.runs import TAG_CELL_KEY, TAG_KIND, TAG_PARENT

    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return 0, 0
    running = _search_all(client, found.experiment_id, "attributes.status = 'RUNNING'", ViewType.ACTIVE_ONLY)
    parents = {r.info.run_id: r for r in running if TAG_KIND in r.data.tags}
    alive = set()
    closed = 0
    for run_id, run in parents.items():
        if process_alive(run.data.tags.get(TAG_PROCESS)):
            alive.add(run_id)
        else:
            client.set_terminated(run_id, status="KILLED")
            closed += 1
    deleted = 0
    for run in running:
        tags = run.data.tags
        if TAG_CELL_KEY in tags and tags.get(TAG_PARENT) not in alive:
            client.delete_run(run.info.run_id)
            deleted += 1
    return deleted, closed


def _search_all(client, experiment_id: str, filter_string: str, view) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, run_view_type=view, max_results=10_000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def finished_seeds(experiment: str, *, role: str, tracking_uri: str) -> dict[str, set[int]]:
    """For each cell key, the seeds already trained to the end (run FINISHED, status ok or diverged).

    Only complete runs count: a run cut off mid-logging is still RUNNING and never skips a training.
    """
    from mlflow.entities import ViewType

    from peppp.tracking import connect
    from peppp.tracking.runs import TAG_CELL_KEY, TAG_ROLE, TAG_STATUS

    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return {}
    runs = _search_all(
        client,
        found.experiment_id,
        f"attributes.status = 'FINISHED' and tags.`{TAG_ROLE}` = '{role}'",
        ViewType.ACTIVE_ONLY,
    )
    done: dict[str, set[int]] = {}
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


def progress_bar(total: int, *, desc: str, enabled: bool):
    """A tqdm bar over cells on stderr (a no-op object when disabled)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="cell", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def describe(cell: LoggedCell) -> str:
    r = cell.result
    if r.status == "failed":
        return f"{r.dataset} {r.config}: failed"
    return f"{r.dataset} {r.config}: error {r.error:.3f}"


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
