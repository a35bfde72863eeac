"""Tests for the convex relaxations: near-optimal relaxed objective, rounding, criteria."""

from __future__ import annotations

import numpy as np
import pytest

from peppp.design import ConvexAOptimal, ConvexDOptimal, ConvexEOptimal, ExperimentDesign
from peppp.design.convex import relaxed_design


def objective(Y, v, criterion, epsilon=1e-12):
    M = (Y * v) @ Y.T + epsilon * np.eye(Y.shape[0])
    if criterion == "d":
        return -np.linalg.slogdet(M)[1]
    if criterion == "a":
        return np.trace(np.linalg.inv(M))
    return -np.linalg.eigvalsh(M)[0]


def random_feasible(rng, m, n_free):
    """A random point of {0 <= v <= 1, sum v = n_free}."""
    v = rng.dirichlet(np.ones(m)) * n_free
    while v.max() > 1:
        excess = np.maximum(v - 1, 0).sum()
        v = np.minimum(v, 1)
        room = 1 - v
        v += excess * room / room.sum()
    return v


@pytest.mark.parametrize("criterion", ["d", "a", "e"])
def test_relaxed_solution_beats_random_feasible_points(criterion):
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((3, 25))
    v = relaxed_design(
        Y, np.zeros(0, dtype=int), np.arange(25), 6, criterion=criterion, epsilon=1e-12, max_iter=2000, tol=1e-7
    )
    assert np.all((v >= 0) & (v <= 1 + 1e-12)) and v.sum() == pytest.approx(6)
    best = objective(Y, v, criterion)
    others = [objective(Y, random_feasible(rng, 25, 6), criterion) for _ in range(300)]
    assert best <= min(others) + 1e-3 * abs(best)


def test_d_relaxation_matches_ed_quality():
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((4, 40))
    convex = ConvexDOptimal().select(Y, 8)
    ed = ExperimentDesign().select(Y, 8)

    def logdet(design):
        return np.linalg.slogdet(Y[:, design] @ Y[:, design].T)[1]

    assert logdet(convex) >= logdet(ed) - 0.5


def test_criteria_differ_and_are_named():
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((3, 30)) * np.array([[3.0], [1.0], [0.2]])
    designs = {cls.criterion: cls().select(Y, 4).tolist() for cls in (ConvexDOptimal, ConvexAOptimal, ConvexEOptimal)}
    assert len({tuple(sorted(d)) for d in designs.values()}) >= 2
    # E-optimal cares only about the weakest direction: its picks carry the most of the third row.
    weak = np.abs(Y[2])
    assert weak[designs["e"]].mean() > weak.mean()
