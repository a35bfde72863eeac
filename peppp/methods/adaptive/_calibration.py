"""Calibration of the adaptive method's uncertainty, from the training rows alone: a nested leave-one-out
in which training rows play the new dataset. Two factors per number of measurements come out of it:
the std's (so that +-1 std covers about 68% of the unmeasured cells) and the spread of the joint draws
that `probability_best` is computed from (so that "best with probability p" is right p of the time)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.special import ndtri

from peppp.methods.adaptive._acquisition import Budgets, screening_gain
from peppp.methods.adaptive._blas import one_blas_thread
from peppp.methods.adaptive._mixture import MixturePosterior, RowMixture
from peppp.pareto import budget_picks, least_within, true_frontier_budgets

# Share of a normal distribution within +-1 standard deviation.
ONE_STD_COVERAGE = 0.6826894921370859
# The factors tried for the draws' spread (the median factor t and the log-std s of a log-normal
# factor per draw, `scale_multipliers`), and how many draws each nested posterior gets.
PROBABILITY_SCALES = np.round(np.arange(0.30, 3.001, 0.05), 2)
SCALE_SPREADS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
NESTED_DRAWS = 128
# The quantile of the held-out rows' surprises past which a dataset's stds and draws are widened.
SURPRISE_QUANTILE = 0.5


def scale_multipliers(count: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """One factor per draw, log-normal with median 1 and log-std `spread` (stratified: the normal
    quantiles of `count` equal slices, in a random order), so the draws are a scale mixture of the
    posterior: with few measurements its spread is itself unsure, and a single factor states the
    picks that look safe as too safe and the long shots as too long (on the paper's matrix after
    3 measurements: stated 0.15 -> right 0.26 of the time, stated 0.55 -> 0.41)."""
    return np.exp(spread * ndtri((rng.permutation(count) + 0.5) / count))


def fit_scales(model: RowMixture, memory_mb: np.ndarray, candidates: np.ndarray, sizes: np.ndarray, *, rows: int,
               seed: int, workers: int = 1, observed: np.ndarray | None = None,
               first: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each number of measurements in `sizes`: the std's factor, the draws' factor and spread, and
    the reference surprise (`surprise_factor`).

    Up to `rows` training rows (a seeded choice) are held out in turn: the mixture without that row's
    component plays the prior, and the held-out row's cells are measured one by one: first `first`
    (the session's own first pick, from the prior, which a held-out row's prior barely moves; None or
    not measured in that row: as the later ones), then where the cheap screening gain of the posterior
    so far is largest (`screening_gain`: the kind of cells, in the order, that a session measures; the
    knowledge gradient itself would cost too much here). The first cell steers the whole search: with
    the screening gain's first cell instead, the draws' factor came out 10-15% larger than the one the
    outer folds needed on the paper's matrix. Then, per n:
    - reference surprise: the `SURPRISE_QUANTILE` quantile (the median) over the held-out rows of
      their surprise (the mean squared standardised error of each measurement under the posterior
      before it); each held-out row's std and draws are widened by its `surprise_factor` before the
      factors below are fitted, as a session's are;
    - std factor: the 68.3% quantile of |true - mean| / (std x widening) over the unmeasured candidates;
    - draws factor and spread: the (t, s) in `PROBABILITY_SCALES` x `SCALE_SPREADS` of least Brier
      score of `probability_best` over the held-out rows' budgets (the true frontier's memories, as the
      evaluation scores them), where the probability comes from the posterior's joint draws with their
      deviations from the mean times t times a log-normal factor of log-std s per draw
      (`scale_multipliers`; s = 0 is one factor for all; ties go to the least s).
    The principal directions and noise levels stay those of all training rows (one SVD; a held-out row
    moves them little). A size that leaves no held-out row a measured candidate unmeasured takes the
    factors of the size before it (1, spread 0 and an infinite reference, which widens nothing, for the
    first). `workers` threads share the held-out rows (the factors do not depend on how many).

    observed: which cells of the training rows were measured (None: all). A completed cell is the
    low-rank model's own smooth guess, so a held-out row is "measured" and scored on its measured cells
    only: against completed cells the posterior would look far surer than it is.
    """
    n_rows = model.rows.shape[0]
    sizes = np.asarray(sizes, dtype=int)
    held = np.random.default_rng(seed).permutation(n_rows)[: min(rows, n_rows)]
    budgets = Budgets.of(memory_mb, candidates)

    def held_out(r: int) -> list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]]:
        """(size index, surprise, |z| of the unmeasured candidates, limits of the draws' factor per
        budget, outcomes) of held-out row r at each size."""
        keep = np.arange(n_rows) != r
        nested = RowMixture(model.rows[keep], model.factor, model.noise[keep])
        truth = model.rows[r]
        known = candidates if observed is None else candidates & observed[r]
        cells = np.flatnonzero(known)
        out = []
        opening = first if first is not None and known[first] else None
        for s, (measured, posterior, mean, var, surprise) in enumerate(
                _screening_picks(nested, truth, budgets, known, sizes, first=opening)):
            free = known.copy()
            free[measured] = False
            if not free.any():
                continue
            z = np.abs(truth[free] - mean[free]) / np.sqrt(np.maximum(var[free], 1e-300))
            deviation = posterior.draws(NESTED_DRAWS, np.random.default_rng([seed, int(r), len(measured)])) - mean
            limit, outcome = _limits(memory_mb[cells], truth[cells], mean[cells], deviation[:, cells])
            out.append((s, surprise, z, limit, outcome))
        return out

    if workers > 1 and len(held) > 1:
        with one_blas_thread(), ThreadPoolExecutor(max_workers=min(workers, len(held))) as pool:
            results = list(pool.map(held_out, held))
    else:
        results = [held_out(r) for r in held]
    surprises = [[] for _ in sizes]
    for result in results:
        for s, surprise, *_ in result:
            surprises[s].append(surprise)
    reference = np.array([float(np.quantile(values, SURPRISE_QUANTILE)) if values else np.nan for values in surprises])
    z = [[] for _ in sizes]
    brier = np.zeros((len(sizes), len(SCALE_SPREADS), len(PROBABILITY_SCALES)))
    scored = np.zeros(len(sizes), dtype=bool)
    for r, result in zip(held, results):  # in the order of `held`, whatever the threads did
        for s, surprise, values, limit, outcome in result:
            widen = surprise_factor(surprise, reference[s])
            z[s].append(values / widen)
            probability = _probabilities(limit / widen, np.random.default_rng([seed, int(r), int(sizes[s]), 1]))
            brier[s] += ((probability - outcome) ** 2).sum(axis=-1)
            scored[s] |= len(outcome) > 0
    std = np.array([float(np.quantile(np.concatenate(values), ONE_STD_COVERAGE)) if values else np.nan for values in z])
    spread_at, scale_at = np.unravel_index(np.argmin(brier.reshape(len(sizes), -1), axis=1), brier.shape[1:])
    draws = np.where(scored, PROBABILITY_SCALES[scale_at], np.nan)
    spread = np.where(scored, SCALE_SPREADS[spread_at], np.nan)
    return _carried(std), _carried(draws), _carried(spread, first=0.0), _carried(reference, first=np.inf)


