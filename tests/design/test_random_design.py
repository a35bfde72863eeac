"""Tests for the random baseline: uniform over candidates, seeded."""

from __future__ import annotations

import numpy as np

from peppp.design import RandomDesign


def test_uniform_over_candidates():
    Y = np.ones((2, 10))
    candidates = np.arange(10) < 8
    counts = np.zeros(10)
    for seed in range(2000):
        counts[RandomDesign().select(Y, 2, candidates=candidates, seed=seed)] += 1
    assert counts[8:].sum() == 0
    # 2000 draws of 2 of 8: each expected 500 times; 5 sigma is about 100.
    assert np.all(np.abs(counts[:8] - 500) < 100)


def test_seeds_differ():
    Y = np.ones((2, 50))
    assert RandomDesign().select(Y, 5, seed=1).tolist() != RandomDesign().select(Y, 5, seed=2).tolist()
