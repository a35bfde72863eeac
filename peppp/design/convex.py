"""Convex relaxations of optimal design (D-, A-, E-optimal), solved by Frank-Wolfe, then rounded."""

from __future__ import annotations

import numpy as np

from peppp.design._base import DesignStrategy, ridge_scale
from peppp.errors import PepppError

CRITERIA = ("d", "a", "e")


def relaxed_design(
    Y: np.ndarray,
    fixed: np.ndarray,
    columns: np.ndarray,
    n_free: int,
    *,
    criterion: str,
    epsilon: float,
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """Weights v of `columns` minimising the criterion of M(v) = Y_F Y_F^T + Y_C diag(v) Y_C^T + eps I.

    Subject to sum(v) <= n_free and 0 <= v <= 1, over the free columns C (the fixed ones F count fully).
    Criteria: "d" -log det M, "a" trace M^-1, "e" -lambda_min(M) (a subgradient). All decrease as v
    grows, so the linear minimiser over the feasible set puts 1 on the n_free most negative gradient
    entries; Frank-Wolfe steps 2/(t+2) towards it until the duality gap falls below tol * |objective|.
    """
    k = Y.shape[0]
    Y_C = Y[:, columns]
    base = Y[:, fixed] @ Y[:, fixed].T + epsilon * np.eye(k)
    v = np.full(len(columns), n_free / len(columns))
    for t in range(max_iter):
        M = base + (Y_C * v) @ Y_C.T
        if criterion == "d":
            inverse = np.linalg.inv(M)
            gradient = -np.einsum("ij,ij->j", Y_C, inverse @ Y_C)
            objective = -np.linalg.slogdet(M)[1]
        elif criterion == "a":
            inverse = np.linalg.inv(M)
            gradient = -np.sum((inverse @ Y_C) ** 2, axis=0)
            objective = float(np.trace(inverse))
        else:
            values, vectors = np.linalg.eigh(M)
            gradient = -((vectors[:, 0] @ Y_C) ** 2)
            objective = -float(values[0])
        vertex = np.zeros(len(columns))
        vertex[np.argsort(gradient, kind="stable")[:n_free]] = 1.0
        gap = float(gradient @ (v - vertex))
        if gap <= tol * max(abs(objective), 1.0):
            break
        v += (2.0 / (t + 2.0)) * (vertex - v)
    return v


class ConvexDesign(DesignStrategy):
    """Convex relaxation: minimise the criterion over 0 <= v <= 1, sum(v) <= n, take the n largest v.

    The measured configurations are fixed at v = 1; ties in v go to the lower index. epsilon*I (ridge
    relative to the mean squared column norm) keeps M invertible when few columns carry weight.
    """

    criterion = "d"

    def __init__(self, *, ridge: float = 1e-8, max_iter: int = 300, tol: float = 1e-4) -> None:
        self.ridge = ridge
        self.max_iter = max_iter
        self.tol = tol

    def _select(self, Y, n, measured, available, costs, budget, rng) -> np.ndarray:
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise PepppError(f"max_iter={self.max_iter!r} must be a positive integer")
        columns = np.flatnonzero(available)
        n_free = n - len(measured)
        v = relaxed_design(
            Y,
            measured,
            columns,
            n_free,
            criterion=self.criterion,
            epsilon=ridge_scale(Y, self.ridge),
            max_iter=self.max_iter,
            tol=self.tol,
        )
        order = np.lexsort((columns, -v))[:n_free]
        return np.concatenate([measured, columns[order]]).astype(int)


class ConvexDOptimal(ConvexDesign):
    """D-optimal relaxation: minimise -log det(Y diag(v) Y^T)."""

    name = "convex-d"
    criterion = "d"


class ConvexAOptimal(ConvexDesign):
    """A-optimal relaxation: minimise trace((Y diag(v) Y^T)^-1)."""

    name = "convex-a"
    criterion = "a"


class ConvexEOptimal(ConvexDesign):
    """E-optimal relaxation: maximise the smallest eigenvalue of Y diag(v) Y^T."""

    name = "convex-e"
    criterion = "e"
