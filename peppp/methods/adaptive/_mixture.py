"""Adaptive active sampling, peppp's default: a posterior over the new dataset's errors as a mixture of
the meta-training datasets, and picks by the expected drop in budget regret (a knowledge gradient)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from peppp.completion._linalg import truncated_svd
from peppp.errors import PepppError
from peppp.methods._base import ActiveMethod, Session

# Variances below this (error units squared) are treated as noise-free; keeps every solve positive definite.
NOISE_FLOOR = 1e-6
# Components whose weight is below this fraction of the largest cannot move any estimate noticeably.
NEGLIGIBLE_WEIGHT = 1e-6
# The acquisition drops the lightest components that together weigh this little.
NEGLIGIBLE_MASS = 1e-3
# Scratch arrays of the knowledge gradient are cut into chunks of about this many floats (memory bound).
_CHUNK_FLOATS = 4_000_000


# --------------------------------------------------------------------------------------------------
# The model: a mixture over the meta-training rows
# --------------------------------------------------------------------------------------------------


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
        residual = errors[None, :] - model.rows[:, measured]
        self.alpha = np.einsum("ijk,ik->ij", self.inverse, residual)  # K_i^-1 r_i
        log_det = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        log_like = -0.5 * np.einsum("ij,ij->i", residual, self.alpha) - 0.5 * log_det
        w = np.exp(log_like - log_like.max())
        self.weights = w / w.sum()
        self.cross = cross

    # -- per component ----------------------------------------------------------------------------

    def component_signal(self, idx: np.ndarray) -> np.ndarray:
        """Posterior mean of the noise-free error of components `idx` (len(idx) x m)."""
        rows = self.model.rows[idx]
        if len(self.measured) == 0:
            return rows.copy()
        return rows + self.alpha[idx] @ self.cross.T

    def component_means(self, idx: np.ndarray) -> np.ndarray:
        """Posterior mean of the error (measured cells: their measurement) of components `idx`."""
        means = self.component_signal(idx)
        means[:, self.measured] = self.errors
        return means

    def component_variances(self, idx: np.ndarray) -> np.ndarray:
        """Posterior variance of every cell's error under components `idx` (0 where measured)."""
        model = self.model
        var = np.sum(model.factor**2, axis=1)[None, :] + model.noise[idx]
        if len(self.measured):
            var = var - np.sum((self.cross[None] @ self.inverse[idx]) * self.cross[None], axis=2)
            var[:, self.measured] = 0.0
        return np.maximum(var, 0.0)

    def projected(self, idx: np.ndarray) -> np.ndarray | None:
        """cov(e, e_S) K_i^-1 for components `idx` (len(idx) x m x n); None before any measurement."""
        return None if len(self.measured) == 0 else self.cross[None] @ self.inverse[idx]

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
        """Mixture mean of the error, its variance, and the mean of the noise-free error (each length m)."""
        m = self.model.rows.shape[1]
        chunk_rows = max(1, _CHUNK_FLOATS // (m * (len(self.measured) + 2)))
        live = np.flatnonzero(self.weights > NEGLIGIBLE_WEIGHT * self.weights.max())
        w = self.weights[live] / self.weights[live].sum()
        first = np.zeros(m)
        second = np.zeros(m)
        signal = np.zeros(m)
        for start in range(0, len(live), chunk_rows):
            idx, wc = live[start : start + chunk_rows], w[start : start + chunk_rows]
            sig = self.component_signal(idx)
            signal += wc @ sig
            sig[:, self.measured] = self.errors
            first += wc @ sig
            second += wc @ (sig**2 + self.component_variances(idx))
        var = np.maximum(second - first**2, 0.0)
        var[self.measured] = 0.0
        return first, var, signal

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


# --------------------------------------------------------------------------------------------------
# Acquisition: knowledge gradient of the budget recommendations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budgets:
    """The candidates sorted by memory and where each distinct memory level ends in that order."""

    order: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, memory_mb: np.ndarray, candidates: np.ndarray) -> Budgets:
        cand = np.flatnonzero(candidates)
        order = cand[np.argsort(memory_mb[cand], kind="stable")]
        mem = memory_mb[order]
        ends = np.flatnonzero(np.r_[mem[1:] != mem[:-1], True])
        return cls(order=order, ends=ends)

    def value(self, estimate: np.ndarray) -> np.ndarray:
        """Mean over budget levels of the least estimate within the budget (over the last axis)."""
        prefix_min = np.minimum.accumulate(estimate[..., self.order], axis=-1)
        return prefix_min[..., self.ends].mean(axis=-1)


