"""The adaptive method's model: a new dataset's error row as a mixture of Gaussians, one per meta-training
row (`RowMixture`), and that mixture conditioned on the measured cells (`MixturePosterior`)."""

from __future__ import annotations

import numpy as np

from peppp.completion._linalg import truncated_svd
from peppp.errors import PepppError

# Variances below this (error units squared) are treated as noise-free; keeps every solve positive definite.
NOISE_FLOOR = 1e-6
# Components whose weight is below this fraction of the largest cannot move any estimate noticeably.
NEGLIGIBLE_WEIGHT = 1e-6
# The acquisition drops the lightest components that together weigh this little.
NEGLIGIBLE_MASS = 1e-3
# Scratch arrays (the knowledge gradient, the screening gain) are cut into chunks of about this many
# floats (memory bound).
CHUNK_FLOATS = 2_000_000


def rank_one_noise(residual: np.ndarray, *, iterations: int = 20) -> np.ndarray:
    """Noise variance of every cell as a_i * b_j: a rank-one fit to the squared residuals.

    Datasets differ in noise far more than configurations do (a small test set makes every cell of its
    row noisy), and the product keeps both effects with one number per row and per column.
    """
    r2 = residual**2
    a = r2.mean(axis=1)
    b = np.ones(r2.shape[1])
    for _ in range(iterations):
        b = (a @ r2) / max(float(a @ a), 1e-300)
        a = (r2 @ b) / max(float(b @ b), 1e-300)
    return np.maximum(np.outer(np.maximum(a, 0.0), np.maximum(b, 0.0)), NOISE_FLOOR)


