"""Cost-aware experiment design (as in OBOE): information gained per unit cost, within a budget."""

from __future__ import annotations

import numpy as np

from peppp.design._base import DesignStrategy, ridge_scale, span_basis
from peppp.design.ed import greedy_d_optimal


class CostAwareDesign(DesignStrategy):
    """ED with every gain divided by the configuration's cost, stopping at the budget.

    Phase 1, while the design does not span all k directions: pick the column of largest residual
    norm^2 (off the span of the design) per unit cost; with equal costs this is exactly the pivot
    order of a column-pivoted QR, ED's start. Phase 2: the column of largest log-det gain
    log(1 + y_j^T (Y_S Y_S^T)^-1 y_j) per unit cost, with ED's rank-one updates. Only columns that
    still fit in the budget are considered; the design stops when none fits. Without costs every cost
    is 1 and the design equals ED's.
    """

    name = "ed-cost"

    def __init__(self, *, ridge: float = 1e-8, span_rtol: float = 1e-10) -> None:
        self.ridge = ridge
        self.span_rtol = span_rtol

    def _select(self, Y, n, measured, available, costs, budget, rng) -> np.ndarray:
        k, m = Y.shape
        unit = np.ones(m) if costs is None else costs
        design = list(measured)
        spent = float(unit[measured].sum())
        free = available.copy()
        basis = span_basis(Y[:, measured])
        residual = Y - basis @ (basis.T @ Y)
        residual_sq = np.sum(residual**2, axis=0)
        negligible = self.span_rtol**2 * float(np.max(np.sum(Y**2, axis=0)))
        while len(design) < n and basis.shape[1] < k:
            pickable = free if budget is None else free & (spent + unit <= budget * (1 + 1e-12))
            if not pickable.any() or residual_sq[pickable].max() <= negligible:
                break
            j = int(np.argmax(np.where(pickable, residual_sq / unit, -np.inf)))
            # Gram-Schmidt against the new direction; residuals shrink by its component.
            q = residual[:, j] / np.sqrt(residual_sq[j])
            along = q @ residual
            residual -= np.outer(q, along)
            residual_sq = np.maximum(residual_sq - along**2, 0.0)
            basis = np.column_stack([basis, q])
            design.append(j)
            free[j] = False
            spent += float(unit[j])
        if len(design) < n:
            design = greedy_d_optimal(
                Y, design, free, n, ridge_scale(Y, self.ridge), costs=unit, budget=budget
            )
        return np.asarray(design)
