"""The main job on embedded defaults: a small real meta-dataset (offline tasks x a grid, cpu recipe), an
active search on a held-out task, its frontier registered, and the recommendation for a budget."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import flow

from flows.active_search import SearchSummary, active_search, check_search_values
from flows.meta_train import SweepSummary, meta_train
from peppp import _checks as checks
from peppp.frontier import Recommendation
from peppp.methods import DEFAULT_METHOD

DEMO_EXPERIMENT = "peppp-demo"
# Offline tasks from `list_tasks()` small enough for about a second per cell on one core.
DEMO_META_TASKS = (
    "digits",
    "digits[0-4]",
    "digits[5-9]",
    "digits[0,2,4,6,8]",
    "digits[1,3,5,7,9]",
    "digits[1,4,7]",
    "mnist-5k@8px",
)
DEMO_HELD_OUT = "digits[3,5,8,9]"
# From the coarsest formats the method sees (e3m1 activations, e6m7 optimizer state) to e5m3/e8m11,
# and the fp32 baseline.
DEMO_CONFIGS = (
    "e3m1/e6m7",
    "e3m1/e8m11",
    "e3m2/e6m9",
    "e4m1/e7m7",
    "e4m3/e6m7",
    "e4m3/e8m11",
    "e5m2/e7m9",
    "e5m3/e8m11",
    "fp32",
)
DEMO_N = 4
DEMO_RANK = 3


@dataclass(frozen=True)
class DemoSummary:
    sweep: SweepSummary
    search: SearchSummary
    budget_mb: float
    recommendation: Recommendation
    seconds: float


@flow(name="demo")
def demo(
    experiment: str = DEMO_EXPERIMENT,
    meta_datasets: list[str] = list(DEMO_META_TASKS),  # noqa: B006 - Prefect shows JSON defaults
    held_out: str = DEMO_HELD_OUT,
    configs: list[str] = list(DEMO_CONFIGS),  # noqa: B006
    recipe: str = "cpu",
    n: int = DEMO_N,
    rank: int = DEMO_RANK,
    method: str = DEFAULT_METHOD,
    budget_mb: float | None = None,
    tracking_uri: str | None = None,
    progress: bool = False,
) -> DemoSummary:
    """meta_train -> active_search(register=True) -> the registered frontier's pick within `budget_mb`
    (default: the median memory of the held-out task's configurations). Rerunning reuses every cell."""
    import numpy as np

    from peppp.registry import fetch_frontier

    # Checked before the sweep: a bad budget found after training would have registered versions for nothing.
    checks.optional_megabytes(budget_mb, "budget_mb")
    check_search_values(dataset=held_out, meta_experiment=experiment, n=n, rank=rank, cap_mb=None, budget_mb=None,
                        batch=1, recipe=recipe, seed=0)
    start = time.perf_counter()
    sweep = meta_train(
        experiment=experiment, datasets=list(meta_datasets), configs=list(configs), recipe=recipe,
        tracking_uri=tracking_uri, progress=progress,
    )
    search = active_search(
        dataset=held_out, meta_experiment=experiment, n=n, method=method, rank=rank, register_frontier=True,
        tracking_uri=sweep.tracking_uri, progress=progress,
    )
    name, version = search.registered
    registered = fetch_frontier(name, version=version, tracking_uri=sweep.tracking_uri)
    budget = float(np.median(registered.memory_mb)) if budget_mb is None else float(budget_mb)
    return DemoSummary(
        sweep=sweep,
        search=search,
        budget_mb=budget,
        recommendation=registered.best_for(budget),
        seconds=time.perf_counter() - start,
    )
