"""The adaptive method: its mixture posterior against dense Gaussian algebra, its knowledge gradient
against brute-force re-conditioning, the session contract, and (slow) ED beaten on the paper matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr
from scipy.stats import multivariate_normal

from conftest import PAPER_DIR
from peppp.errors import PepppError
from peppp.methods import DEFAULT_METHOD, METHODS, get_method
from peppp.methods.adaptive import _acquisition as acquisition
from peppp.methods.adaptive import (
    Adaptive,
    AdaptiveSession,
    NOISE_FLOOR,
    Budgets,
    RowMixture,
    knowledge_gradient,
    normal_cdf,
    predictive_quantiles,
    rank_one_noise,
    screening_gain,
    silverman_scale,
)


def low_rank_matrix(n_rows=30, m=24, k=3, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n_rows, k))
    V = rng.standard_normal((k, m))
    E = 0.5 + 0.08 * U @ V / np.sqrt(k) + noise * rng.standard_normal((n_rows, m))
    return np.clip(E, 0.0, 1.0)


def small_model(seed=0):
    E = low_rank_matrix(n_rows=8, m=10, k=2, seed=seed)
    return RowMixture.from_matrix(E, rank=2).scaled(0.7, 2.0)


# --------------------------------------------------------------------------------------------------
# the model


def test_rank_one_noise_recovers_a_product_of_row_and_column_levels():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 3.0, 12), rng.uniform(0.01, 0.2, 9)
    residual = np.sqrt(np.outer(a, b)) * rng.choice([-1.0, 1.0], (12, 9))
    np.testing.assert_allclose(rank_one_noise(residual), np.outer(a, b), rtol=1e-8)


def test_silverman_scale_is_the_textbook_rule():
    # one dimension: (4 / 3n)^(1/5) = 1.06 n^(-1/5)
    assert silverman_scale(100, 1) == pytest.approx(1.0592 * 100 ** -0.2, rel=1e-3)
    assert silverman_scale(10_000, 5) < silverman_scale(86, 5) < 1.0


def test_each_component_is_a_gaussian_conditioned_exactly():
    model = small_model()
    rng = np.random.default_rng(2)
    S = np.array([3, 7, 1])
    y = rng.uniform(0.3, 0.7, 3)
    post = model.condition(S, y)
    idx = np.arange(model.n_components)
    means, var = post.component_means(idx), post.component_variances(idx)
    cols = np.array([0, 5])
    columns = post.component_columns(idx, cols)
    free = np.setdiff1d(np.arange(10), S)
    log_like = []
    for i in idx:
        C = model.factor @ model.factor.T + np.diag(model.noise[i])
        gain = C[np.ix_(free, S)] @ np.linalg.inv(C[np.ix_(S, S)])
        np.testing.assert_allclose(means[i, free], model.rows[i, free] + gain @ (y - model.rows[i, S]), atol=1e-10)
        np.testing.assert_allclose(means[i, S], y)
        cond = C[np.ix_(free, free)] - gain @ C[np.ix_(S, free)]
        np.testing.assert_allclose(var[i, free], np.diag(cond), atol=1e-12)
        assert np.all(var[i, S] == 0)
        full = np.zeros((10, 10))
        full[np.ix_(free, free)] = cond
        np.testing.assert_allclose(columns[i], full[:, cols], atol=1e-12)
        log_like.append(multivariate_normal(model.rows[i, S], C[np.ix_(S, S)]).logpdf(y))
    expected = np.exp(np.array(log_like) - max(log_like))
    np.testing.assert_allclose(post.weights, expected / expected.sum(), rtol=1e-8)


def test_joint_draws_have_the_mixtures_mean_and_covariance():
    model = small_model(seed=3)
    post = model.condition([2, 4], [0.45, 0.52])
    draws = post.draws(100_000, np.random.default_rng(0))
    mean, var, _ = post.moments()
    idx = np.arange(model.n_components)
    means = post.component_means(idx)
    second = sum(post.weights[i] * (post.component_columns(np.array([i]), np.arange(10))[0] + np.outer(means[i], means[i]))
                 for i in idx)
    cov = second - np.outer(mean, mean)
    assert np.all(draws[:, [2, 4]] == [0.45, 0.52])
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=4 * np.sqrt(var.max() / 100_000))
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.05 * np.abs(cov).max())


def test_extending_a_posterior_by_one_measurement_equals_conditioning_from_scratch():
    model = small_model(seed=5)
    post = model.condition([], [])
    for cell, value in [(2, 0.45), (4, 0.52), (7, 0.40), (0, 0.50)]:
        post = post.extended(cell, value)
    direct = model.condition([2, 4, 7, 0], [0.45, 0.52, 0.40, 0.50])
    np.testing.assert_allclose(post.weights, direct.weights, rtol=1e-9, atol=1e-14)
    # K^-1 r and r^T K^-1 r are updated in place too (n per component, not n^2)
    np.testing.assert_allclose(post.alpha, direct.alpha, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(post.quadratic, direct.quadratic, rtol=1e-9)
    for a, b in zip(post.moments(), direct.moments()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_an_estimate_carries_draws_that_give_probability_best():
    method = Adaptive(rank=3).fit(low_rank_matrix())
    row = low_rank_matrix(seed=9)[0]
    session = run_session(method, row, 4)
    est = session.estimate()
    assert est.draws.shape == (AdaptiveSession.DRAWS, len(row))
    assert np.all(est.draws[:, session.measured] == np.array(session.errors))
    # centred on the estimate, spread by the fitted factors times the posterior's own spread
    np.testing.assert_allclose(est.draws.mean(axis=0), est.error, atol=0.01)
    scale, spread = session.probability_scale(4)
    assert 0.2 < scale <= 1.8 and 0.0 <= spread <= 1.0
    # a method without a joint model gives none: its probabilities assume independent normals
    assert run_session(get_method("ed", rank=3).fit(low_rank_matrix()), row, 4).estimate().draws is None


def test_mixture_moments_are_the_weighted_component_moments():
    model = small_model(seed=3)
    post = model.condition([2, 4], [0.45, 0.52])
    idx = np.arange(model.n_components)
    w = post.weights
    means = post.component_means(idx)
    mean, var, signal = post.moments()
    np.testing.assert_allclose(mean, w @ means, atol=1e-12)
    np.testing.assert_allclose(var, w @ (post.component_variances(idx) + means**2) - mean**2, atol=1e-12)
    # the measured cell keeps its value (to rounding: the mean is a weighted sum of components)
    assert mean[2] == pytest.approx(0.45, abs=1e-12) and var[2] == pytest.approx(0.0, abs=1e-12)
    assert abs(signal[2] - 0.45) > 1e-6  # the signal is smoothed


# --------------------------------------------------------------------------------------------------
# the acquisition


def brute_force_gain(model, measured, errors, budgets, j, draws, rng):
    """Draw y from the mixture's predictive at j, condition the model on it from scratch, average."""
    post = model.condition(measured, errors)
    idx = np.arange(model.n_components)
    means, var = post.component_means(idx), post.component_variances(idx)
    now = budgets.value(post.weights @ means)
    values = []
    for _ in range(draws):
        i = rng.choice(len(idx), p=post.weights)
        y = rng.normal(means[i, j], np.sqrt(var[i, j]))
        values.append(budgets.value(model.condition([*measured, j], [*errors, y]).moments()[0]))
    return now - np.mean(values)


