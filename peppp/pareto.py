"""Pareto frontiers of (memory, error) and the metrics that compare an estimated frontier with the true one.

Both coordinates are minimised. Every public function validates its input once (shapes, NaN, empty
sets) and then calls a private core that assumes clean 1-D float arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from peppp.errors import PepppError

__all__ = [
    "best_for_budget",
    "budget_regret",
    "budget_regrets",
    "convergence",
    "hyperdiff",
    "hypervolume",
    "pareto_indices",
    "pareto_mask",
]

ArrayLike = Sequence[float] | np.ndarray


# ----------------------------------------------------------------------------------------------------
# validation (the public edge)


def _vectors(**named: ArrayLike) -> list[np.ndarray]:
    """Named inputs as 1-D float arrays of one common length, all finite; else one-line PepppError."""
    arrays = []
    for name, values in named.items():
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise PepppError(f"{name} must be a sequence of numbers, got {type(values).__name__}") from None
        if array.ndim != 1:
            raise PepppError(f"{name} must be 1-D (one value per configuration), got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise PepppError(f"{name}[{bad}] is {array[bad]}; only finite numbers are allowed")
        arrays.append(array)
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        shapes = ", ".join(f"{name} has {len(a)}" for name, a in zip(named, arrays))
        raise PepppError(f"inputs must have one value per configuration each, but {shapes}")
    return arrays


def _positive_scale(memory_scale: float) -> float:
    scale = float(memory_scale)
    if not (np.isfinite(scale) and scale > 0):
        raise PepppError(f"memory_scale={memory_scale!r} must be a finite positive number (e.g. the largest memory)")
    return scale


def _nonempty(name: str, n: int) -> None:
    if n == 0:
        raise PepppError(f"{name} needs at least one configuration, got none")


# ----------------------------------------------------------------------------------------------------
# non-dominated set


def _pareto_mask(memory: np.ndarray, error: np.ndarray) -> np.ndarray:
    # Sort by memory, then error. Within a run of equal memory only the least error can survive, and it
    # survives when every strictly cheaper point has a strictly larger error. Exact duplicates share
    # both coordinates, so they survive or fall together.
    m = len(memory)
    order = np.lexsort((error, memory))
    mem_sorted, err_sorted = memory[order], error[order]
    new_group = np.empty(m, dtype=bool)
    new_group[0] = True
    new_group[1:] = mem_sorted[1:] != mem_sorted[:-1]
    group_id = np.cumsum(new_group) - 1
    group_min = err_sorted[new_group]  # first of each group is its least error
    best_before = np.empty_like(group_min)
    best_before[0] = np.inf
    best_before[1:] = np.minimum.accumulate(group_min)[:-1]
    keep_sorted = (err_sorted == group_min[group_id]) & (err_sorted < best_before[group_id])
    keep = np.empty(m, dtype=bool)
    keep[order] = keep_sorted
    return keep


def pareto_mask(memory_mb: ArrayLike, error: ArrayLike) -> np.ndarray:
    """Boolean mask of the non-dominated configurations (both coordinates minimised).

    A point is dominated when another is no worse in both coordinates and better in one; exact
    duplicates do not knock each other out. O(m log m). Empty input gives an empty mask.
    """
    memory, err = _vectors(memory_mb=memory_mb, error=error)
    if len(memory) == 0:
        return np.zeros(0, dtype=bool)
    return _pareto_mask(memory, err)


def pareto_indices(memory_mb: ArrayLike, error: ArrayLike) -> np.ndarray:
    """Indices of the non-dominated configurations, ordered by memory (then index): the staircase."""
    memory, err = _vectors(memory_mb=memory_mb, error=error)
    if len(memory) == 0:
        return np.zeros(0, dtype=int)
    idx = np.flatnonzero(_pareto_mask(memory, err))
    return idx[np.argsort(memory[idx], kind="stable")]


# ----------------------------------------------------------------------------------------------------
# hypervolume and the frontier-vs-frontier metrics


def _hypervolume(memory: np.ndarray, error: np.ndarray, ref_memory: float, ref_error: float) -> float:
    inside = (memory < ref_memory) & (error < ref_error)
    if not inside.any():
        return 0.0
    memory, error = memory[inside], error[inside]
    front = _pareto_mask(memory, error)
    memory, error = memory[front], error[front]
    order = np.argsort(memory, kind="stable")
    memory, error = memory[order], error[order]
    # On the front, error falls as memory grows; each step is a rectangle up to the next point's memory.
    widths = np.diff(np.append(memory, ref_memory))
    return float(np.sum(widths * (ref_error - error)))


def hypervolume(memory: ArrayLike, error: ArrayLike, *, reference: tuple[float, float] = (1.0, 1.0)) -> float:
    """Exact 2-D hypervolume dominated by the points and bounded by `reference` (minimisation).

    Points not strictly better than the reference in both coordinates contribute nothing. Empty input
    gives 0.0.
    """
    mem, err = _vectors(memory=memory, error=error)
    try:
        ref_memory, ref_error = (float(r) for r in reference)
    except (TypeError, ValueError):
        raise PepppError(f"reference={reference!r} must be two numbers (memory, error)") from None
    if not (np.isfinite(ref_memory) and np.isfinite(ref_error)):
        raise PepppError(f"reference={reference!r} must be two finite numbers")
    if len(mem) == 0:
        return 0.0
    return _hypervolume(mem, err, ref_memory, ref_error)


def hyperdiff(
    memory_mb: ArrayLike, true_error: ArrayLike, est_error: ArrayLike, *, memory_scale: float
) -> float:
    """|HV(estimated frontier) - HV(true frontier)|, memory divided by memory_scale, reference (1, 1).

    The estimated frontier uses `est_error` for every configuration (the paper's HyperDiff). Empty
    input gives 0.0.
    """
    memory, true, est = _vectors(memory_mb=memory_mb, true_error=true_error, est_error=est_error)
    scale = _positive_scale(memory_scale)
    if len(memory) == 0:
        return 0.0
    memory = memory / scale
    return abs(_hypervolume(memory, est, 1.0, 1.0) - _hypervolume(memory, true, 1.0, 1.0))


def convergence(
    memory_mb: ArrayLike, true_error: ArrayLike, est_error: ArrayLike, *, memory_scale: float
) -> float:
    """Mean Euclidean distance from each estimated-frontier point to the nearest true-frontier point.

    Points live in (memory / memory_scale, error); estimated-frontier points sit at their estimated
    error, true-frontier points at their true error. 0.0 when the frontiers coincide.
    """
    memory, true, est = _vectors(memory_mb=memory_mb, true_error=true_error, est_error=est_error)
    scale = _positive_scale(memory_scale)
    _nonempty("convergence", len(memory))
    memory = memory / scale
    true_front = _pareto_mask(memory, true)
    est_front = _pareto_mask(memory, est)
    true_points = np.column_stack([memory[true_front], true[true_front]])
    est_points = np.column_stack([memory[est_front], est[est_front]])
    if len(true_points) * len(est_points) <= 100_000:
        # Small fronts (the usual case): all pairwise distances beat building a tree.
        distances = np.sqrt(((est_points[:, None, :] - true_points[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    else:
        distances, _ = cKDTree(true_points).query(est_points)
    return float(np.mean(distances))


# ----------------------------------------------------------------------------------------------------
# recommendations under a memory budget


def _prefix_choice(memory: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Configurations sorted by (memory, index), and for every prefix the position of its best pick.

    The best pick of a prefix is its least estimate; ties go to lower memory, then lower index, which
    is the earliest position in this order, so a strict '<' record keeps the right one.
    """
    order = np.argsort(memory, kind="stable")
    est_sorted = estimate[order]
    running_min = np.minimum.accumulate(est_sorted)
    record = np.empty(len(order), dtype=bool)
    record[0] = True
    record[1:] = est_sorted[1:] < running_min[:-1]
    best_pos = np.maximum.accumulate(np.where(record, np.arange(len(order)), 0))
    return order, best_pos


def best_for_budget(memory_mb: ArrayLike, estimate: ArrayLike, budget_mb: float) -> int | None:
    """Index of the configuration of least estimate with memory <= budget_mb, or None when none fits.

    Ties go to the lower memory, then the lower index.
    """
    memory, est = _vectors(memory_mb=memory_mb, estimate=estimate)
    try:
        budget = float(budget_mb)
    except (TypeError, ValueError):
        raise PepppError(f"budget_mb={budget_mb!r} must be a number of MB") from None
    if np.isnan(budget):
        raise PepppError("budget_mb is NaN; give a memory budget in MB")
    fits = np.flatnonzero(memory <= budget)
    if len(fits) == 0:
        return None
    best = np.lexsort((fits, memory[fits], est[fits]))[0]
    return int(fits[best])


def true_frontier_budgets(memory_mb: ArrayLike, true_error: ArrayLike) -> np.ndarray:
    """The budgets a recommendation is scored at: the distinct memories of the true frontier, ascending."""
    memory, true = _vectors(memory_mb=memory_mb, true_error=true_error)
    return np.unique(memory[_pareto_mask(memory, true)])


def budget_picks(memory_mb: ArrayLike, estimate: ArrayLike, budgets_mb: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recommendations of many budgets at once, as nested candidate sets.

    Returns `order` (the configurations by memory, ties by index), `sizes` (how many of `order` each
    budget holds) and `picks` (each budget's configuration of least estimate, ties as `best_for_budget`).
    Every budget must hold at least one configuration.
    """
    memory, est = _vectors(memory_mb=memory_mb, estimate=estimate)
    order, best_pos = _prefix_choice(memory, est)
    sizes = np.searchsorted(memory[order], np.asarray(budgets_mb, dtype=float), side="right")
    if len(sizes) and sizes.min() < 1:
        raise PepppError(f"budget {float(np.min(budgets_mb)):g} MB holds no configuration")
    return order, sizes, order[best_pos[sizes - 1]]


def least_within(values: np.ndarray, order: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The least of `values` within each nested set `order[:size]` (`budget_picks`' sets), over the last
    axis: shape (..., len(sizes)). Rows of many draws go segment by segment (minimum.accumulate along
    the last axis of a 2-D array is several times slower)."""
    values = np.asarray(values)[..., np.asarray(order, dtype=int)]
    sizes = np.asarray(sizes, dtype=int)
    if values.ndim == 1:
        return np.minimum.accumulate(values)[sizes - 1]
    out = np.empty(values.shape[:-1] + (len(sizes),))
    running, start = np.full(values.shape[:-1], np.inf), 0
    for b in np.argsort(sizes, kind="stable"):
        if sizes[b] > start:
            running = np.minimum(running, values[..., start : sizes[b]].min(axis=-1))
            start = int(sizes[b])
        out[..., b] = running
    return out


def _budget_regrets(memory: np.ndarray, true: np.ndarray, est: np.ndarray) -> np.ndarray:
    order, sizes, picks = budget_picks(memory, est, true_frontier_budgets(memory, true))
    return true[picks] - least_within(true, order, sizes)


def budget_regrets(memory_mb: ArrayLike, true_error: ArrayLike, estimate: ArrayLike) -> np.ndarray:
    """Regret per budget, one per distinct memory of the true frontier (ascending).

    Regret at budget b = true error of the configuration `estimate` recommends within b minus the least
    true error within b. Pass an `estimate` in which measured configurations carry their measured error.
    """
    memory, true, est = _vectors(memory_mb=memory_mb, true_error=true_error, estimate=estimate)
    if len(memory) == 0:
        return np.zeros(0)
    return _budget_regrets(memory, true, est)


def budget_regret(memory_mb: ArrayLike, true_error: ArrayLike, estimate: ArrayLike) -> float:
    """Mean of `budget_regrets` over the budgets: the user-facing cost of trusting the estimate."""
    memory, true, est = _vectors(memory_mb=memory_mb, true_error=true_error, estimate=estimate)
    _nonempty("budget_regret", len(memory))
    return float(np.mean(_budget_regrets(memory, true, est)))