def surprise_factor(surprise: float, reference: float) -> float:
    """How much wider than the calibrated spread a dataset's estimates are stated, from how surprising
    its measurements were: sqrt(surprise / reference), at least 1, where the surprise is the mean of
    each measurement's squared standardised error under the posterior on the measurements before it,
    and the reference is the median surprise of the nested leave-one-out's held-out rows after as many.
    A dataset unlike the training rows (on the paper's matrix: one whose whole group is held out)
    shows it in its first measurements (median surprise after 3: about 1.0, against 0.3 for one with
    siblings among the training rows), and the posterior, which knows only the training rows, is too
    sure there; a dataset as surprising as the held-out training rows keeps the calibrated spread."""
    if not surprise > reference:  # also a NaN or infinite reference: nothing to compare with
        return 1.0
    return float(np.sqrt(surprise / reference))


def squared_error(value: float, mean: np.ndarray, var: np.ndarray, cell: int) -> float:
    """A measurement's squared standardised error under the posterior before it (mean, var): one term
    of the surprise (`surprise_factor`)."""
    return float((value - mean[cell]) ** 2 / max(var[cell], 1e-300))


def _carried(factors: np.ndarray, *, first: float = 1.0) -> np.ndarray:
    """Sizes with nothing to calibrate (no held-out row had a measured candidate left) take the factor
    of the largest smaller size that had; `first` before any."""
    out = factors.copy()
    last = first
    for i, value in enumerate(out):
        if np.isnan(value):
            out[i] = last
        else:
            last = value
    return out