def test_knowledge_gradient_matches_reconditioning_from_scratch():
    model = small_model(seed=4)
    memory = np.array([1, 1, 2, 2, 3, 3, 4, 5, 6, 7], dtype=float)
    budgets = Budgets.of(memory, np.ones(10, dtype=bool))
    measured, errors = [0, 6], [0.55, 0.41]
    post = model.condition(measured, errors)
    choices = np.array([1, 3, 5, 8])
    kg = knowledge_gradient(post, budgets, choices, fantasies=4096, max_components=100, rng=np.random.default_rng(0))
    rng = np.random.default_rng(5)
    brute = [brute_force_gain(model, measured, errors, budgets, j, 3000, rng) for j in choices]
    np.testing.assert_allclose(kg, brute, atol=1e-3)  # gains here are 0.0005 to 0.01
    assert np.argmax(kg) == np.argmax(brute) and np.all(kg > 0)


def tabulated_quantiles(weights, mean, std, probs, grid=128):
    """The whole-grid tabulation `predictive_quantiles` stands for: the mixture CDF on `grid` points over
    mean -/+ 6 std, inverted by linear interpolation."""
    lo = (mean - 6 * std).min(axis=0)
    hi = (mean + 6 * std).max(axis=0)
    points = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, grid)[None, :]
    cdf = np.einsum("i,icg->cg", weights, ndtr((points[None] - mean[:, :, None]) / std[:, :, None]))
    return np.array([np.interp(probs, cdf[j], points[j]) for j in range(mean.shape[1])])


@pytest.mark.parametrize("scratch", [1, 40 * 64 * 5, 10**6])  # a column at a time, five, all twelve
@pytest.mark.parametrize("shape", ["one", "spread", "bimodal", "narrow-and-wide"])
def test_predictive_quantiles_tabulate_only_the_window_that_matters_with_the_same_result(shape, scratch, monkeypatch):
    monkeypatch.setattr(acquisition, "QUANTILE_SCRATCH", scratch)
    rng = np.random.default_rng(len(shape))
    c, C = 40, 12
    mean = rng.normal(0.4, {"one": 0.0, "spread": 0.05, "bimodal": 0.01, "narrow-and-wide": 0.02}[shape], (c, C))
    std = rng.uniform(0.01, 0.03, (c, C))
    if shape == "bimodal":
        mean[: c // 2] += 0.3
    if shape == "narrow-and-wide":
        std[::3] *= 20
    weights = rng.dirichlet(np.ones(c))
    probs = (np.arange(64) + 0.5) / 64
    # the window's normal CDFs are normal_cdf's (4e-13 from ndtr's), the reference's scipy's
    np.testing.assert_allclose(predictive_quantiles(weights, mean, std, probs),
                               tabulated_quantiles(weights, mean, std, probs), rtol=0, atol=1e-11)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_predictive_quantiles_refuse_a_non_finite_mixture(bad):
    mean, std = np.full((3, 2), 0.4), np.full((3, 2), 0.02)
    mean[1, 1] = bad
    with pytest.raises(ValueError, match="finite"):
        predictive_quantiles(np.full(3, 1 / 3), mean, std, np.array([0.25, 0.75]))
    with pytest.raises(ValueError, match="positive"):
        predictive_quantiles(np.full(3, 1 / 3), np.full((3, 2), 0.4), np.zeros((3, 2)), np.array([0.25, 0.75]))


def test_one_blas_thread_holds_blas_to_one_thread_and_restores_it_nested():
    from threadpoolctl import threadpool_info, threadpool_limits

    from peppp.methods.adaptive._blas import one_blas_thread

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        outside = blas_threads()  # 2, or 1 on a machine of one core
        assert outside
        with one_blas_thread():
            assert set(blas_threads()) == {1}
            with one_blas_thread():
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}
        assert blas_threads() == outside


