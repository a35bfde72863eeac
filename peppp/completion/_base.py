"""The completion strategy interface: fill the unobserved cells of an error matrix."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from peppp._params import Params
from peppp.errors import PepppError


class BaseCompleter(Params, ABC):
    """Completes a partly observed (datasets x configurations) error matrix.

    Lifecycle (scikit-learn style):
      1. construct with keyword parameters only; the constructor stores them and does nothing else;
      2. `fit(E, mask, weights=None)` validates the input once, runs `_fit` and stores the result in
         `completed_` (plus any other fitted attributes, all ending in `_`); it returns `self`;
      3. `predict()` returns the completed matrix; calling it before `fit` raises PepppError.
    `get_params()` returns the constructor parameters (for logging and cloning), `clone()` builds an
    unfitted copy (both from `peppp._params.Params`). A new method is one subclass implementing `_fit`.
    """

    def fit(self, E: np.ndarray, mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> BaseCompleter:
        """Learn the completion of E from its observed cells; returns self.

        E: (n x m) matrix; unobserved cells may hold anything, NaN included. mask: True where observed
        (default: the finite cells of E). weights: per-cell weights of the squared loss on the observed
        cells, e.g. 1 / sampling propensity for non-uniform sampling (default: all equal).
        """
        E, mask, weights = _validate(E, mask, weights)
        self.completed_ = self._fit(E, mask, weights)
        return self

    def predict(self) -> np.ndarray:
        """The completed matrix (a copy) learned by the last `fit`."""
        if not hasattr(self, "completed_"):
            raise PepppError(f"{type(self).__name__} is not fitted yet; call fit(E, mask) before predict()")
        return self.completed_.copy()

    @abstractmethod
    def _fit(self, E: np.ndarray, mask: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """Return the completed matrix. E is a private copy holding 0 in unobserved cells; weights are
        None (all equal) or positive on observed cells, 0 elsewhere, averaging 1 over observed cells."""


def _validate(E, mask, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        E = np.array(E, dtype=float)
    except (TypeError, ValueError):
        raise PepppError(f"E must be a numeric matrix, got {type(E).__name__}") from None
    if E.ndim != 2 or 0 in E.shape:
        raise PepppError(f"E must be a non-empty 2-D matrix, got shape {E.shape}")
    if mask is None:
        mask = np.isfinite(E)
    else:
        mask = np.asarray(mask)
        if mask.shape != E.shape or mask.dtype != bool:
            raise PepppError(f"mask must be a boolean matrix of E's shape {E.shape}, got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise PepppError("mask observes no cell; completion needs at least one observed cell")
    if not np.all(np.isfinite(E[mask])):
        row, col = np.argwhere(mask & ~np.isfinite(E))[0]
        raise PepppError(f"E[{row}, {col}] is observed but {E[row, col]}; observed cells must be finite")
    E[~mask] = 0.0
    if weights is None:
        return E, mask, None
    w = np.asarray(weights, dtype=float)
    if w.shape != E.shape:
        raise PepppError(f"weights must have E's shape {E.shape}, got {w.shape}")
    observed = w[mask]
    if not np.all(np.isfinite(observed) & (observed > 0)):
        raise PepppError("weights must be finite and positive on every observed cell")
    w = np.where(mask, w, 0.0)
    # Only relative weights matter; a mean of 1 keeps the shrinkage on the same scale as unweighted.
    w /= observed.mean()
    return E, mask, w
