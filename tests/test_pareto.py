"""Tests for peppp.pareto: exact closed forms, brute-force cross-checks, moocore, and bad input."""

from __future__ import annotations

import itertools

import moocore
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peppp.errors import PepppError
from peppp.pareto import (
    best_for_budget,
    budget_regret,
    budget_regrets,
    convergence,
    hyperdiff,
    hypervolume,
    pareto_indices,
    pareto_mask,
)


def brute_pareto(memory, error):
    memory, error = np.asarray(memory, float), np.asarray(error, float)
    keep = []
    for i in range(len(memory)):
        dominated = np.any(
            (memory <= memory[i]) & (error <= error[i]) & ((memory < memory[i]) | (error < error[i]))
        )
        keep.append(not dominated)
    return np.array(keep, dtype=bool)


# Small integer grids produce many ties in memory, in error, and exact duplicates.
tied_points = st.integers(1, 40).flatmap(
    lambda m: st.tuples(
        st.lists(st.integers(0, 5), min_size=m, max_size=m),
        st.lists(st.integers(0, 5), min_size=m, max_size=m),
    )
)


# ----------------------------------------------------------------------------------------------------
# pareto_mask


def test_pareto_mask_simple_staircase():
    memory = [1, 2, 3, 4]
    error = [0.9, 0.5, 0.7, 0.1]
    assert pareto_mask(memory, error).tolist() == [True, True, False, True]


def test_exact_duplicates_both_stay():
    assert pareto_mask([1, 1, 2], [0.5, 0.5, 0.4]).tolist() == [True, True, True]


def test_equal_memory_keeps_only_least_error():
    assert pareto_mask([1, 1, 1], [0.5, 0.3, 0.3]).tolist() == [False, True, True]


def test_equal_error_keeps_only_least_memory():
    assert pareto_mask([3, 1, 2], [0.5, 0.5, 0.5]).tolist() == [False, True, False]


def test_empty_and_single_point():
    assert pareto_mask([], []).shape == (0,)
    assert pareto_mask([5.0], [0.3]).tolist() == [True]


@settings(max_examples=150, deadline=None)
@given(tied_points)
def test_pareto_mask_matches_brute_force(points):
    memory, error = points
    np.testing.assert_array_equal(pareto_mask(memory, error), brute_pareto(memory, error))


@settings(max_examples=100, deadline=None)
@given(tied_points)
def test_pareto_mask_matches_moocore_weak(points):
    memory, error = points
    expected = moocore.is_nondominated(np.column_stack([memory, error]).astype(float), keep_weakly=True)
    np.testing.assert_array_equal(pareto_mask(memory, error), expected)


def test_pareto_indices_sorted_by_memory():
    memory = [4, 1, 3, 2]
    error = [0.1, 0.9, 0.8, 0.5]
    assert pareto_indices(memory, error).tolist() == [1, 3, 0]


def test_pareto_mask_large_is_fast_and_correct():
    rng = np.random.default_rng(0)
    memory = rng.integers(0, 200, 100_000).astype(float)
    error = rng.random(100_000)
    mask = pareto_mask(memory, error)
    front_err = error[mask][np.argsort(memory[mask])]
    assert np.all(np.diff(front_err) < 0)
    sub = rng.choice(100_000, 2_000, replace=False)
    np.testing.assert_array_equal(pareto_mask(memory[sub], error[sub]), brute_pareto(memory[sub], error[sub]))


# ----------------------------------------------------------------------------------------------------
# hypervolume: closed forms over many shapes


@pytest.mark.parametrize("a,b", [(0.0, 0.0), (0.25, 0.5), (0.9, 0.1), (0.5, 0.999)])
def test_single_point(a, b):
    assert hypervolume([a], [b]) == pytest.approx((1 - a) * (1 - b))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 50])
def test_diagonal_staircase(n):
    # Points (i/n, 1 - (i+1)/n), i = 0..n-1: the area is the sum of n columns of width 1/n.
    memory = np.arange(n) / n
    error = 1 - (np.arange(n) + 1) / n
    expected = sum((1 / n) * ((i + 1) / n) for i in range(n))
    assert hypervolume(memory, error) == pytest.approx(expected)
    assert expected == pytest.approx((n + 1) / (2 * n))


@pytest.mark.parametrize("n", [2, 4, 7])
def test_all_at_one_point_is_one_rectangle(n):
    assert hypervolume([0.3] * n, [0.4] * n) == pytest.approx(0.7 * 0.6)


def test_dominated_points_add_nothing():
    base = hypervolume([0.1, 0.5], [0.6, 0.2])
    assert base == pytest.approx(0.9 * 0.4 + 0.5 * 0.8 - 0.5 * 0.4)
    assert hypervolume([0.1, 0.5, 0.6, 0.2], [0.6, 0.2, 0.7, 0.65]) == pytest.approx(base)


def test_points_outside_reference_contribute_nothing():
    assert hypervolume([1.0, 0.5, 1.5], [0.2, 1.0, -0.5]) == 0.0
    assert hypervolume([1.0, 0.5], [0.2, 0.5]) == pytest.approx(0.25)