def test_normal_cdf_is_scipys_within_4e_13_everywhere():
    z = np.r_[np.linspace(-40.0, 40.0, 400_001), np.random.default_rng(0).normal(0, 3, 100_000), -np.inf, np.inf, -9.0, 9.0]
    got = normal_cdf(z.copy())
    assert np.abs(got - ndtr(z)).max() <= 4e-13
    assert got[-4:].tolist() == pytest.approx([0.0, 1.0, ndtr(-9.0), ndtr(9.0)], abs=1e-18)
    assert np.all(np.diff(normal_cdf(np.linspace(-10.0, 10.0, 100_001))) >= 0)  # monotone, as a CDF


def dense_knowledge_gradient(post, budgets, choices, *, fantasies, max_components, rng):
    """The knowledge gradient written out plainly (an (m-vector) regression per component and fantasy)."""
    idx, w = post.leading(max_components, rng)
    means = post.component_means(idx)
    now = budgets.value(w @ means)
    probs = (np.arange(fantasies) + 0.5) / fantasies
    columns = post.component_columns(idx, choices)  # (c, m, C)
    gain = []
    for n, j in enumerate(choices):
        var = np.maximum(columns[:, j, n], NOISE_FLOOR * 1e-3)
        y = tabulated_quantiles(w, means[:, [j]], np.sqrt(var)[:, None], probs)[0]
        values = []
        for value in y:
            lw = np.log(w) - 0.5 * (value - means[:, j]) ** 2 / var - 0.5 * np.log(var)
            resp = np.exp(lw - lw.max())
            resp /= resp.sum()
            updated = resp @ (means + ((value - means[:, j]) / var)[:, None] * columns[:, :, n])
            updated[post.measured] = post.errors
            values.append(budgets.value(updated))
        gain.append(now - np.mean(values))
    return np.array(gain)


@pytest.mark.parametrize("measured", [[], [2, 7], [0, 3, 5, 9]])
def test_knowledge_gradient_equals_the_plain_computation_and_splits_across_threads(measured, monkeypatch):
    monkeypatch.setattr(acquisition, "CHUNK_FLOATS", 8 * 16 * 30)  # a few choices per chunk: several chunks
    model = small_model(seed=6)
    memory = np.array([1, 1, 2, 3, 3, 4, 5, 6, 6, 7], dtype=float)
    candidates = np.ones(10, dtype=bool)
    candidates[8] = False  # a configuration outside the budgets still counts as a choice
    budgets = Budgets.of(memory, candidates)
    post = model.condition(measured, [0.5 + 0.01 * i for i in range(len(measured))])
    choices = np.setdiff1d(np.arange(10), measured)
    plain = dense_knowledge_gradient(post, budgets, choices, fantasies=16, max_components=100, rng=np.random.default_rng(0))
    fast = knowledge_gradient(post, budgets, choices, fantasies=16, max_components=100, rng=np.random.default_rng(0))
    np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-15)
    assert np.argmax(fast) == np.argmax(plain)
    threaded = knowledge_gradient(post, budgets, choices, fantasies=16, max_components=100, rng=np.random.default_rng(0),
                                  workers=3)
    np.testing.assert_array_equal(threaded, fast)


def test_knowledge_gradient_keeps_fantasies_that_every_component_finds_unlikely():
    """Two datasets 20000 noise levels apart where they differ: the tabulation's grid step is wider than
    either component, so some fantasised measurements lie where every component's likelihood
    underflows; the responsibilities then come from the least unlikely component, as in the plain
    computation (shifting by the choice's largest prior term alone would leave 0 / 0)."""
    rows = np.array([[0.2, 0.8, 0.5, 0.5], [0.8, 0.2, 0.5, 0.5]])
    model = RowMixture(rows, np.full((4, 1), 1e-5), np.full((2, 4), 1e-9))
    budgets = Budgets.of(np.ones(4), np.ones(4, dtype=bool))  # one budget: the least error
    post = model.condition([], [])
    kw = dict(fantasies=16, max_components=10)
    fast = knowledge_gradient(post, budgets, np.arange(4), rng=np.random.default_rng(0), **kw)
    plain = dense_knowledge_gradient(post, budgets, np.arange(4), rng=np.random.default_rng(0), **kw)
    assert np.all(np.isfinite(fast))
    np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-15)
    # measuring configuration 0 or 1 tells which dataset it is, so the least error goes from 0.5 to 0.2
    np.testing.assert_allclose(fast, [0.3, 0.3, 0.0, 0.0], atol=2e-3)


