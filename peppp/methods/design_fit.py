"""PEPPP's own method and its baselines: a one-shot experiment design on the SVD embeddings, then a
least-squares fit of the new row with its prediction std (ED-MF with `ed`, random-MF with `random`, ...)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from peppp.completion import fit_row, svd_embeddings
from peppp.design import DesignStrategy, get_design
from peppp.errors import PepppError
from peppp.methods._base import ActiveMethod, Session

# A configuration lies in the span of the measured ones when its embedding's part outside that span is
# below this fraction of its length (round-off of an exact projection is far smaller).
_SPAN_RTOL = 1e-6


def residual_noise_std(error: np.ndarray, embeddings: np.ndarray) -> float | None:
    """The error noise a rank-k model leaves unexplained: the root-mean-square residual of the rows of
    `error` (n x m) around their projection on `embeddings` (k x m, orthonormal rows), per residual
    degree of freedom, n (m - k). None when k equals m (no degree of freedom left)."""
    n_rows, m = error.shape
    dof = n_rows * (m - embeddings.shape[0])
    if dof <= 0:
        return None
    residual = error - (error @ embeddings.T) @ embeddings
    return math.sqrt(float(np.sum(residual**2)) / dof)


def prediction_std(
    Y: np.ndarray, measured: Sequence[int] | np.ndarray, residual: np.ndarray, *, noise_std: float | None
) -> np.ndarray:
    """Standard deviation of ordinary least squares' prediction of a new measurement of every column.

    Y: embeddings (k x m); measured: the fitted columns S; residual: the fit's residuals at S.
    The std is sigma * sqrt(1 + y_j^T (Y_S Y_S^T)^+ y_j). sigma^2 is the residual variance of the
    fit, RSS / (|S| - rank(Y_S)); with `noise_std` given it is pooled with it as one more degree of
    freedom, (RSS + noise_std^2) / (|S| - rank(Y_S) + 1), as a conjugate prior on the noise would.
    The std is NaN (unknown) without any residual degree of freedom or noise_std, and for columns
    whose embedding lies outside the span of the measured ones (the measurements say nothing of them).
    """
    S = np.asarray(measured, dtype=int)
    YS = Y[:, S]
    dof = len(S) - int(np.linalg.matrix_rank(YS))
    rss = float(np.sum(np.asarray(residual, dtype=float) ** 2))
    if noise_std is not None:
        # The meta-matrix's noise level counts as one more residual degree of freedom, so that a
        # lucky fit through few points does not claim certainty.
        sigma = math.sqrt((rss + noise_std**2) / (dof + 1))
    elif dof > 0:
        sigma = math.sqrt(rss / dof)
    else:
        sigma = math.nan
    leverage = np.einsum("ij,ik,kj->j", Y, np.linalg.pinv(YS @ YS.T), Y)
    # A column outside the span of Y_S is not reproduced by projecting onto that span.
    basis = _orthonormal_columns(YS)
    outside = Y - basis @ (basis.T @ Y)
    in_span = np.linalg.norm(outside, axis=0) <= _SPAN_RTOL * np.linalg.norm(Y, axis=0)
    std = sigma * np.sqrt(1.0 + np.maximum(leverage, 0.0))
    return np.where(in_span, std, np.nan)


def _orthonormal_columns(A: np.ndarray) -> np.ndarray:
    """An orthonormal basis (as columns) of the column space of A."""
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    if s.size == 0:
        return U[:, :0]
    keep = s > s[0] * max(A.shape) * np.finfo(float).eps
    return U[:, keep]


class DesignFitSession(Session):
    """One new dataset: the design's picks (all n at once, or extending what is measured), then the
    least-squares fit of the row on the embeddings, with `prediction_std` as its std."""

    def __init__(self, method: DesignFit, **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def _propose(self, k: int):
        n = len(self.measured) + k
        available = self.affordable()
        available[self.measured] = True  # measured ones stay in the design whatever the cap says
        design = self.method.design_.select(
            self.method.embeddings_,
            n,
            measured=self.measured,
            candidates=available,
            costs=self.memory_mb,
            budget=self.budget_mb,
            seed=self.seed,
        )
        return [int(i) for i in design[len(self.measured) :]]

    def _predict(self):
        Y = self.method.embeddings_
        predicted = fit_row(Y, self.measured, self.errors)
        residual = predicted[self.measured] - np.asarray(self.errors)
        return predicted, prediction_std(Y, self.measured, residual, noise_std=self.method.noise_std_)


class DesignFit(ActiveMethod):
    """Design `design` (a `peppp.design` name) on the top-`rank` right singular vectors, then least squares.

    fit: `embeddings_` (rank x m), the top right singular vectors of the meta-training matrix (no
    centering), `noise_std_`, the noise its rank-`rank` model leaves (`residual_noise_std`), and
    `design_`, the design strategy. `fit_embedded` takes embeddings and noise level as given instead.
    """

    sequential = False

    def __init__(self, *, design: str = "ed", rank: int = 5) -> None:
        self.design = design
        self.rank = rank

    @property
    def name(self) -> str:
        return self.design

    def _fit(self, error: np.ndarray) -> None:
        design = self._checked_design()
        embeddings = svd_embeddings(error, self.rank)
        self.design_, self.embeddings_ = design, embeddings
        self.noise_std_ = residual_noise_std(error, embeddings)

    def fit_embedded(
        self, embeddings: np.ndarray, *, noise_std: float | None = None, error: np.ndarray | None = None,
        observed: np.ndarray | None = None,
    ) -> DesignFit:
        """Take the embeddings (rank x m) and the noise level as they are; `error` and `observed` are not needed."""
        design = self._checked_design()
        try:
            Y = np.array(embeddings, dtype=float)
        except (TypeError, ValueError):
            raise PepppError("embeddings must be a numeric (rank x configurations) matrix") from None
        if Y.ndim != 2 or Y.shape[0] != self.rank or Y.shape[1] < 1 or not np.all(np.isfinite(Y)):
            raise PepppError(f"embeddings must be a finite {self.rank} x m matrix (rank {self.rank}), got shape {Y.shape}")
        if noise_std is not None and not (
            isinstance(noise_std, numbers.Real) and math.isfinite(noise_std) and noise_std >= 0
        ):
            raise PepppError(f"noise_std={noise_std!r} must be None or a finite number >= 0")
        self.design_, self.embeddings_ = design, Y
        self.noise_std_ = None if noise_std is None else float(noise_std)
        self.observed_ = None
        self.n_configs_ = Y.shape[1]
        return self

    def _checked_design(self) -> DesignStrategy:
        if isinstance(self.rank, bool) or not isinstance(self.rank, numbers.Integral) or self.rank < 1:
            raise PepppError(f"rank {self.rank!r} must be a positive integer")
        return get_design(self.design)

    def _session(self, *, memory_mb, candidates, budget_mb, seed):
        return DesignFitSession(self, memory_mb=memory_mb, candidates=candidates, budget_mb=budget_mb, seed=seed)