def test_custom_reference_and_negative_coordinates():
    assert hypervolume([-1.0, 2.0], [3.0, -2.0], reference=(4.0, 5.0)) == pytest.approx(
        5 * 2 + 2 * 7 - 2 * 2
    )


def test_empty_is_zero():
    assert hypervolume([], []) == 0.0


@pytest.mark.parametrize("seed", range(10))
def test_hypervolume_matches_moocore(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 200))
    points = rng.random((m, 2)) * 1.2  # some points beyond the reference
    if seed % 2:
        points = np.round(points, 1)  # ties and duplicates
    ref = np.array([1.0, 1.0])
    assert hypervolume(points[:, 0], points[:, 1]) == pytest.approx(moocore.hypervolume(points, ref=ref), abs=1e-12)


def test_hypervolume_permutation_invariant():
    rng = np.random.default_rng(3)
    memory, error = rng.random(30), rng.random(30)
    perm = rng.permutation(30)
    assert hypervolume(memory, error) == pytest.approx(hypervolume(memory[perm], error[perm]))


# ----------------------------------------------------------------------------------------------------
# hyperdiff and convergence


def test_hyperdiff_zero_for_perfect_estimate_and_scales_memory():
    memory = np.array([100.0, 200.0, 400.0])
    true = np.array([0.5, 0.3, 0.1])
    assert hyperdiff(memory, true, true, memory_scale=400.0) == 0.0
    est = np.array([0.5, 0.3, 0.2])
    # Only the last step changes: width (1 - 400/400) = 0, so nothing moves; then the middle step.
    assert hyperdiff(memory, true, est, memory_scale=400.0) == pytest.approx(0.0)
    est = np.array([0.5, 0.4, 0.1])
    assert hyperdiff(memory, true, est, memory_scale=400.0) == pytest.approx(0.5 * 0.1)


def test_hyperdiff_uses_estimates_of_every_configuration():
    memory = np.array([1.0, 2.0])
    true = np.array([0.5, 0.2])
    est = np.array([0.5, 0.6])  # the estimate drops config 1 from its frontier
    expected = abs((1 - 0.5) * 0.5 - ((1 - 0.5) * 0.5 + (1 - 1.0) * 0.8))
    assert hyperdiff(memory, true, est, memory_scale=2.0) == pytest.approx(expected)
    memory = np.array([1.0, 2.0, 4.0])
    true = np.array([0.5, 0.2, 0.1])
    est = np.array([0.5, 0.6, 0.1])
    true_hv = 0.75 * 0.5 + 0.5 * 0.3
    est_hv = 0.75 * 0.5
    assert hyperdiff(memory, true, est, memory_scale=4.0) == pytest.approx(abs(true_hv - est_hv))


def test_convergence_closed_form():
    memory = np.array([0.0, 1.0])
    true = np.array([0.5, 0.0])
    assert convergence(memory, true, true, memory_scale=1.0) == 0.0
    est = np.array([0.5, 0.3])  # estimated front: both points; (1, 0.3) is 0.3 from (1, 0)
    assert convergence(memory, true, est, memory_scale=1.0) == pytest.approx(0.15)
    est = np.array([0.9, 0.3])
    # Estimated front = (0, 0.9) and (1, 0.3); nearest true points (0, 0.5) and (1, 0).
    assert convergence(memory, true, est, memory_scale=1.0) == pytest.approx((0.4 + 0.3) / 2)


def test_convergence_matches_brute_force():
    rng = np.random.default_rng(7)
    memory = rng.integers(1, 20, 60).astype(float)
    true = rng.random(60)
    est = true + rng.normal(0, 0.1, 60)
    scale = memory.max()
    t, e = brute_pareto(memory, true), brute_pareto(memory, est)
    tp = np.column_stack([memory[t] / scale, true[t]])
    ep = np.column_stack([memory[e] / scale, est[e]])
    expected = np.mean(np.min(np.linalg.norm(ep[:, None, :] - tp[None, :, :], axis=2), axis=1))
    assert convergence(memory, true, est, memory_scale=scale) == pytest.approx(expected)


# ----------------------------------------------------------------------------------------------------
# budgets


def test_best_for_budget_ties_and_none():
    memory = [300, 100, 200, 100, 100]
    estimate = [0.1, 0.4, 0.2, 0.3, 0.3]
    assert best_for_budget(memory, estimate, 50) is None
    assert best_for_budget(memory, estimate, 100) == 3  # 0.3 twice at 100 MB: lower index
    assert best_for_budget(memory, estimate, 250) == 2
    assert best_for_budget(memory, estimate, 300) == 0
    # Equal estimate, different memory: lower memory wins.
    assert best_for_budget([200, 100], [0.3, 0.3], 500) == 1