def plain_screening_gain(mean, std, budgets, choices):
    """Expected improvement of each choice below the least estimate of every budget containing it, budget by budget."""
    out = []
    for j in choices:
        total = 0.0
        for level, end in enumerate(budgets.ends):
            inside = budgets.order[: end + 1]
            if j in inside:
                best = mean[inside].min()
                total += expected_improvement(mean[j], max(std[j], 1e-12), best)
        out.append(total / len(budgets.ends))
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_screening_gain_equals_the_budget_by_budget_sum(seed):
    rng = np.random.default_rng(seed)
    m = 40
    memory = np.round(rng.uniform(1, 12, m)) if seed % 2 else rng.uniform(1, 12, m)  # shared memory levels, or none
    candidates = rng.random(m) < 0.8
    mean, std = np.round(rng.uniform(0.1, 0.9, m), 1 if seed > 3 else 6), rng.uniform(0.0, 0.2, m)  # tied estimates too
    std[rng.random(m) < 0.2] = 0.0
    budgets = Budgets.of(memory, candidates)
    choices = np.flatnonzero(candidates & (rng.random(m) < 0.7))
    np.testing.assert_allclose(screening_gain(mean, std, budgets, choices), plain_screening_gain(mean, std, budgets, choices),
                               rtol=1e-10, atol=1e-15)


def test_screening_gain_is_expected_improvement_of_the_budgets_containing_the_choice():
    memory = np.array([1.0, 2.0, 3.0])
    budgets = Budgets.of(memory, np.ones(3, dtype=bool))
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.0, 0.1, 0.1])
    gain = screening_gain(mean, std, budgets, np.array([1, 2]))
    # config 1 counts in budgets 2 (where it is the best: worth checking) and 3 (where config 2 leads)
    assert gain[0] == pytest.approx((expected_improvement(0.4, 0.1, 0.4) + expected_improvement(0.4, 0.1, 0.3)) / 3)
    assert gain[1] == pytest.approx(expected_improvement(0.3, 0.1, 0.3) / 3)
    assert expected_improvement(0.4, 0.1, 0.4) == pytest.approx(0.1 / np.sqrt(2 * np.pi))


def expected_improvement(mean, std, level):
    """E[(level - y)^+] - (level - mean)^+ for y ~ N(mean, std^2)."""
    from scipy.stats import norm

    d = (level - mean) / std
    return std * (d * norm.cdf(d) + norm.pdf(d)) - max(level - mean, 0.0)


# --------------------------------------------------------------------------------------------------
# the session contract


@pytest.fixture(scope="module")
def fitted():
    return Adaptive(rank=3).fit(low_rank_matrix())


