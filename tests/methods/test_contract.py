"""The contract every active-sampling method in METHODS keeps (as optuna's sampler battery).

A method registered in peppp.methods.METHODS runs all of these without any change here: proposals are
distinct valid unmeasured candidates within the budget, deterministic under a seed; the estimate has
the documented shapes, measured values and stds; bad input is a one-line PepppError.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from peppp.completion import svd_embeddings
from peppp.errors import PepppError
from peppp.methods import MAX_ERROR_STD, METHODS, ActiveMethod, Estimate, Session, get_method
from peppp.methods.design_fit import residual_noise_std

NAMES = sorted(METHODS)
ROWS, M, RANK = 30, 24, 3


def meta_matrix(seed: int = 0) -> np.ndarray:
    """A rank-3 error matrix plus noise, entries in [0, 1]; the last row is the new dataset."""
    rng = np.random.default_rng(seed)
    E = 0.4 + 0.1 * rng.standard_normal((ROWS + 1, RANK)) @ rng.standard_normal((RANK, M)) / np.sqrt(RANK)
    return np.clip(E + 0.01 * rng.standard_normal(E.shape), 0.0, 1.0)


E = meta_matrix()
TRUTH = E[-1]
MEMORY = np.linspace(10.0, 240.0, M)


@pytest.fixture(scope="module", params=NAMES)
def fitted(request) -> ActiveMethod:
    return get_method(request.param, rank=RANK).fit(E[:-1])


def run(method: ActiveMethod, n: int, *, k: int = 1, **kwargs) -> Session:
    """Propose k at a time and observe the truth until n are measured or nothing is proposed."""
    session = method.session(memory_mb=kwargs.pop("memory_mb", MEMORY), **kwargs)
    while len(session.measured) < n:
        picks = session.propose(min(k, n - len(session.measured)))
        if not picks:
            break
        for j in picks:
            session.observe(j, float(TRUTH[j]))
    return session


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(PepppError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------------------------------
# proposals


@pytest.mark.parametrize("k", [1, 3, 5])
def test_proposals_are_distinct_valid_unmeasured_candidates(fitted, k):
    candidates = np.ones(M, dtype=bool)
    candidates[::4] = False
    session = fitted.session(memory_mb=MEMORY, candidates=candidates, seed=1)
    while len(session.measured) < 12:
        picks = session.propose(k)
        assert 1 <= len(picks) <= k
        assert all(type(j) is int and 0 <= j < M for j in picks)
        assert len(set(picks)) == len(picks)
        assert not set(picks) & set(session.measured)
        assert candidates[picks].all()
        for j in picks:
            session.observe(j, float(TRUTH[j]))
    assert len(set(session.measured)) == len(session.measured) >= 12


def test_runs_out_of_candidates_quietly(fitted):
    candidates = np.zeros(M, dtype=bool)
    candidates[[3, 8]] = True
    session = run(fitted, 10, k=4, candidates=candidates)
    assert sorted(session.measured) == [3, 8]
    assert session.propose(1) == [] and session.propose(5) == []


@pytest.mark.parametrize("budget", [0.0, 15.0, 100.0, 400.0])
@pytest.mark.parametrize("k", [1, 4])
def test_the_measurement_budget_is_respected(fitted, budget, k):
    session = run(fitted, M, k=k, budget_mb=budget, seed=2)
    spent = MEMORY[session.measured].sum() if session.measured else 0.0
    assert spent <= budget + 1e-9
    # It stopped because nothing more fits, and it used the budget: the cheapest left did not fit.
    assert not session.affordable().any()
    left = np.setdiff1d(np.arange(M), session.measured)
    assert MEMORY[left].min() > budget - spent
    assert session.spent_mb == pytest.approx(spent)


def test_measured_configurations_are_never_proposed(fitted):
    session = fitted.session(memory_mb=MEMORY, seed=0)
    for j in (5, 17, 0):  # measured before the first proposal, as a resumed search
        session.observe(j, float(TRUTH[j]))
    proposed = []
    while len(session.measured) < 10:
        picks = session.propose(min(2, 10 - len(session.measured)))
        assert picks and not {5, 17, 0} & set(picks)
        for j in picks:
            session.observe(j, float(TRUTH[j]))
        proposed += picks
    assert session.measured[:3] == [5, 17, 0] and len(proposed) == 7


def test_candidates_dropped_after_the_start_are_not_proposed(fitted):
    session = fitted.session(memory_mb=MEMORY, seed=0)
    first = session.propose(2)
    session.candidates[first] = False  # e.g. their training failed
    assert not set(first) & set(session.propose(4))


def test_the_callers_arrays_are_not_modified(fitted):
    candidates = np.ones(M, dtype=bool)
    candidates[7] = False
    memory = MEMORY.copy()
    session = fitted.session(memory_mb=memory, candidates=candidates, budget_mb=500.0, seed=0)
    session.candidates[3] = False
    for _ in range(3):
        for j in session.propose(2):
            session.observe(j, float(TRUTH[j]))
    session.estimate()
    expected = np.ones(M, dtype=bool)
    expected[7] = False
    np.testing.assert_array_equal(candidates, expected)
    np.testing.assert_array_equal(memory, MEMORY)


@pytest.mark.parametrize("k", [1, 3])
def test_deterministic_under_a_seed(fitted, k):
    a = run(fitted, 9, k=k, seed=11, budget_mb=900.0)
    b = run(fitted, 9, k=k, seed=11, budget_mb=900.0)
    assert a.measured == b.measured
    np.testing.assert_array_equal(a.estimate().predicted, b.estimate().predicted)
    np.testing.assert_array_equal(a.estimate().std, b.estimate().std)


def test_a_refit_method_proposes_as_a_fresh_one(fitted):
    fresh = get_method(fitted.name, rank=RANK).fit(E[:-1])
    other = meta_matrix(seed=5)
    refit = fitted.clone().fit(other[:-1]).fit(E[:-1])
    assert run(fresh, 6, seed=3).measured == run(refit, 6, seed=3).measured


# --------------------------------------------------------------------------------------------------
# the estimate


@pytest.mark.parametrize("n", [1, 2, RANK, 8])
def test_estimate_shapes_values_and_stds(fitted, n):
    session = run(fitted, n, seed=4)
    assert len(session.measured) == n
    estimate = session.estimate()
    assert isinstance(estimate, Estimate)
    for values in (estimate.error, estimate.predicted, estimate.std, estimate.predicted_std):
        assert isinstance(values, np.ndarray) and values.shape == (M,) and values.dtype == float
    S = np.array(session.measured)
    assert np.all(np.isfinite(estimate.predicted))
    # What a user is told: the measurement where measured (std 0), else the prediction.
    np.testing.assert_array_equal(estimate.error[S], TRUTH[S])
    free = np.setdiff1d(np.arange(M), S)
    np.testing.assert_array_equal(estimate.error[free], estimate.predicted[free])
    assert np.all(estimate.std[S] == 0.0)
    np.testing.assert_array_equal(estimate.std[free], estimate.predicted_std[free])
    # A std is a non-negative number no larger than any distribution on [0, 1] allows, or NaN (unknown).
    for std in (estimate.std, estimate.predicted_std):
        known = std[np.isfinite(std)]
        assert np.all(np.isfinite(std) | np.isnan(std))
        assert np.all((known >= 0) & (known <= MAX_ERROR_STD))
    # The estimate is a read: asking twice gives the same.
    again = session.estimate()
    np.testing.assert_array_equal(again.predicted, estimate.predicted)


def test_estimate_needs_a_measurement(fitted):
    session = fitted.session(memory_mb=MEMORY)
    assert one_line_error(session.estimate).startswith("nothing is measured")


def test_stds_are_known_once_the_measurements_span_the_embeddings(fitted):
    """With more measurements than the rank, every method states a finite std everywhere."""
    session = run(fitted, 2 * RANK + 2, seed=0)
    estimate = session.estimate()
    assert np.all(np.isfinite(estimate.std)) and np.all(np.isfinite(estimate.predicted_std))
    free = np.setdiff1d(np.arange(M), session.measured)
    assert np.all(estimate.std[free] > 0)


# --------------------------------------------------------------------------------------------------
# lifecycle, parameters and validation


def test_registry_names_parameters_and_fitted_state():
    assert "ed" in METHODS and "adaptive" in METHODS
    for name in NAMES:
        method = get_method(name, rank=RANK)
        assert isinstance(method, ActiveMethod) and method.name == name
        assert isinstance(method.sequential, bool)
        params = method.get_params()
        assert params["rank"] == RANK and repr(method).startswith(type(method).__name__ + "(")
        # scikit-learn's rule: no fitted state before fit, and fitted state ends in "_".
        before = set(vars(method))
        assert not [a for a in before if a.endswith("_")]
        method.fit(E[:-1])
        assert all(a.endswith("_") for a in set(vars(method)) - before)
        assert method.get_params() == params
        clone = method.clone()
        assert clone.get_params() == params and not [a for a in vars(clone) if a.endswith("_")]
    assert one_line_error(get_method, "nosuch").startswith("unknown method 'nosuch'")


def test_a_session_needs_a_fitted_method():
    for name in NAMES:
        message = one_line_error(get_method(name, rank=RANK).session, memory_mb=MEMORY)
        assert "not fitted" in message


@pytest.mark.parametrize(
    "matrix",
    [
        np.full((5, M), np.nan),
        np.where(np.eye(ROWS, M, dtype=bool), np.nan, E[:-1]),
        E[0],
        np.zeros((0, M)),
        np.full((3, 4), "x"),
    ],
    ids=["all-nan", "holes", "1-d", "empty", "text"],
)
def test_bad_meta_training_matrices_are_one_line_errors(matrix):
    for name in NAMES:
        one_line_error(get_method(name, rank=RANK).fit, matrix)


@pytest.mark.parametrize("rank", [0, -2])
def test_a_bad_rank_is_a_one_line_error(rank):
    for name in NAMES:
        try:
            method = get_method(name, rank=rank)
        except PepppError as exc:  # the adaptive method still checks its parameters on construction
            assert "\n" not in str(exc)
            continue
        one_line_error(method.fit, E[:-1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory_mb": MEMORY[:-1]},
        {"memory_mb": -MEMORY},
        {"memory_mb": np.where(np.arange(M) == 3, np.nan, MEMORY)},
        {"memory_mb": ["a"] * M},
        {"memory_mb": MEMORY, "candidates": np.ones(M)},
        {"memory_mb": MEMORY, "candidates": np.ones(M - 1, dtype=bool)},
        {"memory_mb": MEMORY, "budget_mb": -1.0},
        {"memory_mb": MEMORY, "budget_mb": math.nan},
        {"memory_mb": MEMORY, "budget_mb": "lots"},
    ],
    ids=["short", "negative", "nan", "text", "float-mask", "short-mask", "negative-budget", "nan-budget", "text-budget"],
)
def test_bad_session_arguments_are_one_line_errors(fitted, kwargs):
    one_line_error(fitted.session, **kwargs)


def test_bad_proposals_and_observations_are_one_line_errors(fitted):
    session = fitted.session(memory_mb=MEMORY)
    for k in (0, -1, 1.5, True):
        one_line_error(session.propose, k)
    for index in (M, -1, 2.0, True):
        one_line_error(session.observe, index, 0.2)
    for error in (math.nan, math.inf, "0.2", None):
        one_line_error(session.observe, 2, error)
    session.observe(2, 0.2)
    assert "already observed" in one_line_error(session.observe, 2, 0.3)
    assert session.measured == [2] and session.errors == [0.2]


def test_fit_embedded_of_a_matrixs_own_embeddings_equals_fit(fitted):
    """The active-search flows embed the meta-matrix once and hand the method its embeddings, noise
    level and matrix; every method then proposes and estimates exactly as when fitted on the matrix."""
    Y = svd_embeddings(E[:-1], RANK)
    embedded = get_method(fitted.name, rank=RANK).fit_embedded(
        Y, noise_std=residual_noise_std(E[:-1], Y), error=E[:-1]
    )
    a, b = run(fitted, 7, k=2, seed=5), run(embedded, 7, k=2, seed=5)
    assert a.measured == b.measured
    for field in ("error", "predicted", "std", "predicted_std"):
        np.testing.assert_allclose(getattr(a.estimate(), field), getattr(b.estimate(), field), rtol=1e-10, atol=1e-12)
