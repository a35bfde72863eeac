"""Truncated SVDs: exact LAPACK for small matrices, randomized subspace iteration for big ones."""

from __future__ import annotations

import numpy as np
import scipy.linalg

# Below this smaller dimension a full LAPACK SVD costs a few milliseconds: exact is simplest and best.
EXACT_MAX_DIM = 256


def orthonormal_basis(A: np.ndarray) -> np.ndarray:
    """Q of the economic QR of A (scipy's LAPACK call: numpy's is several times slower on tall blocks)."""
    Q, _ = scipy.linalg.qr(A, mode="economic", check_finite=False, overwrite_a=True)
    return Q


def use_exact(shape: tuple[int, int], rank: int, oversample: int, *, exact_max_dim: int = EXACT_MAX_DIM) -> bool:
    """Whether a full SVD is the cheaper (or the only sensible) way to get `rank` components."""
    small = min(shape)
    return small <= exact_max_dim or rank + oversample >= small // 2


def sign_flip(U: np.ndarray | None, Vt: np.ndarray) -> None:
    """Make each right singular vector's largest-magnitude entry positive (in place), U to match.

    SVD signs are arbitrary; fixing them makes embeddings reproducible across LAPACK builds and paths.
    """
    biggest = np.argmax(np.abs(Vt), axis=1)
    signs = np.sign(Vt[np.arange(Vt.shape[0]), biggest])
    signs[signs == 0] = 1.0
    Vt *= signs[:, None]
    if U is not None:
        U *= signs[None, :]


def subspace_step(A: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block power step from the right basis V (m x l): the SVD of A restricted to range(A V).

    Returns U (n x l), s (l,), Vt (l x m). Repeating it converges to the top-l singular triplets; warm
    started from the previous iterate, one step per outer iteration is enough for SoftImpute.
    """
    Q = orthonormal_basis(A @ V.astype(A.dtype, copy=False))
    Ub, s, Vt = np.linalg.svd(Q.T @ A, full_matrices=False)
    return Q @ Ub, s, Vt


def truncated_svd(
    A: np.ndarray,
    rank: int,
    *,
    n_iter: int = 50,
    tol: float | None = 1e-10,
    oversample: int = 10,
    rng: np.random.Generator | None = None,
    block: bool = False,
    exact_max_dim: int = EXACT_MAX_DIM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-`rank` singular triplets (U, s, Vt), signs fixed by `sign_flip`.

    Exact (LAPACK) for small matrices; otherwise randomized subspace iteration (Halko, Martinsson &
    Tropp 2011) with `rank + oversample` columns, re-orthonormalised every step, until the top-`rank`
    right singular subspace moves by less than `tol` (Frobenius norm of the change of projection
    residual) or after `n_iter` steps (tol=None: exactly n_iter steps). With `block=True` all
    `rank + oversample` triplets are returned (a warm start for `subspace_step`).
    """
    n, m = A.shape
    if use_exact(A.shape, rank, oversample, exact_max_dim=exact_max_dim):
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        keep = min(rank + oversample, len(s)) if block else rank
        U, s, Vt = U[:, :keep], s[:keep], Vt[:keep]
    else:
        rng = np.random.default_rng(0) if rng is None else rng
        width = min(rank + oversample, n, m)
        Q = orthonormal_basis(A @ rng.standard_normal((m, width)).astype(A.dtype))
        previous = None
        for _ in range(n_iter):
            W = orthonormal_basis(A.T @ Q)
            Q, R = scipy.linalg.qr(A @ W, mode="economic", check_finite=False, overwrite_a=True)
            if tol is None:
                continue
            # Rayleigh-Ritz on the block: A W = Q R, so the right singular vectors are W times R's.
            _, _, Rt = np.linalg.svd(R)
            current = W @ Rt[:rank].T
            if previous is not None and np.linalg.norm(current - previous @ (previous.T @ current)) < tol:
                break
            previous = current
        Ub, s, Vt = np.linalg.svd(Q.T @ A, full_matrices=False)
        U = Q @ Ub
        if not block:
            U, s, Vt = U[:, :rank], s[:rank], Vt[:rank]
    U, Vt = np.ascontiguousarray(U), np.ascontiguousarray(Vt)
    sign_flip(U, Vt)
    return U, s, Vt
