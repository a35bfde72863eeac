"""Calibration of the adaptive method's stds, from the training rows alone: a nested leave-one-out in
which training rows play the new dataset, so that +-1 std covers about 68% of the unmeasured cells."""

from __future__ import annotations

import numpy as np

from peppp.methods.adaptive._acquisition import Budgets, screening_gain
from peppp.methods.adaptive._mixture import RowMixture

# Share of a normal distribution within +-1 standard deviation.
ONE_STD_COVERAGE = 0.6826894921370859


def std_scales(model: RowMixture, memory_mb: np.ndarray, candidates: np.ndarray, sizes: np.ndarray, *, rows: int,
               seed: int) -> np.ndarray:
    """The factor per number of measurements in `sizes` by which the posterior std must be multiplied
    for +-1 std to cover 68.3% of held-out training rows' unmeasured cells.

    Up to `rows` training rows (a seeded choice) are held out in turn: the mixture without that row's
    component plays the prior, the cells measured are the first n of one order (the prior's cheap
    screening gain over the memory budgets, the kind of cells the knowledge gradient measures first),
    and each unmeasured candidate's |true - mean| / std is collected per n. The principal directions and noise levels
    stay those of all training rows (one SVD; a held-out row moves them little). A size that leaves no
    candidate unmeasured gets factor 1.
    """
    n_rows, m = model.rows.shape
    sizes = np.asarray(sizes, dtype=int)
    held = np.random.default_rng(seed).permutation(n_rows)[: min(rows, n_rows)]
    post = model.condition([], [])
    mean, var, _ = post.moments()
    choices = np.flatnonzero(candidates)
    gain = screening_gain(mean, np.sqrt(var), Budgets.of(memory_mb, candidates), choices)
    order = choices[np.argsort(-gain, kind="stable")[: int(sizes.max())]]
    z = [[] for _ in sizes]
    for r in held:
        keep = np.arange(n_rows) != r
        nested = RowMixture(model.rows[keep], model.factor, model.noise[keep])
        truth = model.rows[r]
        for s, n in enumerate(sizes):
            measured = order[:n]
            mean, var, _ = nested.condition(measured, truth[measured]).moments()
            free = candidates.copy()
            free[measured] = False
            if not free.any():
                continue
            z[s].append(np.abs(truth[free] - mean[free]) / np.sqrt(np.maximum(var[free], 1e-300)))
    # A size that leaves no candidate unmeasured has nothing to calibrate: factor 1.
    return np.array([float(np.quantile(np.concatenate(values), ONE_STD_COVERAGE)) if values else 1.0 for values in z])
