"""Calibration of the adaptive method's uncertainty, from the training rows alone: a nested leave-one-out
in which training rows play the new dataset. Two factors per number of measurements come out of it:
the std's (so that +-1 std covers about 68% of the unmeasured cells) and the spread of the joint draws
that `probability_best` is computed from (so that "best with probability p" is right p of the time)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from peppp.methods.adaptive._acquisition import Budgets, screening_gain
from peppp.methods.adaptive._blas import one_blas_thread
from peppp.methods.adaptive._mixture import MixturePosterior, RowMixture
from peppp.pareto import budget_picks, least_within, true_frontier_budgets

# Share of a normal distribution within +-1 standard deviation.
ONE_STD_COVERAGE = 0.6826894921370859
# The factors tried for the draws' spread, and how many draws each nested posterior gets.
PROBABILITY_SCALES = np.round(np.arange(0.30, 3.001, 0.05), 2)
NESTED_DRAWS = 128


def fit_scales(model: RowMixture, memory_mb: np.ndarray, candidates: np.ndarray, sizes: np.ndarray, *, rows: int,
               seed: int, workers: int = 1, observed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The std's factor and the draws' factor for each number of measurements in `sizes`.

    Up to `rows` training rows (a seeded choice) are held out in turn: the mixture without that row's
    component plays the prior, and the held-out row's cells are measured one by one where the cheap
    screening gain of the posterior so far is largest (`screening_gain`: the kind of cells, in the
    order, that a session measures; the knowledge gradient itself would cost too much here). Then, per n:
    - std factor: the 68.3% quantile of |true - mean| / std over the unmeasured candidates;
    - draws factor: the t in `PROBABILITY_SCALES` of least Brier score of `probability_best` over the
      held-out rows' budgets (the true frontier's memories, as the evaluation scores them), where the
      probability comes from the posterior's joint draws with their deviations from the mean times t.
    The principal directions and noise levels stay those of all training rows (one SVD; a held-out row
    moves them little). A size that leaves no held-out row a measured candidate unmeasured takes the
    factors of the size before it (1 for the first). `workers` threads share the held-out rows (the
    factors do not depend on how many).

    observed: which cells of the training rows were measured (None: all). A completed cell is the
    low-rank model's own smooth guess, so a held-out row is "measured" and scored on its measured cells
    only: against completed cells the posterior would look far surer than it is.
    """
    n_rows = model.rows.shape[0]
    sizes = np.asarray(sizes, dtype=int)
    held = np.random.default_rng(seed).permutation(n_rows)[: min(rows, n_rows)]
    budgets = Budgets.of(memory_mb, candidates)

    def held_out(r: int) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(size index, |z| of the unmeasured candidates, Brier score per t, outcomes) of held-out row r."""
        keep = np.arange(n_rows) != r
        nested = RowMixture(model.rows[keep], model.factor, model.noise[keep])
        truth = model.rows[r]
        known = candidates if observed is None else candidates & observed[r]
        cells = np.flatnonzero(known)
        out = []
        for s, (measured, posterior, mean, var) in enumerate(_screening_picks(nested, truth, budgets, known, sizes)):
            free = known.copy()
            free[measured] = False
            if not free.any():
                continue
            z = np.abs(truth[free] - mean[free]) / np.sqrt(np.maximum(var[free], 1e-300))
            deviation = posterior.draws(NESTED_DRAWS, np.random.default_rng([seed, int(r), len(measured)])) - mean
            probability, outcome = _probabilities_by_scale(memory_mb[cells], truth[cells], mean[cells],
                                                           deviation[:, cells])
            out.append((s, z, ((probability - outcome[None, :]) ** 2).sum(axis=1), outcome))
        return out

    if workers > 1 and len(held) > 1:
        with one_blas_thread(), ThreadPoolExecutor(max_workers=min(workers, len(held))) as pool:
            results = list(pool.map(held_out, held))
    else:
        results = [held_out(r) for r in held]
    z = [[] for _ in sizes]
    brier = np.zeros((len(sizes), len(PROBABILITY_SCALES)))
    scored = np.zeros(len(sizes), dtype=bool)
    for result in results:  # in the order of `held`, whatever the threads did
        for s, values, score, outcome in result:
            z[s].append(values)
            brier[s] += score
            scored[s] |= len(outcome) > 0
    std = np.array([float(np.quantile(np.concatenate(values), ONE_STD_COVERAGE)) if values else np.nan for values in z])
    draws = np.where(scored, PROBABILITY_SCALES[np.argmin(brier, axis=1)], np.nan)
    return _carried(std), _carried(draws)


def _carried(factors: np.ndarray) -> np.ndarray:
    """Sizes with nothing to calibrate (no held-out row had a measured candidate left) take the factor
    of the largest smaller size that had; 1 before any."""
    out = factors.copy()
    last = 1.0
    for i, value in enumerate(out):
        if np.isnan(value):
            out[i] = last
        else:
            last = value
    return out


def _screening_picks(model: RowMixture, truth: np.ndarray, budgets: Budgets, candidates: np.ndarray,
                     sizes: np.ndarray) -> list[tuple[np.ndarray, MixturePosterior, np.ndarray, np.ndarray]]:
    """The cells of `truth` measured one by one, each where the cheap screening gain of the posterior so
    far is largest (the kind of cells, and in the order, that a session measures); for each size in
    `sizes` (increasing; fewer when the candidates run out) the cells, the posterior and its mean and
    variance."""
    posterior = model.condition([], [])
    out = []
    measured: list[int] = []
    while len(out) < len(sizes):
        mean, var, _ = posterior.moments()
        if len(measured) == sizes[len(out)]:
            out.append((np.array(measured, dtype=int), posterior, mean, var))
            if len(out) == len(sizes):
                break
        free = candidates.copy()
        free[measured] = False
        choices = np.flatnonzero(free)
        if len(choices) == 0:
            break
        cell = int(choices[np.argmax(screening_gain(mean, np.sqrt(var), budgets, choices))])
        measured.append(cell)
        posterior = posterior.extended(cell, truth[cell])
    return out


def _probabilities_by_scale(memory: np.ndarray, truth: np.ndarray, estimate: np.ndarray,
                            deviation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """probability_best of every budget of the true frontier for each factor t of `PROBABILITY_SCALES`
    ((scales, budgets)), and whether each budget's pick is truly the best ((budgets,)).

    With draws y = estimate + t d, the pick p (least estimate within the budget) is the least draw iff
    t (d_p - d_l) <= estimate_l - estimate_p for every l within the budget: iff t <= T, the least ratio
    over the l with d_p > d_l. So T is found once per draw and budget, and every t costs a comparison.
    """
    order, ends, picks = budget_picks(memory, estimate, true_frontier_budgets(memory, truth))
    outcome = truth[picks] <= least_within(truth, order, ends)
    limit = np.empty((deviation.shape[0], len(ends)))
    for pick in np.unique(picks):
        budgets = np.flatnonzero(picks == pick)
        ahead = deviation[:, [pick]] - deviation  # (draws, cells)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ahead > 0, (estimate - estimate[pick])[None, :] / ahead, np.inf)
        limit[:, budgets] = least_within(ratio, order, ends[budgets])
    probability = (PROBABILITY_SCALES[:, None, None] <= limit[None, :, :]).mean(axis=1)
    return probability, outcome.astype(float)