class RowMixture:
    """A prior over a new dataset's error row: one Gaussian per meta-training row.

    Component i is centred at training row x_i with covariance h^2 W W^T + g diag(noise_i): W (m x k)
    spans the top-k principal directions of the training rows scaled to their spread, so the new row
    may differ from x_i along the directions in which datasets differ; noise_i is row i's cell noise
    (`rank_one_noise` of the rank-k residuals). g = 2 is the natural value: a new row and a training
    row each carry their own noise. Conditioning on measured cells re-weights the components by how
    well they explain the measurements and shifts each one by a Gaussian update.

    Build with `from_matrix(error, rank=k)` (h = g = 1), then `scaled(h, g)`.
    """

    def __init__(self, rows: np.ndarray, factor: np.ndarray, noise: np.ndarray):
        self.rows = rows
        self.factor = factor  # (m, k): the shared covariance is factor @ factor.T
        self.noise = noise  # (N, m) cell noise variances of each component
        self._outer: np.ndarray | None = None
        self._noise_root: np.ndarray | None = None
        self._rows_squared: np.ndarray | None = None

    @classmethod
    def from_matrix(cls, error: np.ndarray, *, rank: int) -> RowMixture:
        X = np.asarray(error, dtype=float)
        n_rows, m = X.shape
        k = min(int(rank), n_rows - 1, m)
        if k < 1:
            raise PepppError(f"the mixture model needs at least 2 meta-training rows, got {n_rows}")
        centred = X - X.mean(axis=0)
        _, s, Vt = truncated_svd(centred, k)
        residual = centred - (centred @ Vt.T) @ Vt
        # Residual variance per degree of freedom: k of the m directions were fitted.
        residual *= np.sqrt(m / max(m - k, 1))
        return cls(X, Vt.T * (s / np.sqrt(n_rows - 1)), rank_one_noise(residual))

    def scaled(self, kernel_scale: float, noise_scale: float) -> RowMixture:
        """The same mixture with covariance kernel_scale^2 W W^T + noise_scale diag(noise_i)."""
        return RowMixture(self.rows, kernel_scale * self.factor, np.maximum(noise_scale * self.noise, NOISE_FLOOR))

    @property
    def outer_factor(self) -> np.ndarray:
        """(m, k^2): row l is f_l (x) f_l, so that f_l^T R f_l = R.ravel() @ outer_factor[l] for any k x k R."""
        if self._outer is None:
            self._outer = (self.factor[:, :, None] * self.factor[:, None, :]).reshape(self.factor.shape[0], -1)
        return self._outer

    @property
    def rows_squared(self) -> np.ndarray:
        """(N, m): each component's centre squared, cell by cell."""
        if self._rows_squared is None:
            self._rows_squared = self.rows**2
        return self._rows_squared

    @property
    def noise_root(self) -> np.ndarray:
        """(N, m): the cell noise standard deviations of each component."""
        if self._noise_root is None:
            self._noise_root = np.sqrt(self.noise)
        return self._noise_root

    @property
    def n_components(self) -> int:
        return self.rows.shape[0]

    def shared_cov(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.factor[rows] @ self.factor[cols].T

    def condition(self, measured, errors) -> MixturePosterior:
        return MixturePosterior(self, np.asarray(measured, dtype=int), np.asarray(errors, dtype=float))


class MixturePosterior:
    """The mixture conditioned on measured cells: component weights, shifts and covariances."""

    def __init__(self, model: RowMixture, measured: np.ndarray, errors: np.ndarray):
        self.model = model
        self.measured = measured
        self.errors = errors
        N = model.n_components
        n = len(measured)
        if n == 0:
            self.weights = np.full(N, 1.0 / N)
            return
        cross = model.shared_cov(np.arange(model.rows.shape[1]), measured)  # (m, n): cov(f, e_S)
        K = cross[measured][None, :, :] + _diagonals(model.noise[:, measured])  # (N, n, n)
        L = np.linalg.cholesky(K)
        self.inverse = np.linalg.inv(K)
        self.cross = cross
        self._weigh(errors[None, :] - model.rows[:, measured], 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1))

    def _weigh(self, residual: np.ndarray, log_det: np.ndarray, alpha: np.ndarray | None = None,
               quadratic: np.ndarray | None = None) -> None:
        """alpha_i = K_i^-1 r_i (unless given), r_i^T alpha_i (unless given), and the weights by each
        component's likelihood of the measurements."""
        self.residual, self.log_det = residual, log_det
        self.alpha = np.einsum("ijk,ik->ij", self.inverse, residual) if alpha is None else alpha  # K_i^-1 r_i
        self.quadratic = np.einsum("ij,ij->i", residual, self.alpha) if quadratic is None else quadratic
        log_like = -0.5 * self.quadratic - 0.5 * log_det
        w = np.exp(log_like - log_like.max())
        self.weights = w / w.sum()

    def extended(self, cell: int, error: float) -> MixturePosterior:
        """This posterior conditioned on one more measurement (`cell` unmeasured so far), by the block
        update of each K_i^-1: n^2 per component instead of n^3 from scratch."""
        if len(self.measured) == 0:
            return MixturePosterior(self.model, np.array([cell]), np.array([float(error)]))
        model = self.model
        new = MixturePosterior.__new__(MixturePosterior)
        new.model = model
        new.measured = np.append(self.measured, int(cell))
        new.errors = np.append(self.errors, float(error))
        column = model.factor @ model.factor[cell]  # cov(f, e_cell): the shared part
        b = column[self.measured]  # the same for every component (noise is per cell)
        u = self.inverse @ b  # (N, n)
        schur = column[cell] + model.noise[:, cell] - u @ b  # (N,)
        n = len(self.measured)
        scaled = u / schur[:, None]  # (N, n)
        inverse = np.empty((len(schur), n + 1, n + 1))
        np.multiply(u[:, :, None], scaled[:, None, :], out=inverse[:, :n, :n])
        inverse[:, :n, :n] += self.inverse
        inverse[:, :n, n] = inverse[:, n, :n] = -scaled
        inverse[:, n, n] = 1.0 / schur
        new.inverse = inverse
        new.cross = np.concatenate([self.cross, column[:, None]], axis=1)
        last = error - model.rows[:, cell]  # (N,): the new cell's residual
        residual = np.concatenate([self.residual, last[:, None]], axis=1)
        # The same block update on K^-1 r: with g = (u.r - r_new) / schur (u.r = b.alpha), the new alpha
        # is [alpha + u g, -g] and r^T K^-1 r grows by schur g^2: n per component instead of n^2.
        gap = (self.alpha @ b - last) / schur
        alpha = np.concatenate([self.alpha + u * gap[:, None], -gap[:, None]], axis=1)
        new._weigh(residual, self.log_det + np.log(schur), alpha, self.quadratic + schur * gap**2)
        return new

    # -- per component ----------------------------------------------------------------------------

    def component_signal(self, idx: np.ndarray) -> np.ndarray:
        """Posterior mean of the noise-free error of components `idx` (len(idx) x m)."""
        rows = self.model.rows[idx]
        if len(self.measured) == 0:
            return rows.copy()
        factor = self.model.factor
        # cov(f, e_S) K_i^-1 r_i = factor (factor_S^T alpha_i): through the k shared directions.
        return rows + (self.alpha[idx] @ factor[self.measured]) @ factor.T

    def component_means(self, idx: np.ndarray) -> np.ndarray:
        """Posterior mean of the error (measured cells: their measurement) of components `idx`."""
        means = self.component_signal(idx)
        means[:, self.measured] = self.errors
        return means

    def component_variances(self, idx: np.ndarray) -> np.ndarray:
        """Posterior variance of every cell's error under components `idx` (0 where measured)."""
        model = self.model
        if len(self.measured) == 0:
            var = np.sum(model.factor**2, axis=1)[None, :] + model.noise[idx]
        else:
            # The shared part's posterior covariance is factor (I - B K_i^-1 B^T) factor^T (`reduction`):
            # its diagonal costs k^2 per cell instead of n^2.
            reduce = self.reduction(idx)  # (c, k, k)
            var = reduce.reshape(len(idx), -1) @ model.outer_factor.T + model.noise[idx]
            var[:, self.measured] = 0.0
        return np.maximum(var, 0.0)

    def projected(self, idx: np.ndarray) -> np.ndarray | None:
        """cov(e, e_S) K_i^-1 for components `idx` (len(idx) x m x n); None before any measurement."""
        return None if len(self.measured) == 0 else self.cross[None] @ self.inverse[idx]

    def reduction(self, idx: np.ndarray) -> np.ndarray:
        """I - B K_i^-1 B^T for components `idx` (len(idx) x k x k), B = factor[measured]^T: the posterior
        covariance of any two cells' shared parts is factor_a (I - B K_i^-1 B^T) factor_b^T."""
        k = self.model.factor.shape[1]
        eye = np.broadcast_to(np.eye(k), (len(idx), k, k))
        if len(self.measured) == 0:
            return eye.copy()
        B = self.model.factor[self.measured].T  # (k, n)
        return eye - B[None] @ self.inverse[idx] @ B.T[None]

    def component_columns(self, idx: np.ndarray, cols: np.ndarray, projected: np.ndarray | None = None) -> np.ndarray:
        """Posterior covariances cov(e, e_j) for j in `cols` under components `idx` (len(idx) x m x len(cols)).

        `projected` is `self.projected(idx)`, passed when the caller asks for many column blocks.
        """
        model = self.model
        m = model.rows.shape[1]
        cov = np.broadcast_to(model.shared_cov(np.arange(m), cols), (len(idx), m, len(cols))).copy()
        cov[:, cols, np.arange(len(cols))] += model.noise[idx][:, cols]
        if len(self.measured):
            if projected is None:
                projected = self.projected(idx)
            cov -= projected @ self.cross[cols].T
            cov[:, self.measured, :] = 0.0
            cov[:, :, np.isin(cols, self.measured)] = 0.0
        return cov

    # -- the mixture --------------------------------------------------------------------------------

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mixture mean of the error, its variance, and the mean of the noise-free error (each length m).

        Component i's signal is x_i + F g_i (g_i = F_S^T K_i^-1 r_i, a k-vector) and its variance
        diag(F R_i F^T) + noise_i (`reduction`), so with weights w (those below `NEGLIGIBLE_WEIGHT`
        of the largest dropped) the sums over components go through k-vectors and one k x k matrix:
            E[signal]   = w X + F (w G)
            E[signal^2] = w X^2 + 2 rowsum(F * X^T (w G)) + rowsum((F T) * F),  T = G^T diag(w) G
            E[var]      = w noise + rowsum((F U) * F),  U = sum_i w_i R_i = I - B (sum_i w_i K_i^-1) B^T
        three passes over the rows instead of a (components x m) matrix of each. Measured cells take
        their measurement, with variance 0."""
        model = self.model
        w = np.where(self.weights > NEGLIGIBLE_WEIGHT * self.weights.max(), self.weights, 0.0)
        w /= w.sum()
        F = model.factor
        signal = w @ model.rows
        second = w @ model.rows_squared + w @ model.noise
        if len(self.measured) == 0:
            spread = np.eye(F.shape[1])
        else:
            G = self.alpha @ F[self.measured]  # (N, k)
            wG = w[:, None] * G
            signal += F @ wG.sum(axis=0)
            second += 2.0 * np.einsum("lk,lk->l", F, model.rows.T @ wG)
            B = F[self.measured].T  # (k, n)
            spread = G.T @ wG + np.eye(F.shape[1]) - B @ np.tensordot(w, self.inverse, axes=1) @ B.T
        second += np.einsum("lk,lk->l", F @ spread, F)
        first = signal.copy()
        first[self.measured] = self.errors
        var = np.maximum(second - signal**2, 0.0)
        var[self.measured] = 0.0
        return first, var, signal

    def draws(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` joint draws of the error row from the mixture (count x m; measured cells keep their
        measurement): a component by its weight, then its Gaussian, whose shared part
        factor (I - B K_i^-1 B^T) factor^T couples every cell and whose noise is each cell's own."""
        model = self.model
        m, k = model.factor.shape
        live = np.flatnonzero(self.weights > NEGLIGIBLE_WEIGHT * self.weights.max())
        which = live[rng.choice(len(live), size=count, p=self.weights[live] / self.weights[live].sum())]
        used, slot = np.unique(which, return_inverse=True)
        values, vectors = np.linalg.eigh(self.reduction(used))  # (u, k), (u, k, k); symmetric PSD up to rounding
        # The symmetric square root V sqrt(L) V^T (root @ root^T = I - B K^-1 B^T): unlike V sqrt(L), it
        # does not depend on the signs eigh gives its eigenvectors, nor on how it turns them within a
        # repeated eigenvalue (every direction B leaves alone has eigenvalue 1: k - n of them after n < k
        # measurements), so the draws move continuously with the posterior. With V sqrt(L), rounding at
        # 1e-16 turned those eigenvectors and changed the draws by up to 0.2 on the paper's matrix.
        roots = (vectors * np.sqrt(np.clip(values, 0.0, None))[:, None, :]) @ vectors.transpose(0, 2, 1)
        shared = np.einsum("sk,slk->sl", rng.standard_normal((count, k)), roots[slot])  # (count, k)
        out = self.component_means(used)[slot] + shared @ model.factor.T
        out += model.noise_root[which] * rng.standard_normal((count, m))
        if len(self.measured):
            out[:, self.measured] = self.errors
        return out

    def leading(self, max_components: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The fewest components that carry all but `NEGLIGIBLE_MASS` of the weight, at most
        `max_components` (ties broken at random), renormalised."""
        w = self.weights
        order = np.lexsort((rng.permutation(len(w)), -w))
        keep = min(int(np.searchsorted(np.cumsum(w[order]), 1.0 - NEGLIGIBLE_MASS)) + 1, max_components, len(w))
        live = order[:keep]
        return live, w[live] / w[live].sum()


def _diagonals(values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.shape + (values.shape[-1],))
    idx = np.arange(values.shape[-1])
    out[..., idx, idx] = values
    return out


def silverman_scale(n_rows: int, dims: int) -> float:
    """Silverman's rule-of-thumb bandwidth for a Gaussian kernel density of n_rows points in `dims`
    dimensions, relative to the data's spread: (4 / ((dims + 2) n_rows))^(1 / (dims + 4))."""
    return (4.0 / ((dims + 2) * max(n_rows, 1))) ** (1.0 / (dims + 4))