def memory_of(m=24):
    return np.repeat(np.arange(1, m // 2 + 1) * 10.0, 2)[:m]


def run_session(method, true_row, n, *, k=1, **kwargs):
    session = method.session(memory_mb=memory_of(len(true_row)), **kwargs)
    while len(session.measured) < n:
        picks = session.propose(k)
        if not picks:
            break
        for j in picks:
            session.observe(j, true_row[j])
    return session


def test_default_method_is_registered():
    assert DEFAULT_METHOD == "adaptive" and DEFAULT_METHOD in METHODS
    method = get_method(DEFAULT_METHOD, rank=4)
    assert isinstance(method, Adaptive) and method.rank == 4 and method.sequential


@pytest.mark.parametrize("k", [1, 3])
def test_proposals_are_distinct_valid_candidates(fitted, k):
    row = low_rank_matrix(seed=9)[0]
    candidates = np.ones(24, dtype=bool)
    candidates[::4] = False
    session = run_session(fitted, row, 12, k=k, candidates=candidates, seed=1)
    measured = session.measured
    assert len(measured) == 12 and len(set(measured)) == 12
    assert candidates[measured].all()


def test_runs_out_of_candidates_quietly(fitted):
    candidates = np.zeros(24, dtype=bool)
    candidates[[3, 8]] = True
    session = run_session(fitted, low_rank_matrix(seed=9)[0], 10, k=4, candidates=candidates)
    assert sorted(session.measured) == [3, 8]
    assert session.propose(1) == []


@pytest.mark.parametrize("k", [1, 2])
def test_measurement_budget_is_respected(fitted, k):
    memory = memory_of()
    session = run_session(fitted, low_rank_matrix(seed=9)[0], 24, k=k, budget_mb=100.0)
    assert 0 < memory[session.measured].sum() <= 100.0
    assert not (session.affordable()).any()


def test_a_batch_is_picked_by_fantasising_each_pick_at_its_posterior_mean(fitted):
    row = low_rank_matrix(seed=9)[3]
    batch = run_session(fitted, row, 2, seed=4)
    one_by_one = run_session(fitted, row, 2, seed=4)
    picks = batch.propose(3)
    for _ in range(3):
        (j,) = one_by_one.propose(1)
        one_by_one.observe(j, one_by_one.estimate().error[j])
    assert picks == one_by_one.measured[2:]


def test_a_measurement_budget_ranks_picks_per_mb(fitted):
    rows = low_rank_matrix(seed=9)[3:8]
    memory = memory_of()
    spent = {}
    for budget in (None, 1e4):  # 1e4 MB never binds: only the ranking per MB differs
        spent[budget] = sum(memory[run_session(fitted, row, 6, seed=0, budget_mb=budget).measured].sum() for row in rows)
    assert spent[1e4] < 0.95 * spent[None]
    session = run_session(fitted, rows[0], 3, budget_mb=1e4)
    post = fitted.model_.condition(session.measured, session.errors)
    choices = np.flatnonzero(session.affordable())
    gain = knowledge_gradient(post, Budgets.of(memory, session.candidates), choices, fantasies=64,
                              max_components=256, rng=np.random.default_rng(0))
    assert session.propose(1) == [int(choices[np.argmax(gain / memory[choices])])]


def test_deterministic_under_a_seed(fitted):
    row = low_rank_matrix(seed=9)[1]
    a = run_session(fitted, row, 8, seed=3).measured
    b = run_session(fitted, row, 8, seed=3).measured
    assert a == b


def test_candidates_dropped_after_the_start_are_not_proposed(fitted):
    session = fitted.session(memory_mb=memory_of())
    first = session.propose(1)
    session.candidates[first] = False  # e.g. its training failed
    assert first[0] not in session.propose(3)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_measurements_than_the_rank(fitted, n):
    row = low_rank_matrix(seed=9)[2]
    session = run_session(fitted, row, n)
    assert len(session.measured) == n
    assert len(session.propose(1)) == 1
    if n == 0:
        with pytest.raises(PepppError, match="nothing is measured"):
            session.estimate()
        return
    estimate = session.estimate()
    assert np.all(np.isfinite(estimate.predicted)) and np.all(np.isfinite(estimate.std))
    assert np.all(estimate.std >= 0) and np.all(estimate.std[session.measured] == 0)
    assert np.all(estimate.std[np.setdiff1d(np.arange(24), session.measured)] > 0)
    np.testing.assert_array_equal(estimate.error[session.measured], row[session.measured])


@pytest.mark.parametrize("noise_scale", [2.0, 4.0, 0.5])
def test_predicted_at_a_measured_configuration_keeps_the_new_rows_share_of_the_noise(noise_scale):
    E = low_rank_matrix(seed=5)
    method = Adaptive(rank=3, noise_scale=noise_scale).fit(E[1:])
    session = run_session(method, E[0], 6)
    S, y = np.array(session.measured), np.array(session.errors)
    _, _, smoothed = method.model_.condition(S, y).moments()
    predicted = session.estimate().predicted
    # the training row's part of the residual (1/noise_scale of it, all of it below 1) goes back
    share = min(1.0, 1.0 / noise_scale)
    np.testing.assert_allclose(predicted[S], smoothed[S] + share * (y - smoothed[S]), rtol=1e-12)
    others = np.setdiff1d(np.arange(E.shape[1]), S)
    np.testing.assert_array_equal(predicted[others], smoothed[others])


def test_a_dataset_like_a_training_one_is_recovered():
    E = low_rank_matrix(n_rows=40, noise=0.002, seed=6)
    method = Adaptive(rank=3).fit(E[1:])
    session = run_session(method, E[0], 10, seed=0)
    estimate = session.estimate()
    spread = np.abs(E[0] - E[1:].mean(axis=0)).mean()
    assert np.abs(estimate.error - E[0]).mean() < 0.25 * spread
    # the stated uncertainty covers the truth about as a Gaussian should
    free = np.setdiff1d(np.arange(24), session.measured)
    z = (E[0, free] - estimate.error[free]) / estimate.std[free]
    assert np.mean(np.abs(z) < 3) > 0.9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rank=0), "rank 0 must be a positive integer"),
        (dict(kernel_scale=-1.0), "kernel_scale -1.0 must be positive"),
        (dict(noise_scale=0.0), "noise_scale 0.0 must be positive"),
        (dict(calibration_rows=0), "calibration_rows 0 must be a positive integer"),
        (dict(calibrate="yes"), "calibrate 'yes' must be True or False"),
        (dict(workers=0), "workers 0 must be a positive integer"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(PepppError, match=message):
        Adaptive(**kwargs)


def test_needs_two_training_rows():
    with pytest.raises(PepppError, match="at least 2 meta-training datasets"):
        Adaptive().fit(low_rank_matrix()[:1])


# --------------------------------------------------------------------------------------------------
# the paper's matrix


@pytest.mark.slow
def test_beats_ed_on_the_paper_matrix_side_by_side():
    from peppp.evaluate import load_matrices, loocv

    error, memory = load_matrices(str(PAPER_DIR / "error.csv"), str(PAPER_DIR / "memory_mb.csv"), exclude=["deca-08"])
    ours = loocv(error, memory, method=DEFAULT_METHOD, n=(5, 10), rank=5).summary()
    ed = loocv(error, memory, method="ed", n=(5, 10), rank=5).summary()
    assert (ours["regret"] < ed["regret"]).all(), (ours["regret"], ed["regret"])
    assert ours.loc[10, "regret"] < 0.9 * ed.loc[10, "regret"]


# --------------------------------------------------------------------------------------------------
# calibration of the std


def test_scales_shrink_an_overwide_spread_and_widen_an_overnarrow_one():
    from peppp.methods.adaptive._calibration import fit_scales

    E = low_rank_matrix(n_rows=40, m=20, k=2, noise=0.02, seed=4)
    basis = RowMixture.from_matrix(E, rank=2)
    memory = np.linspace(10.0, 200.0, 20)
    candidates = np.ones(20, dtype=bool)
    sizes = np.array([1, 3, 6])
    wide_std, wide_draws, _, _ = fit_scales(basis.scaled(1.0, 16.0), memory, candidates, sizes, rows=15, seed=0)
    narrow_std, narrow_draws, _, _ = fit_scales(basis.scaled(0.05, 0.05), memory, candidates, sizes, rows=15, seed=0)
    assert (wide_std < 0.8).all() and (narrow_std > 1.25).all()
    assert (wide_draws < 1).all()  # an over-wide mixture over-spreads its draws too


def test_probabilities_per_spread_and_scale_are_the_share_of_draws_where_the_pick_is_least():
    from peppp.methods.adaptive._calibration import (
        PROBABILITY_SCALES, SCALE_SPREADS, _limits, _probabilities, scale_multipliers,
    )
    from peppp.pareto import best_for_budget, pareto_mask

    rng = np.random.default_rng(3)
    memory = np.repeat([10.0, 20.0, 30.0, 40.0, 50.0, 60.0], 2)
    truth = rng.uniform(0.2, 0.6, 12)
    estimate = truth + rng.normal(0, 0.05, 12)
    deviation = rng.normal(0, 0.05, (300, 12)) + rng.normal(0, 0.05, (300, 1))
    limit, outcome = _limits(memory, truth, estimate, deviation)
    probability = _probabilities(limit, np.random.default_rng(8))
    assert probability.shape[:2] == (len(SCALE_SPREADS), len(PROBABILITY_SCALES))
    factors = np.random.default_rng(8)  # the same stream: one permutation per spread, in order
    levels = np.unique(memory[pareto_mask(memory, truth)])
    for k, spread in enumerate(SCALE_SPREADS):
        f = scale_multipliers(300, spread, factors)
        for b, level in enumerate(levels):
            inside = np.flatnonzero(memory <= level)
            pick = best_for_budget(memory, estimate, level)
            assert outcome[b] == (truth[pick] <= truth[inside].min())
            for s, t in enumerate(PROBABILITY_SCALES[::6]):
                draws = estimate[None, inside] + (t * f)[:, None] * deviation[:, inside]
                least = draws[:, list(inside).index(pick)] <= draws.min(axis=1)
                assert probability[k, 6 * s, b] == pytest.approx(least.mean(), abs=1e-12)


def test_scale_multipliers_are_stratified_log_normal_factors():
    from scipy.special import ndtri

    from peppp.methods.adaptive._calibration import scale_multipliers

    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(scale_multipliers(64, 0.0, rng), np.ones(64))
    f = scale_multipliers(1000, 0.5, rng)
    # one factor per slice of the normal: the logs, sorted, are 0.5 times the slices' quantiles
    np.testing.assert_allclose(np.sort(np.log(f)), 0.5 * ndtri((np.arange(1000) + 0.5) / 1000), rtol=1e-12)
    assert np.median(f) == pytest.approx(1.0, rel=1e-3)
    assert not np.all(np.diff(f) > 0)  # in a random order: the draws they multiply are in no order either


def test_calibrated_std_covers_about_68_percent_and_leaves_picks_and_means_alone():
    E = low_rank_matrix(n_rows=31, m=25, k=2, noise=0.03, seed=7)
    memory = np.linspace(10.0, 250.0, 25)
    covered = {True: [], False: []}
    for i in range(0, 31, 2):
        runs = {}
        for calibrate in (True, False):
            method = Adaptive(rank=2, calibrate=calibrate).fit(np.delete(E, i, axis=0))
            session = method.session(memory_mb=memory, seed=i)
            for _ in range(4):
                (j,) = session.propose(1)
                session.observe(j, E[i, j])
            est = session.estimate()
            free = est.std > 0
            covered[calibrate].append(np.mean(np.abs(E[i, free] - est.error[free]) <= est.std[free]))
            runs[calibrate] = (list(session.measured), est.error, est.std)
        assert runs[True][0] == runs[False][0]
        np.testing.assert_array_equal(runs[True][1], runs[False][1])
        assert not np.allclose(runs[True][2], runs[False][2])
    target = 0.6827
    assert abs(np.mean(covered[True]) - target) < abs(np.mean(covered[False]) - target)
    assert abs(np.mean(covered[True]) - target) < 0.08


def test_scales_do_not_depend_on_the_threads():
    from peppp.methods.adaptive._calibration import fit_scales

    E = low_rank_matrix(n_rows=20, m=12, k=2, seed=2)
    model = RowMixture.from_matrix(E, rank=2).scaled(0.7, 2.0)
    args = (model, np.linspace(10.0, 120.0, 12), np.ones(12, dtype=bool), np.array([1, 2, 4]))
    one = fit_scales(*args, rows=6, seed=1, workers=1)
    three = fit_scales(*args, rows=6, seed=1, workers=3)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)