def _screening_picks(model: RowMixture, truth: np.ndarray, budgets: Budgets, candidates: np.ndarray,
                     sizes: np.ndarray, *, first: int | None = None,
                     ) -> list[tuple[np.ndarray, MixturePosterior, np.ndarray, np.ndarray, float]]:
    """The cells of `truth` measured one by one, `first` (a candidate) first if given, each other where
    the cheap screening gain of the posterior so far is largest (the kind of cells, and in the order,
    that a session measures); for each size in `sizes` (increasing; fewer when the candidates run out)
    the cells, the posterior, its mean and variance, and the surprise of the measurements so far (the
    mean of their squared standardised errors under the posterior before each, `surprise_factor`)."""
    posterior = model.condition([], [])
    out = []
    measured: list[int] = []
    squared: list[float] = []  # each measurement's squared standardised error before it was made
    while len(out) < len(sizes):
        mean, var, _ = posterior.moments()
        if len(measured) == sizes[len(out)]:
            out.append((np.array(measured, dtype=int), posterior, mean, var, float(np.mean(squared))))
            if len(out) == len(sizes):
                break
        free = candidates.copy()
        free[measured] = False
        choices = np.flatnonzero(free)
        if len(choices) == 0:
            break
        if first is not None and not measured:
            cell = int(first)
        else:
            cell = int(choices[np.argmax(screening_gain(mean, np.sqrt(var), budgets, choices))])
        measured.append(cell)
        squared.append(squared_error(truth[cell], mean, var, cell))
        posterior = posterior.extended(cell, truth[cell])
    return out


def _limits(memory: np.ndarray, truth: np.ndarray, estimate: np.ndarray,
            deviation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every draw and budget of the true frontier, the largest factor of the draws' deviations at
    which the budget's pick is still the least draw ((draws, budgets)), and whether each budget's pick
    is truly the best ((budgets,), as floats).

    With draws y = estimate + t d, the pick p (least estimate within the budget) is the least draw iff
    t (d_p - d_l) <= estimate_l - estimate_p for every l within the budget: iff t <= T, the least ratio
    over the l with d_p > d_l."""
    order, ends, picks = budget_picks(memory, estimate, true_frontier_budgets(memory, truth))
    outcome = truth[picks] <= least_within(truth, order, ends)
    limit = np.empty((deviation.shape[0], len(ends)))
    for pick in np.unique(picks):
        budgets = np.flatnonzero(picks == pick)
        within = order[: ends[budgets].max()]  # the cells of this pick's largest budget, by memory
        ahead = deviation[:, [pick]] - deviation[:, within]  # (draws, cells)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ahead > 0, (estimate[within] - estimate[pick])[None, :] / ahead, np.inf)
        limit[:, budgets] = least_within(ratio, np.arange(len(within)), ends[budgets])
    return limit, outcome.astype(float)


def _probabilities(limit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The share of draws whose factor t f is within their limit T (`_limits`) for each spread s of
    `SCALE_SPREADS` and factor t of `PROBABILITY_SCALES` ((spreads, scales, budgets)), f the draw's
    `scale_multipliers` factor for s: each spread places T / f among the factors t (one sorted search),
    and the share of draws at or above each t is a cumulative count."""
    draws, budgets = limit.shape
    steps = len(PROBABILITY_SCALES)
    probability = np.empty((len(SCALE_SPREADS), steps, budgets))
    columns = np.arange(budgets) * (steps + 1)
    for k, spread in enumerate(SCALE_SPREADS):
        # How many factors t are <= T / f: draw and budget count for the first that many t.
        above = np.searchsorted(PROBABILITY_SCALES, limit / scale_multipliers(draws, spread, rng)[:, None], side="right")
        counts = np.bincount((above + columns).ravel(), minlength=budgets * (steps + 1)).reshape(budgets, steps + 1)
        # Draws with t_j <= T / f, for each j: those whose count exceeds j.
        probability[k] = (draws - np.cumsum(counts, axis=1)[:, :-1]).T / draws
    return probability
