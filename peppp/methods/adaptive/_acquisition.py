"""The adaptive method's acquisition: the knowledge gradient of the memory budgets' recommended error,
and a cheap screen that keeps only the most promising choices for it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from peppp.methods.adaptive._blas import one_blas_thread
from peppp.methods.adaptive._mixture import CHUNK_FLOATS, NOISE_FLOOR, MixturePosterior


def _normal_cdf_table(per_unit: int, reach: float) -> tuple[np.ndarray, ...]:
    """Cubic Hermite coefficients of the standard normal CDF between the nodes -reach, -reach + 1 /
    per_unit, ..., reach (value, slope times the step, and the two higher terms), one array each."""
    nodes = np.arange(-reach, reach + 0.5 / per_unit, 1.0 / per_unit)
    value, slope = ndtr(nodes), np.exp(-0.5 * nodes**2) / np.sqrt(2 * np.pi) / per_unit
    p0, p1, d0, d1 = value[:-1], value[1:], slope[:-1], slope[1:]
    # the last node's entry is the CDF's value there, flat: a clipped argument lands on it
    return tuple(np.r_[c, last] for c, last in ((p0, value[-1]), (d0, 0.0), (3 * (p1 - p0) - 2 * d0 - d1, 0.0),
                                                (2 * (p0 - p1) + d0 + d1, 0.0)))


# The normal CDF by cubic Hermite interpolation between nodes 1/256 apart over -9..9 (outside: 0 or
# 1 to within 1e-19): off by at most 4e-13, and a third of the cost of scipy's ndtr.
_CDF_PER_UNIT, _CDF_REACH = 256, 9.0
_CDF_TABLE = _normal_cdf_table(_CDF_PER_UNIT, _CDF_REACH)
# Floats of normal CDFs that predictive_quantiles computes at a time.
QUANTILE_SCRATCH = 40_000


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF of `z` (a float array without NaN, overwritten as scratch)."""
    value, slope, c2, c3 = _CDF_TABLE
    z *= _CDF_PER_UNIT
    z += _CDF_PER_UNIT * _CDF_REACH
    np.clip(z, 0, len(value) - 1, out=z)
    node = z.astype(np.intp)
    z -= node  # the position between the node and the next, in [0, 1)
    out = np.take(c3, node)
    out *= z
    out += np.take(c2, node)
    out *= z
    out += np.take(slope, node)
    out *= z
    out += np.take(value, node)
    return out


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
    tabulated whole. The normal CDFs are `normal_cdf`'s (within 4e-13 of scipy's ndtr).
    """
    probs = np.asarray(probs, dtype=float)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError("predictive_quantiles needs finite means and finite positive stds")
    lo = (mean - 6 * std).min(axis=0)
    span = (mean + 6 * std).max(axis=0) - lo
    line = np.linspace(0.0, 1.0, grid)
    low = (mean + ndtri(probs[0]) * std).min(axis=0)
    high = (mean + ndtri(probs[-1]) * std).max(axis=0)
    first = np.clip(np.floor((low - lo) / span * (grid - 1)).astype(int) - 1, 0, grid - 1)
    last = np.clip(np.ceil((high - lo) / span * (grid - 1)).astype(int) + 1, 0, grid - 1)
    inverse = 1.0 / std
    out = np.empty((mean.shape[1], len(probs)))
    # A few columns at a time, over the widest of their windows (more points of the same grid leave the
    # interpolation as it is): the (c x columns x window) scratch stays in cache, and each numpy call
    # is long enough that threads sharing the choices do not queue for the interpreter.
    group = max(1, QUANTILE_SCRATCH // (mean.shape[0] * grid // 2))
    for start in range(0, mean.shape[1], group):
        cols = slice(start, start + group)
        width = int((last[cols] - first[cols]).max()) + 1
        begin = np.minimum(first[cols], grid - width)
        points = lo[cols, None] + span[cols, None] * line[begin[:, None] + np.arange(width)]  # (g, window)
        z = points[None, :, :] - mean[:, cols, None]  # (c, g, window)
        z *= inverse[:, cols, None]
        cdf = (weights @ normal_cdf(z).reshape(len(weights), -1)).reshape(points.shape)
        for n, j in enumerate(range(start, min(start + group, mean.shape[1]))):
            if (begin[n] > 0 and cdf[n, 0] > probs[0]) or (begin[n] + width - 1 < grid - 1 and cdf[n, -1] < probs[-1]):
                whole = lo[j] + span[j] * line
                out[j] = np.interp(probs, weights @ normal_cdf((whole[None, :] - mean[:, j, None]) * inverse[:, j, None]), whole)
            else:
                out[j] = np.interp(probs, cdf[n], points[n])
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

    The updated estimates are built straight in budget order, one row per (choice, fantasy): rows
    [new weights | k-vector of the regression] times columns [means | factor] of the candidates
    sorted by memory, so that the running minimum over budgets runs along each row. `workers`
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

    # The budgets' mean of the running minimum is one product with this (a level's end: 1 / levels).
    at_ends = np.zeros(len(order))
    at_ends[budgets.ends] = 1.0 / len(budgets.ends)

    def chunk(start: int) -> None:
        cols = choices[start : start + step]
        C = len(cols)
        a = reduce @ factor[cols].T  # (c, k, C)
        var = np.maximum(flat_reduce @ outer[cols].T + noise[:, cols], NOISE_FLOOR * 1e-3)  # (c, C): f_j^T R_i f_j + noise
        mj = means[:, cols]  # (c, C)
        y = predictive_quantiles(w, mj, np.sqrt(var), probs)  # (C, Q)
        # Component i's log likelihood of y, log w_i - (y - m_ij)^2 / (2 v_ij) - log(v_ij) / 2, less the
        # largest log w_i - log(v_ij) / 2 of the choice (the responsibilities do not depend on the shift;
        # an (choice, y) whose every term would underflow is shifted by its own largest term instead).
        inverse = 1.0 / var.T  # (C, c)
        base = log_w[None, :] - 0.5 * np.log(var.T)
        base -= base.max(axis=1, keepdims=True)
        dev = y[:, :, None] - mj.T[:, None, :]  # (C, Q, c)
        columns = np.empty((C, Q, c + k))
        lw = np.multiply(dev, dev, out=columns[:, :, :c])
        lw *= -0.5 * inverse[:, None, :]
        lw += base[:, None, :]
        total = np.exp(lw, out=lw).sum(axis=2, keepdims=True)
        if not total.min() > 1e-250:
            lw = base[:, None, :] - 0.5 * dev**2 * inverse[:, None, :]
            lw -= lw.max(axis=2, keepdims=True)
            total = np.exp(lw, out=columns[:, :, :c]).sum(axis=2, keepdims=True)
        resp = columns[:, :, :c]
        resp /= total  # (C, Q, c) new component weights
        coef = np.multiply(dev, resp, out=dev)
        coef *= inverse[:, None, :]  # (C, Q, c): the regression of e on e_j, per component
        np.matmul(coef, a.transpose(2, 0, 1), out=columns[:, :, c:])
        updated = columns.reshape(C * Q, c + k) @ rows.T  # (C * Q, M): updated estimates, budget order
        own = np.einsum("jqi,ij->jq", coef, noise[:, cols])  # j's own noise share
        for n, p in enumerate(position[cols]):
            if p >= 0:
                updated[n * Q : (n + 1) * Q, p] += own[n]
        updated[:, fixed] = fixed_values[None, :]
        np.minimum.accumulate(updated, axis=1, out=updated)  # the running minimum over budgets
        gain[start : start + C] = now - (updated @ at_ends).reshape(C, Q).mean(axis=1)

    starts = range(0, len(choices), step)
    if workers > 1 and len(starts) > 1:
        # numpy and scipy release the GIL in the array work: chunks run side by side, each writing its
        # own gains. BLAS keeps to one thread meanwhile (its own threads would fight these).
        with one_blas_thread(), ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            list(pool.map(chunk, starts))
    else:
        for start in starts:
            chunk(start)
    return gain


def screening_gain(mean: np.ndarray, std: np.ndarray, budgets: Budgets, choices: np.ndarray) -> np.ndarray:
    """A cheap knowledge gradient that ignores correlations: measuring j moves only j's own estimate.

    Expected improvement of j below the least estimate of each budget that contains j, averaged over
    budgets; used to keep only the most promising choices for the full knowledge gradient.

    The least estimate is a step function of the budget (it changes only where a budget admits a
    better configuration), so j's improvement is computed once per step, times the number of budgets
    containing j on it: choices x steps instead of choices x budgets.
    """
    order, ends = budgets.order, budgets.ends
    prefix_min = np.minimum.accumulate(mean[order])[ends]  # (levels,) non-increasing
    starts = np.flatnonzero(np.r_[True, prefix_min[1:] != prefix_min[:-1]])  # first level of each step
    stops = np.r_[starts[1:], len(ends)]
    position = np.empty(len(mean), dtype=int)
    position[order] = np.searchsorted(ends, np.arange(len(order)))  # first budget level containing j
    out = np.zeros(len(choices))
    step = max(1, CHUNK_FLOATS // (8 * len(starts)))
    for start in range(0, len(choices), step):
        cols = choices[start : start + step]
        count = np.clip(stops[None, :] - np.maximum(starts[None, :], position[cols][:, None]), 0, None)  # (C, steps)
        s = np.maximum(std[cols], 1e-12)[:, None]
        diff = prefix_min[starts][None, :] - mean[cols][:, None]
        d = diff / s
        value = s * (d * ndtr(d) + np.exp(-0.5 * d * d) / np.sqrt(2 * np.pi)) - np.maximum(diff, 0)
        out[start : start + len(cols)] = (count * value).sum(axis=1)
    return out / len(ends)