def test_a_size_with_nothing_left_to_score_carries_the_factors_before_it():
    from peppp.methods.adaptive._calibration import fit_scales

    E = low_rank_matrix(n_rows=12, m=8, k=2, seed=1)
    model = RowMixture.from_matrix(E, rank=2).scaled(0.7, 2.0)
    candidates = np.zeros(8, dtype=bool)
    candidates[:3] = True
    std, draws, spread, reference = fit_scales(model, np.arange(1.0, 9.0), candidates, np.array([1, 3]), rows=5,
                                               seed=0)
    assert std[0] != 1.0 and std[1] == std[0] and draws[1] == draws[0] and spread[1] == spread[0]
    assert 0 < reference[0] < np.inf and reference[1] == reference[0]


def test_the_calibration_keeps_to_measured_cells():
    """A completed cell is the low-rank model's smooth guess: scored against completed cells the
    posterior looks surer than it is, so with the observed mask the std factor comes out larger."""
    from peppp.methods.adaptive._calibration import fit_scales

    rng = np.random.default_rng(3)
    E = low_rank_matrix(n_rows=40, m=30, k=2, noise=0.03, seed=3)
    observed = rng.uniform(size=E.shape) < 0.3
    # as SoftImpute leaves it: measured cells as they are, the rest from a rank-2 fit (smooth)
    U, S, Vt = np.linalg.svd(E - E.mean(axis=0), full_matrices=False)
    completed = np.where(observed, E, E.mean(axis=0) + (U[:, :2] * S[:2]) @ Vt[:2])
    model = RowMixture.from_matrix(completed, rank=2).scaled(0.7, 2.0)
    args = (model, np.linspace(10.0, 300.0, 30), np.ones(30, dtype=bool), np.array([1, 3, 5]))
    blind, _, _, _ = fit_scales(*args, rows=12, seed=0)
    aware, _, _, _ = fit_scales(*args, rows=12, seed=0, observed=observed)
    assert (aware > 1.2 * blind).all()