def predictive_quantiles(weights: np.ndarray, mean: np.ndarray, std: np.ndarray, probs: np.ndarray, *, grid: int = 128) -> np.ndarray:
    """Quantiles `probs` of one-dimensional Gaussian mixtures, one mixture per column.

    weights (c,), mean and std (c, C): column j is the mixture sum_i w_i N(mean_ij, std_ij^2).
    The CDF is tabulated on `grid` points over mean -/+ 6 std and inverted by linear interpolation,
    so a quantile is off by at most one grid step (range / grid). Returns (C, len(probs)).
    """
    lo = (mean - 6 * std).min(axis=0)
    hi = (mean + 6 * std).max(axis=0)
    points = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, grid)[None, :]  # (C, G)
    cdf = np.einsum("i,icg->cg", weights, ndtr((points[None] - mean[:, :, None]) / std[:, :, None]))
    return np.array([np.interp(probs, cdf[j], points[j]) for j in range(mean.shape[1])])


def knowledge_gradient(
    post: MixturePosterior,
    budgets: Budgets,
    choices: np.ndarray,
    *,
    fantasies: int,
    max_components: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Expected drop of `budgets.value` (the mean recommended error over budgets) from measuring each choice.

    For each choice j the measurement y takes `fantasies` values, the quantiles at the midpoints of
    equal-probability strata of the mixture's predictive (a deterministic quadrature), and the
    mixture is updated exactly for each: weights by each component's likelihood of y, means by its
    Gaussian regression on y.
    """
    idx, w = post.leading(max_components, rng)
    means = post.component_means(idx)  # (c, m)
    now = float(budgets.value(w @ means))
    probs = (np.arange(fantasies) + 0.5) / fantasies
    log_w = np.log(w)
    gain = np.zeros(len(choices))
    m = means.shape[1]
    step = max(1, _CHUNK_FLOATS // (len(idx) * m + fantasies * m + fantasies * len(idx)))
    projected = post.projected(idx)
    for start in range(0, len(choices), step):
        cols = choices[start : start + step]
        cov = post.component_columns(idx, cols, projected)  # (c, m, C)
        var = np.maximum(cov[:, cols, np.arange(len(cols))], NOISE_FLOOR * 1e-3)  # (c, C)
        mj = means[:, cols]  # (c, C)
        y = predictive_quantiles(w, mj, np.sqrt(var), probs)  # (C, Q)
        dev = y[:, :, None] - mj.T[:, None, :]  # (C, Q, c)
        lw = log_w[None, None, :] - 0.5 * dev**2 / var.T[:, None, :] - 0.5 * np.log(var.T)[:, None, :]
        lw -= lw.max(axis=2, keepdims=True)
        resp = np.exp(lw)
        resp /= resp.sum(axis=2, keepdims=True)  # (C, Q, c) new component weights
        gains = np.transpose(cov, (2, 0, 1)) / var.T[:, :, None]  # (C, c, m) regression of e on e_j
        updated = resp @ means + (resp * dev) @ gains
        gain[start : start + step] = now - budgets.value(updated).mean(axis=1)
    return gain


def screening_gain(mean: np.ndarray, std: np.ndarray, budgets: Budgets, choices: np.ndarray) -> np.ndarray:
    """A cheap knowledge gradient that ignores correlations: measuring j moves only j's own estimate.

    Expected improvement of j below the least estimate of each budget that contains j, averaged over
    budgets; used to keep only the most promising choices for the full knowledge gradient.
    """
    order, ends = budgets.order, budgets.ends
    prefix_min = np.minimum.accumulate(mean[order])[ends]
    position = np.empty(len(mean), dtype=int)
    position[order] = np.searchsorted(ends, np.arange(len(order)))  # first budget level containing j
    out = np.zeros(len(choices))
    for n, j in enumerate(choices):
        levels = prefix_min[position[j] :]
        s = max(float(std[j]), 1e-12)
        d = (levels - mean[j]) / s
        out[n] = float(np.sum(s * (d * ndtr(d) + np.exp(-0.5 * d * d) / np.sqrt(2 * np.pi)) - np.maximum(levels - mean[j], 0)))
    return out / len(ends)


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------


class AdaptiveSession(Session):
    """One new dataset: each pick maximises the knowledge gradient over the candidates' memory budgets
    (per MB when the measurements have a memory budget); a batch of k fantasises each pick at its
    posterior mean before choosing the next. The estimate's `predicted` is the posterior mean of the
    new dataset's noise-free error (at a measured configuration: between the smoothed value and the
    measurement, as the noise model splits the residual), its `std` the posterior standard deviation
    of the error itself."""

    def __init__(self, method: Adaptive, **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def _posterior(self, measured: list[int], errors: list[float]) -> MixturePosterior:
        return self.method.model_.condition(measured, errors)

    def _propose(self, k: int):
        measured, errors = list(self.measured), list(self.errors)
        picks: list[int] = []
        for _ in range(k):
            available = self.affordable()
            available[picks] = False
            if self.budget_mb is not None:
                spent = self.memory_mb[measured].sum() if measured else 0.0
                available &= self.memory_mb <= self.budget_mb - spent + 1e-9
            choices = np.flatnonzero(available)
            if len(choices) == 0:
                break
            post = self._posterior(measured, errors)
            j = self._best(post, choices, len(measured))
            picks.append(j)
            if len(picks) < k:
                # Kriging believer: the pick is fantasised at its posterior mean, so the next pick
                # of the same batch goes where that measurement would leave the most regret.
                measured.append(j)
                errors.append(float(post.moments()[0][j]))
        return picks

    def _best(self, post: MixturePosterior, choices: np.ndarray, step: int) -> int:
        method = self.method
        rng = np.random.default_rng([self.seed, step])
        # The recommendations that matter are among the current candidates (a caller may drop some).
        budgets = Budgets.of(self.memory_mb, self.candidates)
        if len(choices) > method.max_choices:
            mean, var, _ = post.moments()
            cheap = screening_gain(mean, np.sqrt(var), budgets, choices)
            choices = choices[np.argsort(-cheap, kind="stable")[: method.max_choices]]
        gain = knowledge_gradient(
            post, budgets, choices, fantasies=method.fantasies, max_components=method.max_components, rng=rng
        )
        if self.budget_mb is not None:
            gain = gain / self.memory_mb[choices]  # per MB spent, as OBOE's cost-aware design
        return int(choices[int(np.argmax(gain))])

    def _predict(self):
        post = self._posterior(self.measured, self.errors)
        _, var, signal = post.moments()
        if self.measured:
            # A component's noise (noise_scale times the training row's) is the training row's own
            # plus the new row's. The training row's part is what the new row does not share: its
            # posterior mean, 1/noise_scale of the residual, goes back into the new row's
            # noise-free error, which then lies that far from the smoothed value to the measurement.
            S = np.asarray(self.measured)
            share = min(1.0, 1.0 / self.method.noise_scale)
            signal[S] += share * (np.asarray(self.errors) - signal[S])
        return signal, np.sqrt(var)


class Adaptive(ActiveMethod):
    """Mixture-of-datasets posterior, knowledge-gradient picks (peppp's default method).

    fit: the training rows become the mixture's components (`RowMixture`), with their principal
    directions and per-row noise levels; nothing else is learned, so fitting is one truncated SVD.
    session: works in rounds (propose, measure, observe), from zero measurements on; a pick is where
    a measurement is expected to lower the recommended error of the memory budgets most.

    rank: principal directions in which the new dataset may differ from each training dataset.
    kernel_scale: the mixture's kernel width relative to the datasets' spread; None = Silverman's rule
      for the number of training rows and `rank` dimensions (`silverman_scale`).
    noise_scale: multiplies each training row's cell noise; 2 because the new row and the training row
      each carry their own.
    fantasies: quadrature points for each candidate measurement in the knowledge gradient.
    max_components, max_choices: caps that keep one pick cheap on big matrices.
    """

    name = "adaptive"
    sequential = True

    def __init__(
        self,
        *,
        rank: int = 5,
        kernel_scale: float | None = None,
        noise_scale: float = 2.0,
        fantasies: int = 64,
        max_components: int = 256,
        max_choices: int = 128,
    ):
        if rank < 1:
            raise PepppError(f"rank {rank} must be a positive integer")
        if kernel_scale is not None and not kernel_scale > 0:
            raise PepppError(f"kernel_scale {kernel_scale!r} must be positive (or None for Silverman's rule)")
        if not noise_scale > 0:
            raise PepppError(f"noise_scale {noise_scale!r} must be positive")
        self.rank = rank
        self.kernel_scale = kernel_scale
        self.noise_scale = noise_scale
        self.fantasies = fantasies
        self.max_components = max_components
        self.max_choices = max_choices

    def _fit(self, error: np.ndarray) -> None:
        if error.shape[0] < 2:
            raise PepppError(f"the adaptive method needs at least 2 meta-training datasets, got {error.shape[0]}")
        basis = RowMixture.from_matrix(error, rank=self.rank)
        h = self.kernel_scale
        if h is None:
            h = silverman_scale(error.shape[0], basis.factor.shape[1])
        self.kernel_scale_ = h
        self.model_ = basis.scaled(h, self.noise_scale)

    def _session(self, *, memory_mb, candidates, budget_mb, seed):
        return AdaptiveSession(self, memory_mb=memory_mb, candidates=candidates, budget_mb=budget_mb, seed=seed)
