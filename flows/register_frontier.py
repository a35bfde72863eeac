"""Re-estimation: rebuild a dataset's frontier from the store (the meta-matrix as it is now and the
dataset's probe runs), compute it and register it as a new version. Trains nothing."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from flows._report import run_logger
from flows.active_search import estimate_frontier, observe_probes, prepare_search_task
from peppp.errors import PepppError
from peppp.frontier import Frontier


@dataclass(frozen=True)
class RegisterSummary:
    """The re-estimated frontier and where it was registered."""

    dataset: str
    meta_experiment: str
    tracking_uri: str
    measured: tuple[str, ...]
    meta_datasets: int
    frontier: Frontier
    registered: tuple[str, int]


def search_method(meta_experiment: str, dataset: str, *, tracking_uri: str) -> str:
    """The design method the dataset's search rounds used (from their parent runs); '' if unknown or mixed."""
    from peppp.tracking import round_methods

    methods = round_methods(meta_experiment, dataset, tracking_uri=tracking_uri)
    return methods.pop() if len(methods) == 1 else ""


@flow(name="register-frontier")
def register_frontier_flow(
    dataset: str,
    meta_experiment: str,
    rank: int = 5,
    recipe: str | None = None,
    tracking_uri: str | None = None,
) -> RegisterSummary:
    """Rebuild, complete and embed the meta-matrix, fit the dataset's probe measurements, register."""
    from peppp.active import ActiveSearch
    from peppp.methods import METHODS
    from peppp.tracking import recover_orphans, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    recover_orphans(meta_experiment, tracking_uri=uri)
    setup = prepare_search_task(dataset, meta_experiment, rank=rank, recipe=recipe, tracking_uri=uri)
    if setup.probes.empty:
        raise PepppError(
            f"{meta_experiment!r} has no finished probe runs of {setup.dataset}; "
            f"run `peppp search --dataset {setup.dataset} --meta-experiment {meta_experiment}` first"
        )
    # Re-estimate with the method the search ran (its rounds' tag), so the registered frontier is that
    # method's estimate; the paper's least squares when it is unknown or mixed.
    method = search_method(meta_experiment, setup.dataset, tracking_uri=uri)
    search = ActiveSearch(
        setup.configs,
        setup.meta.embeddings,
        setup.memory_mb,
        method=method if method in METHODS else "ed",
        n=max(1, setup.probes["config"].nunique()),
        noise_std=setup.meta.noise_std,
        meta_error=setup.meta.completed,
        meta_observed=setup.meta.observed,
    )
    observed = observe_probes(search, setup)
    run_logger().info(f"{setup.dataset}: re-estimating with method {search.method} "
                      f"from {observed} measured configurations and {len(setup.meta_datasets)} meta-training datasets")
    frontier, registered = estimate_frontier(search, setup, meta_experiment, method=method, register=True,
                                             tracking_uri=uri)
    return RegisterSummary(
        dataset=setup.dataset,
        meta_experiment=meta_experiment,
        tracking_uri=uri,
        measured=tuple(setup.configs[i] for i in search.measured),
        meta_datasets=len(setup.meta_datasets),
        frontier=frontier,
        registered=registered,
    )
