"""Tests for cost-aware ED: equals ED at equal costs, prefers cheap columns, fills the budget."""

from __future__ import annotations

import numpy as np
import pytest

from peppp.design import CostAwareDesign, ExperimentDesign


@pytest.mark.parametrize("seed", range(6))
def test_equal_costs_give_ed(seed):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((5, 50))
    measured = [] if seed % 2 else [int(rng.integers(50))]
    candidates = rng.random(50) < 0.8
    for n in (3, 5, 12):
        ed = ExperimentDesign().select(Y, n, measured=measured, candidates=candidates)
        for costs in (None, np.full(50, 7.0)):
            cost_aware = CostAwareDesign().select(Y, n, measured=measured, candidates=candidates, costs=costs)
            assert cost_aware.tolist() == ed.tolist()


def test_prefers_cheap_configurations():
    rng = np.random.default_rng(7)
    Y = rng.standard_normal((4, 60))
    costs = rng.uniform(1, 100, 60)
    ed = ExperimentDesign().select(Y, 10)
    cheap = CostAwareDesign().select(Y, 10, costs=costs)
    assert costs[cheap].sum() < 0.5 * costs[ed].sum()
    assert np.linalg.matrix_rank(Y[:, cheap]) == 4


def test_fills_the_budget():
    rng = np.random.default_rng(8)
    Y = rng.standard_normal((3, 40))
    costs = rng.uniform(1, 10, 40)
    budget = 30.0
    design = CostAwareDesign().select(Y, 40, costs=costs, budget=budget)
    spent = costs[design].sum()
    assert spent <= budget
    left = np.setdiff1d(np.arange(40), design)
    assert np.all(spent + costs[left] > budget)  # nothing else would still fit
