"""How sure a pick is: the probability that it truly has the least error, and its expected regret, when
the candidates' errors are independent normals (a std of 0 being exact)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from peppp.frontier._point import FrontierPoint
from peppp.pareto import least_within

# Midpoints of this many equal-probability bins of the recommended point's error distribution: the
# probability that it is the best is then exact to about 1e-4, deterministic, and needs no seed.
_QUADRATURE_BINS = 4096


def candidate_std(points: Sequence[FrontierPoint]) -> np.ndarray | None:
    """Stds of the candidates; a measured point without one is exact, an estimated one makes it unknown."""
    std = []
    for p in points:
        if p.error_std is None:
            if not p.measured:
                return None
            std.append(0.0)
        else:
            std.append(p.error_std)
    return np.array(std)


def _survival(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """P(X_j >= x) for independent X_j ~ N(mean_j, std_j^2), std 0 meaning a point mass; shape (len(x), m)."""
    from scipy.special import ndtr

    x = x[:, None]
    exact = std == 0
    z = (x - mean) / np.where(exact, 1.0, std)
    return np.where(exact, (x <= mean).astype(float), ndtr(-z))


def probability_best(mean: np.ndarray, std: np.ndarray, pick: int) -> float:
    """P(X_pick <= X_j for every other j) for independent normals (std 0: exact)."""
    others = np.arange(len(mean)) != pick
    if not others.any():
        return 1.0
    if std[pick] == 0:
        x = np.array([mean[pick]])
        return float(np.prod(_survival(x, mean[others], std[others])))
    from scipy.special import ndtri

    u = (np.arange(_QUADRATURE_BINS) + 0.5) / _QUADRATURE_BINS
    x = mean[pick] + std[pick] * ndtri(u)
    return float(np.mean(np.prod(_survival(x, mean[others], std[others]), axis=1)))


def expected_regret(mean: np.ndarray, std: np.ndarray, pick: int) -> float:
    """E[X_pick - min_j X_j] for independent normals, via E[min] = lo + integral of P(min > x) over [lo, hi]."""
    if len(mean) == 1:
        return 0.0
    spread = 8.0 * std
    lo, hi = float(np.min(mean - spread)), float(np.max(mean + spread))
    if hi <= lo:
        return 0.0
    x = np.linspace(lo, hi, 8001)
    above = np.prod(_survival(x, mean, std), axis=1)
    expected_min = lo + float(np.sum((above[1:] + above[:-1]) * np.diff(x)) / 2)
    return max(0.0, float(mean[pick]) - expected_min)


def probability_best_nested(mean: np.ndarray, std: np.ndarray, order: np.ndarray, sizes: np.ndarray,
                            picks: np.ndarray) -> np.ndarray:
    """`probability_best` for nested candidate sets at once: set b is `order[:sizes[b]]` and its pick
    `picks[b]` (an index into `mean`, inside the set). The memory budgets of one frontier are such sets.

    Same quadrature as `probability_best`; the survival of every candidate is computed once per
    distinct pick and multiplied along `order` (as a running sum of logs), so b sets cost about as
    much as the largest one alone.
    """
    from scipy.special import ndtri

    order, sizes, picks = np.asarray(order, dtype=int), np.asarray(sizes, dtype=int), np.asarray(picks, dtype=int)
    out = np.empty(len(sizes))
    z = ndtri((np.arange(_QUADRATURE_BINS) + 0.5) / _QUADRATURE_BINS)
    for pick in np.unique(picks):
        rows = np.flatnonzero(picks == pick)
        members = order[: int(sizes[rows].max())]
        x = np.array([mean[pick]]) if std[pick] == 0 else mean[pick] + std[pick] * z
        with np.errstate(divide="ignore"):
            log_survival = np.log(_survival(x, mean[members], std[members]))
        log_survival[:, members == pick] = 0.0
        running = np.cumsum(log_survival, axis=1)
        out[rows] = np.exp(running[:, sizes[rows] - 1]).mean(axis=0)
    return out


def draws_by_budget(draws: np.ndarray, order: np.ndarray, sizes: np.ndarray,
                    picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`probability_best` and `expected_regret` of nested candidate sets from joint draws of the errors
    (draws x candidates): set b is `order[:sizes[b]]` and its pick `picks[b]`. The probability is the
    share of draws in which the pick's error is the least of its set (ties count for it), the expected
    regret the mean of the pick's error minus the set's least."""
    draws = np.asarray(draws, dtype=float)
    order, sizes, picks = np.asarray(order, dtype=int), np.asarray(sizes, dtype=int), np.asarray(picks, dtype=int)
    least = least_within(draws, order, sizes)  # (draws, sets)
    chosen = draws[:, picks]
    return (chosen <= least).mean(axis=0), np.maximum(chosen - least, 0.0).mean(axis=0)