def test_fit_takes_the_observed_mask_and_checks_it():
    E = low_rank_matrix(n_rows=10, m=8, k=2)
    method = Adaptive(rank=2)
    assert method.fit(E).observed_ is None
    assert method.fit(E, observed=np.ones(E.shape, dtype=bool)).observed_ is None  # all measured
    mask = np.ones(E.shape, dtype=bool)
    mask[0, 0] = False
    assert method.fit(E, observed=mask).observed_[0, 0] == False  # noqa: E712
    with pytest.raises(PepppError, match=r"observed must be a boolean mask of shape \(10, 8\)"):
        method.fit(E, observed=mask[:, :4])


def test_the_nested_search_starts_at_the_sessions_first_pick():
    from peppp.methods.adaptive._acquisition import Budgets
    from peppp.methods.adaptive._calibration import _screening_picks, fit_scales

    E = low_rank_matrix(n_rows=20, m=12, k=2, seed=2)
    model = RowMixture.from_matrix(E, rank=2).scaled(0.7, 2.0)
    memory = np.linspace(10.0, 120.0, 12)
    candidates = np.ones(12, dtype=bool)
    budgets = Budgets.of(memory, candidates)
    plain = _screening_picks(model, E[0], budgets, candidates, np.array([1, 3]))
    first = 11 if plain[0][0][0] != 11 else 10
    led = _screening_picks(model, E[0], budgets, candidates, np.array([1, 3]), first=first)
    assert plain[0][0][0] != first and led[0][0][0] == first and led[1][0][0] == first
    # a first cell the held-out rows never measured: they start as without one
    observed = np.ones(E.shape, dtype=bool)
    observed[:, first] = False
    args = (model, memory, candidates, np.array([1, 3]))
    for a, b in zip(fit_scales(*args, rows=6, seed=1, observed=observed),
                    fit_scales(*args, rows=6, seed=1, observed=observed, first=first)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(fit_scales(*args, rows=6, seed=1),
                                                         fit_scales(*args, rows=6, seed=1, first=first)))


def test_the_session_computes_its_first_pick_once_for_itself_and_its_calibration():
    method = Adaptive(rank=3).fit(low_rank_matrix())
    row = low_rank_matrix(seed=9)[0]
    session = method.session(memory_mb=np.linspace(10.0, 400.0, len(row)), seed=4)
    (j,) = session.propose(1)
    key = session._opening
    assert key[1] == j
    session.observe(j, row[j])
    session.estimate()  # fits the calibration, which starts its held-out rows at j
    assert session._opening is key  # not computed again
    # a caller that measured elsewhere first: the calibration still starts where the session would
    other = method.session(memory_mb=np.linspace(10.0, 400.0, len(row)), seed=4)
    k = (j + 1) % len(row)
    other.observe(k, row[k])
    other.estimate()
    assert other._opening[1] == j


