"""The design strategy interface: which configurations of a new dataset to train, in order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from peppp._params import Params
from peppp.errors import PepppError


class DesignStrategy(Params, ABC):
    """Chooses which configurations (columns of the embeddings Y, k x m) a new dataset trains.

    Lifecycle (optuna's sampler style): construct once with keyword parameters (no state is learned),
    then call `select` any number of times. `select` validates its input once, handles the trivial
    cases, and calls the method's `_select`, which returns the ordered design; the base then enforces
    the cost budget. A new method is one subclass in its own module with a `name` and `_select`, plus a
    line in `peppp.design.DESIGNS` (the contract tests then run on it automatically).
    `get_params`, `clone` and `repr` come from `peppp._params.Params`.
    """

    name: str = ""

    def select(
        self,
        Y: np.ndarray,
        n: int,
        *,
        measured: Sequence[int] | np.ndarray = (),
        candidates: np.ndarray | None = None,
        costs: np.ndarray | None = None,
        budget: float | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> np.ndarray:
        """The full ordered design: up to n distinct column indices of Y, starting with `measured`.

        Y: embeddings (k x m). n: design size, measured configurations included.
        measured: configurations already trained; they stay, first and in the given order (they may lie
          outside `candidates`: they are trained already).
        candidates: boolean mask of length m of the configurations that may be picked (e.g. under a
          memory cap); None = all.
        costs: positive cost of each configuration (memory or time); budget: the most the whole design
          (measured included) may cost. With both, the design stops before its total cost would exceed
          the budget; a budget needs costs.
        seed: makes randomised methods deterministic; deterministic methods ignore it.
        Without a budget the design has min(n, len(measured) + number of pickable candidates) entries.
        """
        Y, n, measured, available, costs, budget = _validate(Y, n, measured, candidates, costs, budget)
        size = min(n, len(measured) + int(available.sum()))
        if size == len(measured):
            design = measured
        else:
            design = np.asarray(
                self._select(Y, size, measured, available, costs, budget, np.random.default_rng(seed)), dtype=int
            )
        return _within_budget(design, len(measured), costs, budget)

    @abstractmethod
    def _select(
        self,
        Y: np.ndarray,
        n: int,
        measured: np.ndarray,
        available: np.ndarray,
        costs: np.ndarray | None,
        budget: float | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Return the ordered design of n columns: `measured` first, then columns with `available` True.

        n > len(measured) and n <= len(measured) + available.sum() are guaranteed. A method that uses
        the budget itself may return fewer; the base cuts any design at the budget afterwards.
        """


# ----------------------------------------------------------------------------------------------------
# validation


def _validate(Y, n, measured, candidates, costs, budget):
    try:
        Y = np.asarray(Y, dtype=float)
    except (TypeError, ValueError):
        raise PepppError(f"Y must be a numeric (k x m) matrix of embeddings, got {type(Y).__name__}") from None
    if Y.ndim != 2 or 0 in Y.shape:
        raise PepppError(f"Y must be a non-empty (k x m) matrix of embeddings, got shape {Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise PepppError("Y contains NaN or infinite values; embeddings must be finite")
    m = Y.shape[1]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise PepppError(f"n={n!r} must be a non-negative integer (the number of configurations to train)")
    n = int(n)
    try:
        measured = np.asarray(measured, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise PepppError(f"measured={measured!r} must be a sequence of column indices") from None
    if np.any(measured != np.round(measured)):
        raise PepppError(f"measured={measured.tolist()} must hold integer column indices")
    measured = measured.astype(int)
    if len(measured) and (measured.min() < 0 or measured.max() >= m):
        bad = measured[(measured < 0) | (measured >= m)][0]
        raise PepppError(f"measured index {bad} is out of range; Y has {m} configurations (0..{m - 1})")
    if len(np.unique(measured)) != len(measured):
        raise PepppError(f"measured={measured.tolist()} repeats an index; each configuration is trained once")
    if len(measured) > n:
        raise PepppError(f"n={n} is smaller than the {len(measured)} measured configurations; n counts them too")
    if candidates is None:
        available = np.ones(m, dtype=bool)
    else:
        available = np.asarray(candidates)
        if available.dtype != bool or available.shape != (m,):
            raise PepppError(
                f"candidates must be a boolean mask of length {m} (one per configuration), got {available.dtype} {available.shape}"
            )
        available = available.copy()
    available[measured] = False
    if costs is not None:
        try:
            costs = np.asarray(costs, dtype=float)
        except (TypeError, ValueError):
            raise PepppError("costs must be numbers, one per configuration") from None
        if costs.shape != (m,):
            raise PepppError(f"costs must hold one value per configuration ({m}), got shape {costs.shape}")
        if not np.all(np.isfinite(costs) & (costs > 0)):
            raise PepppError("costs must be finite and positive (e.g. memory in MB or training seconds)")
    if budget is not None:
        if costs is None:
            raise PepppError(f"budget={budget!r} needs costs (the cost of every configuration)")
        try:
            budget = float(budget)
        except (TypeError, ValueError):
            raise PepppError(f"budget={budget!r} must be a number in the units of costs") from None
        if np.isnan(budget) or budget < 0:
            raise PepppError(f"budget={budget!r} must be a non-negative number in the units of costs")
    return Y, n, measured, available, costs, budget


def _within_budget(design: np.ndarray, n_measured: int, costs: np.ndarray | None, budget: float | None) -> np.ndarray:
    """Cut the design before the first new pick whose cost would take the total over the budget."""
    if budget is None:
        return design
    total = np.cumsum(costs[design])
    over = np.flatnonzero(total[n_measured:] > budget * (1 + 1e-12))
    return design if len(over) == 0 else design[: n_measured + over[0]]


# ----------------------------------------------------------------------------------------------------
# shared linear algebra


def ridge_scale(Y: np.ndarray, ridge: float) -> float:
    """`ridge` relative to the mean squared column norm of Y: the epsilon of (Y_S Y_S^T + epsilon I)."""
    return float(ridge) * float(np.sum(Y * Y)) / Y.shape[1]


def span_basis(Y_S: np.ndarray, *, rtol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis (k x r) of the span of the columns Y_S, numerically rank-revealing."""
    if Y_S.shape[1] == 0:
        return np.zeros((Y_S.shape[0], 0))
    U, s, _ = np.linalg.svd(Y_S, full_matrices=False)
    return U[:, s > rtol * max(s[0], np.finfo(float).tiny)]


def qr_pivots(Y: np.ndarray, chosen: np.ndarray, available: np.ndarray, count: int) -> np.ndarray:
    """The first `count` pivots of a column-pivoted QR of Y restricted to `available` columns.

    The columns are first projected off the span of the `chosen` ones, so the pivots are the columns
    most independent of what is already in the design (the plain QR when nothing is chosen, or when the
    chosen columns span everything already). Each pivot is, as in the QR, the available column of
    largest norm once projected off the span of those before it, found one at a time so that the same
    pivots come out whether asked for together or one by one (those before passed as `chosen`: a
    search in rounds of one). Norms within rounding of the largest (1e-10 of Y's largest column norm)
    tie, and ties go to the lower index: small meta-matrices have equal columns (test errors come in
    steps of one test image), where LAPACK's pivoting, whose norms are downdated rather than recomputed,
    broke them by rounding, differently for the batch and for the rounds.
    """
    columns = np.flatnonzero(available)
    block = Y[:, columns]
    norms = np.linalg.norm(Y, axis=0)
    tie = 1e-10 * max(float(norms.max()) if norms.size else 0.0, np.finfo(float).tiny)
    spanned = Y[:, chosen]
    if span_basis(spanned).shape[1] >= Y.shape[0]:
        spanned = Y[:, :0]
    picked: list[int] = []  # positions in `columns`
    for _ in range(min(count, len(columns))):
        basis = span_basis(np.concatenate([spanned, block[:, picked]], axis=1))
        residual = block - basis @ (basis.T @ block) if basis.shape[1] else block
        left = np.linalg.norm(residual, axis=0)
        left[picked] = -np.inf
        picked.append(int(np.flatnonzero(left >= left.max() - tie)[0]))
    return columns[np.asarray(picked, dtype=int)]
