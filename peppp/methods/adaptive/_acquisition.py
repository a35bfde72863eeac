"""The adaptive method's acquisition: the knowledge gradient of the memory budgets' recommended error,
and a cheap screen that keeps only the most promising choices for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

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
    factor = post.model.factor  # (m, k)
    noise = post.model.noise[idx]  # (c, m)
    # Under component i, cov(e, e_j) = factor @ a_ij + noise_ij at j (zero at measured cells), where
    # a_ij = (I - B K_i^-1 B^T) f_j, B = factor[S]^T: so each update is a k-vector, not an m-vector.
    reduce = post.reduction(idx)  # (c, k, k)
    m, k = means.shape[1], factor.shape[1]
    step = max(1, CHUNK_FLOATS // (len(idx) * (k + 2) + fantasies * m + fantasies * len(idx)))
    for start in range(0, len(choices), step):
        cols = choices[start : start + step]
        a = reduce @ factor[cols].T  # (c, k, C)
        var = np.maximum(np.einsum("ck,ikc->ic", factor[cols], a) + noise[:, cols], NOISE_FLOOR * 1e-3)  # (c, C)
        mj = means[:, cols]  # (c, C)
        y = predictive_quantiles(w, mj, np.sqrt(var), probs)  # (C, Q)
        dev = y[:, :, None] - mj.T[:, None, :]  # (C, Q, c)
        lw = log_w[None, None, :] - 0.5 * dev**2 / var.T[:, None, :] - 0.5 * np.log(var.T)[:, None, :]
        lw -= lw.max(axis=2, keepdims=True)
        resp = np.exp(lw)
        resp /= resp.sum(axis=2, keepdims=True)  # (C, Q, c) new component weights
        coef = resp * dev / var.T[:, None, :]  # (C, Q, c): the regression of e on e_j, per component
        updated = resp @ means + np.einsum("jqi,ikj->jqk", coef, a) @ factor.T  # (C, Q, m)
        own = np.einsum("jqi,ij->jq", coef, noise[:, cols])
        updated[np.arange(len(cols)), :, cols] += own
        if len(post.measured):
            updated[:, :, post.measured] = post.errors
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