# --------------------------------------------------------------------------------------------------
# widening for surprising datasets


def test_surprise_factor_widens_only_past_the_reference():
    from peppp.methods.adaptive._calibration import surprise_factor

    assert surprise_factor(0.2, 0.5) == 1.0
    assert surprise_factor(0.5, 0.5) == 1.0
    assert surprise_factor(2.0, 0.5) == pytest.approx(2.0)  # sqrt(4): the std scales as the root
    assert surprise_factor(3.0, np.inf) == 1.0 and surprise_factor(3.0, np.nan) == 1.0


def test_the_nested_surprise_is_each_measurements_standardised_error_before_it():
    from peppp.methods.adaptive._acquisition import Budgets
    from peppp.methods.adaptive._calibration import _screening_picks

    E = low_rank_matrix(n_rows=20, m=12, k=2, seed=2)
    model = RowMixture.from_matrix(E[1:], rank=2).scaled(0.7, 2.0)
    candidates = np.ones(12, dtype=bool)
    steps = _screening_picks(model, E[0], Budgets.of(np.linspace(10.0, 120.0, 12), candidates), candidates,
                             np.array([1, 4]))
    measured = steps[-1][0]
    squared = []
    for j, cell in enumerate(measured):
        mean, var, _ = model.condition(measured[:j], E[0, measured[:j]]).moments()
        squared.append((E[0, cell] - mean[cell]) ** 2 / var[cell])
    assert steps[0][4] == pytest.approx(squared[0], rel=1e-9)
    assert steps[1][4] == pytest.approx(np.mean(squared), rel=1e-9)


def test_a_dataset_unlike_the_training_rows_is_told_wider_errors():
    """Training rows from one family, new rows from another (shifted and differently shaped): their
    first measurements surprise the posterior, which widens the stds and draws, and the +-1 std
    coverage on them moves towards 68%; rows of the training family keep about the calibrated width."""
    E = low_rank_matrix(n_rows=40, m=24, k=2, noise=0.02, seed=11)
    memory = memory_of(24)
    method = Adaptive(rank=2).fit(E[:30])
    other = np.clip(0.62 + 0.25 * (low_rank_matrix(n_rows=10, m=24, k=2, noise=0.02, seed=12) - 0.5), 0, 1)
    widened, like, covered, narrower = [], [], [], []
    for rows, out in ((other, widened), (E[30:], like)):
        for row in rows:
            session = run_session(method, row, 4, seed=3)
            est = session.estimate()
            out.append(session.widening())
            if out is widened:
                free = est.std > 0
                z = np.abs(row[free] - est.error[free]) / est.std[free]
                covered.append(np.mean(z <= 1))
                narrower.append(np.mean(z * session.widening() <= 1))  # the same stds without the widening
            # the widening is the surprise of the measurements so far against the nested reference
            squared = []
            for j, cell in enumerate(session.measured):
                mean, var, _ = method.model_.condition(session.measured[:j], session.errors[:j]).moments()
                squared.append((session.errors[j] - mean[cell]) ** 2 / var[cell])
            sizes, _, _, _, reference = session._scales()
            expected = max(1.0, np.sqrt(np.mean(squared) / np.interp(4, sizes, reference)))
            assert session.widening() == pytest.approx(expected, rel=1e-9)
    assert np.median(widened) > 2.0 and np.median(like) < 1.5
    assert abs(np.mean(covered) - 0.6827) < abs(np.mean(narrower) - 0.6827)
    # uncalibrated: nothing widens
    plain = run_session(Adaptive(rank=2, calibrate=False).fit(E[:30]), other[0], 4, seed=3)
    assert plain.widening() == 1.0


def test_draws_move_continuously_with_the_posterior():
    """After fewer measurements than the rank, k - n directions keep eigenvalue 1 in I - B K^-1 B^T,
    and eigh may return any turn of them: a root built from the eigenvectors changed the draws by up
    to 0.2 under 1e-16 rounding. The symmetric root does not depend on it."""
    E = low_rank_matrix(n_rows=30, m=24, k=5, seed=4)
    model = RowMixture.from_matrix(E, rank=5).scaled(0.7, 2.0)
    worst = 0.0
    for seed in range(10):
        cells = np.random.default_rng(seed).choice(24, 2, replace=False)
        # the same posterior two ways, equal to rounding: from scratch, and extended by the second cell
        direct = model.condition(cells, E[0, cells])
        extended = model.condition(cells[:1], E[0, cells[:1]]).extended(cells[1], E[0, cells[1]])
        a, b = direct.draws(64, np.random.default_rng(1)), extended.draws(64, np.random.default_rng(1))
        worst = max(worst, float(np.abs(a - b).max()))
    assert worst < 1e-9
