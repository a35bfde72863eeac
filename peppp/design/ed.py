"""PEPPP's experiment design: greedy D-optimal picks on the embeddings, started from QR pivots."""

from __future__ import annotations

import numpy as np

from peppp.design._base import DesignStrategy, qr_pivots, ridge_scale


def rank_one_update(inverse: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(M + y y^T)^-1 from M^-1 by Sherman-Morrison; also returns u = M^-1 y and 1 + y^T M^-1 y."""
    u = inverse @ y
    denominator = 1.0 + float(y @ u)
    return inverse - np.outer(u, u) / denominator, u, denominator


def greedy_d_optimal(
    Y: np.ndarray,
    design: list[int],
    available: np.ndarray,
    n: int,
    epsilon: float,
    *,
    costs: np.ndarray | None = None,
    budget: float | None = None,
) -> list[int]:
    """Extend `design` greedily by the column of largest log-det gain (per unit cost if costs given).

    The gain of column j is log det(M + y_j y_j^T) - log det(M) = log(1 + y_j^T M^-1 y_j) with
    M = Y_S Y_S^T + epsilon I. M^-1 and every column's y_j^T M^-1 y_j are kept up to date by rank-one
    (Sherman-Morrison) updates: O(k m) per pick, no inverse after the first. With a budget only columns
    that still fit are considered, and the design stops when none does.
    """
    design = list(design)
    k = Y.shape[0]
    Y_S = Y[:, design]
    inverse = np.linalg.inv(Y_S @ Y_S.T + epsilon * np.eye(k))
    quad = np.einsum("ij,ij->j", Y, inverse @ Y)  # y_j^T M^-1 y_j for every column
    free = available.copy()
    free[design] = False
    spent = 0.0 if costs is None else float(costs[design].sum())
    while len(design) < n:
        pickable = free if budget is None else free & (spent + costs <= budget * (1 + 1e-12))
        if not pickable.any():
            break
        score = np.log1p(np.maximum(quad, 0.0))
        if costs is not None:
            score = score / costs
        j = int(np.argmax(np.where(pickable, score, -np.inf)))
        inverse, u, denominator = rank_one_update(inverse, Y[:, j])
        # y_i^T M'^-1 y_i = y_i^T M^-1 y_i - (y_i^T u)^2 / (1 + y_j^T M^-1 y_j)
        quad -= (u @ Y) ** 2 / denominator
        design.append(j)
        free[j] = False
        if costs is not None:
            spent += float(costs[j])
    return design


class ExperimentDesign(DesignStrategy):
    """ED (PEPPP's choice): D-optimal design on the columns of Y, greedily.

    Starts from the first k pivots of a column-pivoted QR of Y restricted to the candidates (after
    the measured columns, projected off their span), then adds the column j maximising
    y_j^T (Y_S Y_S^T)^-1 y_j, the largest log-det gain. With n < k the design is the first n pivots.

    ridge: epsilon relative to the mean squared column norm of Y, added to Y_S Y_S^T so that the
    inverse exists when the picks do not span all k directions (few candidates); otherwise negligible.
    """

    name = "ed"

    def __init__(self, *, ridge: float = 1e-8) -> None:
        self.ridge = ridge

    def _select(self, Y, n, measured, available, costs, budget, rng) -> np.ndarray:
        k = Y.shape[0]
        design = list(measured)
        n_pivots = min(k, n) - len(design)
        if n_pivots > 0:
            design += qr_pivots(Y, measured, available, n_pivots).tolist()
        if len(design) >= n:
            return np.asarray(design[:n])
        return np.asarray(greedy_d_optimal(Y, design, available, n, ridge_scale(Y, self.ridge)))