def test_budget_regrets_closed_form():
    memory = np.array([1.0, 2.0, 3.0, 4.0])
    true = np.array([0.6, 0.4, 0.5, 0.1])
    est = np.array([0.6, 0.7, 0.45, 0.2])
    # Budgets = true-frontier memories 1, 2, 4. Picks: 0, 0, 3 (0.2 < 0.45); best true: 0.6, 0.4, 0.1.
    np.testing.assert_allclose(budget_regrets(memory, true, est), [0.0, 0.2, 0.0])
    assert budget_regret(memory, true, est) == pytest.approx(0.2 / 3)
    assert budget_regret(memory, true, true) == 0.0


def brute_regrets(memory, true, est):
    mask = brute_pareto(memory, true)
    out = []
    for b in np.unique(memory[mask]):
        pick = best_for_budget(memory, est, b)
        out.append(true[pick] - true[memory <= b].min())
    return np.array(out)


@settings(max_examples=100, deadline=None)
@given(tied_points, st.integers(0, 2**32 - 1))
def test_budget_regrets_match_brute_force(points, seed):
    memory, true = (np.asarray(p, float) for p in points)
    est = np.random.default_rng(seed).integers(0, 4, len(memory)).astype(float)
    np.testing.assert_allclose(budget_regrets(memory, true, est), brute_regrets(memory, true, est))


# ----------------------------------------------------------------------------------------------------
# bad input: one line, PepppError


@pytest.mark.parametrize(
    "call",
    [
        lambda: pareto_mask([1, 2], [0.1]),
        lambda: pareto_mask([1, np.nan], [0.1, 0.2]),
        lambda: pareto_mask([[1, 2]], [[0.1, 0.2]]),
        lambda: hypervolume([0.1], [np.inf]),
        lambda: hypervolume([0.1], [0.2], reference=(1.0,)),
        lambda: hyperdiff([1], [0.1], [0.2], memory_scale=0.0),
        lambda: hyperdiff([1, 2], [0.1, 0.2], [0.2], memory_scale=1.0),
        lambda: convergence([], [], [], memory_scale=1.0),
        lambda: best_for_budget([1], [0.2], float("nan")),
        lambda: best_for_budget(["a"], [0.2], 1.0),
        lambda: budget_regret([], [], []),
        lambda: budget_regrets([1, 2], [0.1, np.nan], [0.1, 0.2]),
    ],
)
def test_bad_input_raises_one_line(call):
    with pytest.raises(PepppError) as info:
        call()
    assert "\n" not in str(info.value)


def test_empty_inputs_have_defined_answers():
    assert hyperdiff([], [], [], memory_scale=1.0) == 0.0
    assert best_for_budget([], [], 10.0) is None
    assert budget_regrets([], [], []).shape == (0,)
    assert pareto_indices([], []).shape == (0,)


def test_single_point_metrics():
    assert convergence([5.0], [0.3], [0.4], memory_scale=10.0) == pytest.approx(0.1)
    assert hyperdiff([5.0], [0.3], [0.4], memory_scale=10.0) == pytest.approx(0.5 * 0.1)
    assert budget_regret([5.0], [0.3], [0.4]) == 0.0


def test_all_orders_of_three_points_agree():
    memory = np.array([0.2, 0.5, 0.7])
    error = np.array([0.6, 0.3, 0.1])
    expected = 0.8 * 0.4 + 0.5 * 0.3 + 0.3 * 0.2
    for perm in itertools.permutations(range(3)):
        p = list(perm)
        assert hypervolume(memory[p], error[p]) == pytest.approx(expected)


def test_convergence_large_fronts_use_the_same_definition():
    # Anti-correlated points: all 2000 are on both fronts, so the k-d tree path is taken.
    memory = np.arange(2000, dtype=float)
    true = 1 - memory / 2000
    est = true + 0.01
    x = memory / 2000
    gap = np.hypot(x[:, None] - x[None, :], est[:, None] - true[None, :]).min(axis=1)
    assert convergence(memory, true, est, memory_scale=2000.0) == pytest.approx(np.mean(gap), rel=1e-12)
    # Away from the start the nearest true point is 10 steps back: sqrt(2) * 0.005.
    assert gap[1000] == pytest.approx(np.sqrt(2) * 0.005)


def test_budget_picks_are_best_for_budget_of_every_budget_at_once():
    from peppp.pareto import budget_picks, least_within

    rng = np.random.default_rng(4)
    memory = rng.choice([1.0, 2.0, 2.5, 4.0, 8.0], 30)
    estimate = np.round(rng.uniform(0.1, 0.5, 30), 2)  # rounded: ties in memory and in estimate
    truth = rng.uniform(0.1, 0.5, 30)
    budgets = np.array([1.0, 2.2, 2.5, 7.9, 8.0])
    order, sizes, picks = budget_picks(memory, estimate, budgets)
    for budget, size, pick, least in zip(budgets, sizes, picks, least_within(truth, order, sizes)):
        assert pick == best_for_budget(memory, estimate, budget)
        assert sorted(order[:size]) == list(np.flatnonzero(memory <= budget))
        assert least == truth[memory <= budget].min()
    with pytest.raises(PepppError, match="budget 0.5 MB holds no configuration"):
        budget_picks(memory, estimate, [0.5, 2.0])
