"""Configuration embeddings from an error matrix, and the least-squares fit of a new dataset's row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from peppp.completion._linalg import truncated_svd
from peppp.errors import PepppError


def _matrix(name: str, values, *, finite: bool = True) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise PepppError(f"{name} must be a numeric matrix, got {type(values).__name__}") from None
    if array.ndim != 2 or 0 in array.shape:
        raise PepppError(f"{name} must be a non-empty 2-D matrix, got shape {array.shape}")
    if finite and not np.all(np.isfinite(array)):
        row, col = np.argwhere(~np.isfinite(array))[0]
        raise PepppError(f"{name}[{row}, {col}] is {array[row, col]}; only finite numbers are allowed")
    return array


def svd_embeddings(E: np.ndarray, rank: int) -> np.ndarray:
    """Configuration embeddings Y (rank x m): the top-`rank` right singular vectors of E, no centering.

    Rows are components (orthonormal), columns are configurations. Signs are fixed so that each row's
    largest-magnitude entry is positive. Big matrices use a randomized SVD with power iterations.
    """
    E = _matrix("E", E)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= min(E.shape):
        raise PepppError(f"rank={rank!r} must be an integer between 1 and {min(E.shape)} (the smaller side of E)")
    _, _, Vt = truncated_svd(E, int(rank))
    return Vt


def fit_row(
    Y: np.ndarray,
    measured: Sequence[int] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    *,
    ridge: float = 0.0,
    prior: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Predict a new dataset's error for every configuration from a few measured ones.

    Solves x = argmin ||Y[:, S]^T x - e_S||^2 + ridge * ||x - prior||^2 and returns x^T Y (length m).
    `prior` (k coefficients, default 0) is where x is shrunk to: with ridge > 0 explicitly; with
    fewer measurements than components the minimum-norm correction from the prior is returned
    (numpy lstsq). Predictions are not clipped.
    """
    Y = _matrix("Y", Y)
    k, m = Y.shape
    try:
        S = np.asarray(measured, dtype=int).reshape(-1)
        e = np.asarray(errors, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise PepppError("measured must be integer column indices and errors numbers") from None
    if len(S) == 0:
        raise PepppError("measured is empty; fit_row needs at least one measured configuration")
    if len(S) != len(e):
        raise PepppError(f"measured has {len(S)} indices but errors has {len(e)} values; give one error per index")
    if S.min() < 0 or S.max() >= m:
        bad = S[(S < 0) | (S >= m)][0]
        raise PepppError(f"measured index {bad} is out of range; Y has {m} configurations (0..{m - 1})")
    if len(np.unique(S)) != len(S):
        raise PepppError(f"measured {S.tolist()} repeats an index; each configuration can be measured once")
    if not np.all(np.isfinite(e)):
        raise PepppError(f"errors {e.tolist()} contain a non-finite value; only finite errors can be fitted")
    ridge = float(ridge)
    if not (np.isfinite(ridge) and ridge >= 0):
        raise PepppError(f"ridge={ridge!r} must be a finite number >= 0")
    x0 = np.zeros(k) if prior is None else np.asarray(prior, dtype=float).reshape(-1)
    if x0.shape != (k,) or not np.all(np.isfinite(x0)):
        raise PepppError(f"prior must hold {k} finite coefficients (one per embedding component), got {x0.tolist()}")
    A = Y[:, S].T
    b = e - A @ x0
    if ridge > 0:
        A = np.vstack([A, np.sqrt(ridge) * np.eye(k)])
        b = np.concatenate([b, np.zeros(k)])
    delta, *_ = np.linalg.lstsq(A, b, rcond=None)
    return (x0 + delta) @ Y
