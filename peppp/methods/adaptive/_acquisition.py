"""The adaptive method's acquisition: the knowledge gradient of the memory budgets' recommended error,
and a cheap screen that keeps only the most promising choices for it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri
from threadpoolctl import threadpool_limits

from peppp.methods.adaptive._mixture import CHUNK_FLOATS, NOISE_FLOOR, MixturePosterior


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
    """Quantiles `probs` (increasing, inside (0, 1)) of one-dimensional Gaussian mixtures, one mixture per column.

    weights (c,), mean and std (c, C): column j is the mixture sum_i w_i N(mean_ij, std_ij^2).
    The CDF is tabulated on `grid` points over mean -/+ 6 std and inverted by linear interpolation,
    so a quantile is off by at most one grid step (range / grid). Returns (C, len(probs)).

    Only the grid points that can bracket a quantile are tabulated: below min_i(mean_i + std_i z_0),
    z_0 the standard normal's probs[0] quantile, every component's CDF, hence the mixture's, is at
    most probs[0]; above max_i(mean_i + std_i z_1) at least probs[-1] (about half the grid, and half
    the cost of the normal CDFs that dominate it). A window that fails that check numerically is
    tabulated whole.
    """
    probs = np.asarray(probs, dtype=float)
    lo = (mean - 6 * std).min(axis=0)
    span = (mean + 6 * std).max(axis=0) - lo
    line = np.linspace(0.0, 1.0, grid)
    low = (mean + ndtri(probs[0]) * std).min(axis=0)
    high = (mean + ndtri(probs[-1]) * std).max(axis=0)
    first = np.clip(np.floor((low - lo) / span * (grid - 1)).astype(int) - 1, 0, grid - 1)
    last = np.clip(np.ceil((high - lo) / span * (grid - 1)).astype(int) + 1, 0, grid - 1)
    out = np.empty((mean.shape[1], len(probs)))
    for j in range(mean.shape[1]):  # column by column: the (c x window) scratch stays in cache
        points = lo[j] + span[j] * line[first[j] : last[j] + 1]
        cdf = weights @ ndtr((points[None, :] - mean[:, j, None]) / std[:, j, None])
        if (first[j] > 0 and cdf[0] > probs[0]) or (last[j] < grid - 1 and cdf[-1] < probs[-1]):
            points = lo[j] + span[j] * line
            cdf = weights @ ndtr((points[None, :] - mean[:, j, None]) / std[:, j, None])
        out[j] = np.interp(probs, cdf, points)
    return out


def knowledge_gradient(
    post: MixturePosterior,
    budgets: Budgets,
    choices: np.ndarray,
    *,
    fantasies: int,
    max_components: int,
    rng: np.random.Generator,
    workers: int = 1,
) -> np.ndarray:
    """Expected drop of `budgets.value` (the mean recommended error over budgets) from measuring each choice.

    For each choice j the measurement y takes `fantasies` values, the quantiles at the midpoints of
    equal-probability strata of the mixture's predictive (a deterministic quadrature), and the
    mixture is updated exactly for each: weights by each component's likelihood of y, means by its
    Gaussian regression on y.

    The updated estimates are built straight in budget order, one column per (choice, fantasy):
    rows [means | factor] of the candidates sorted by memory times columns [new weights | k-vector
    of the regression], so that the running minimum over budgets is a pass over rows. `workers`
    threads share the choices (the gains do not depend on how many).
    """
    idx, w = post.leading(max_components, rng)
    means = post.component_means(idx)  # (c, m)
    now = float(budgets.value(w @ means))
    probs = (np.arange(fantasies) + 0.5) / fantasies
    log_w = np.log(w)
    gain = np.zeros(len(choices))
    factor = post.model.factor  # (m, k)
    noise = post.model.noise[idx]  # (c, m)
    # Under component i, cov(e, e_j) = factor @ a_ij + noise_ij at j (zero at measured cells), where
    # a_ij = (I - B K_i^-1 B^T) f_j, B = factor[S]^T: so each update is a k-vector, not an m-vector.
    reduce = post.reduction(idx)  # (c, k, k)
    flat_reduce, outer = reduce.reshape(len(idx), -1), post.model.outer_factor
    m, k = means.shape[1], factor.shape[1]
    c, order, Q = len(idx), budgets.order, fantasies
    rows = np.concatenate([means[:, order].T, factor[order]], axis=1)  # (M, c + k), budget order
    position = np.full(m, -1)
    position[order] = np.arange(len(order))
    measured = position[post.measured] if len(post.measured) else np.zeros(0, dtype=int)
    fixed, fixed_values = measured[measured >= 0], np.asarray(post.errors, dtype=float)[measured >= 0]
    # The chunks do not depend on `workers`, so neither do the gains (to the last bit).
    step = max(1, CHUNK_FLOATS // (8 * Q * (len(order) + c + k)))  # small enough to stay in cache, and to share

    def chunk(start: int) -> None:
        cols = choices[start : start + step]
        C = len(cols)
        a = reduce @ factor[cols].T  # (c, k, C)
        var = np.maximum(flat_reduce @ outer[cols].T + noise[:, cols], NOISE_FLOOR * 1e-3)  # (c, C): f_j^T R_i f_j + noise
        mj = means[:, cols]  # (c, C)
        y = predictive_quantiles(w, mj, np.sqrt(var), probs)  # (C, Q)
        dev = y[:, :, None] - mj.T[:, None, :]  # (C, Q, c)
        lw = log_w[None, None, :] - 0.5 * dev**2 / var.T[:, None, :] - 0.5 * np.log(var.T)[:, None, :]
        lw -= lw.max(axis=2, keepdims=True)
        columns = np.empty((C, Q, c + k))
        resp = np.exp(lw, out=columns[:, :, :c])
        resp /= resp.sum(axis=2, keepdims=True)  # (C, Q, c) new component weights
        coef = resp * dev / var.T[:, None, :]  # (C, Q, c): the regression of e on e_j, per component
        np.matmul(coef, a.transpose(2, 0, 1), out=columns[:, :, c:])
        updated = rows @ columns.reshape(C * Q, c + k).T  # (M, C * Q): updated estimates, budget order
        own = np.einsum("jqi,ij->jq", coef, noise[:, cols])  # j's own noise share
        for n, p in enumerate(position[cols]):
            if p >= 0:
                updated[p, n * Q : (n + 1) * Q] += own[n]
        updated[fixed] = fixed_values[:, None]
        for r in range(1, len(order)):  # running minimum (a loop of rows beats minimum.accumulate 7x)
            np.minimum(updated[r - 1], updated[r], out=updated[r])
        gain[start : start + C] = now - updated[budgets.ends].mean(axis=0).reshape(C, Q).mean(axis=1)

    starts = range(0, len(choices), step)
    if workers > 1 and len(starts) > 1:
        # numpy and scipy release the GIL in the array work: chunks run side by side, each writing its
        # own gains. BLAS keeps to one thread meanwhile (its own threads would fight these).
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            list(pool.map(chunk, starts))
    else:
        for start in starts:
            chunk(start)
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
    step = max(1, CHUNK_FLOATS // (4 * len(ends)))
    for start in range(0, len(choices), step):  # (choice, level) pairs at once: the levels containing j
        cols = choices[start : start + step]
        row, level = np.nonzero(np.arange(len(ends))[None, :] >= position[cols][:, None])
        s = np.maximum(std[cols], 1e-12)[row]
        diff = prefix_min[level] - mean[cols][row]
        d = diff / s
        value = s * (d * ndtr(d) + np.exp(-0.5 * d * d) / np.sqrt(2 * np.pi)) - np.maximum(diff, 0)
        out[start : start + len(cols)] = np.bincount(row, weights=value, minlength=len(cols))
    return out / len(ends)
