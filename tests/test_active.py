"""ActiveSearch: picks follow the design within the cap and the budget, the estimate is least squares
with an honest predictive std, the frontier keeps measurements; embed_meta_matrix completes and embeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from peppp.active import ActiveSearch, embed_meta_matrix
from peppp.completion import svd_embeddings
from peppp.design import get_design
from peppp.errors import PepppError
from peppp.methods import MAX_ERROR_STD

K, M = 3, 12


def low_rank(rows: int = 10, *, seed: int = 0) -> np.ndarray:
    """An error matrix of exact rank K with entries in (0, 1)."""
    rng = np.random.default_rng(seed)
    E = rng.uniform(0.05, 0.3, size=(rows, K)) @ rng.uniform(0.1, 1.0, size=(K, M)) / K
    return np.clip(E, 0.01, 0.99)


@pytest.fixture
def problem():
    E = low_rank(11)
    Y = svd_embeddings(E[:-1], K)
    memory = np.linspace(1.0, 12.0, M)
    configs = [f"e{2 + i // 6}m{1 + i % 6}/e8m7" for i in range(M)]
    return {"E": E, "Y": Y, "memory": memory, "configs": configs, "truth": E[-1]}


def search_for(problem, **kwargs) -> ActiveSearch:
    params = {"n": 5, **kwargs}
    return ActiveSearch(problem["configs"], problem["Y"], problem["memory"], **params)


def run_to_end(search: ActiveSearch, truth: np.ndarray, *, batch: int = 1) -> list[int]:
    picked = []
    while not search.done:
        picks = search.next_batch(batch)
        assert picks, "a search that is not done must pick something"
        for i in picks:
            search.observe(i, float(truth[i]), run_ids=(f"run-{i}",))
        picked += picks
    return picked


def test_picks_are_the_designs_and_stop_at_n(problem):
    search = search_for(problem, n=5)
    picked = run_to_end(search, problem["truth"], batch=2)
    assert picked == get_design("ed").select(problem["Y"], 5).tolist()
    assert search.measured == picked and len(set(picked)) == 5
    assert search.next_batch(3) == []


def test_cap_and_budget_are_respected(problem):
    memory = problem["memory"]
    search = search_for(problem, n=10, cap_mb=6.0, budget_mb=12.0)
    picked = run_to_end(search, problem["truth"])
    assert all(memory[i] <= 6.0 for i in picked)
    assert memory[picked].sum() <= 12.0
    assert search.spent_mb == pytest.approx(memory[picked].sum())
    # It stopped because nothing affordable is left, not because n was reached.
    assert len(picked) < 10
    assert not (search.candidates()).any()
    assert np.all(memory[search.within_cap & ~np.isin(np.arange(M), picked)] > search.remaining_mb)


def test_a_failed_configuration_is_not_picked_again_and_costs_nothing(problem):
    search = search_for(problem, n=3)
    first = search.next_batch(1)[0]
    search.observe_failure(first)
    assert search.spent_mb == 0.0 and search.failed == [first]
    picked = run_to_end(search, problem["truth"])
    assert first not in picked and len(picked) == 3


def test_earlier_measurements_are_kept_and_not_picked(problem):
    search = search_for(problem, n=4)
    search.observe(7, 0.2, run_ids="old-run")
    picked = run_to_end(search, problem["truth"])
    assert 7 not in picked and search.measured[0] == 7 and len(search.measured) == 4
    assert picked == get_design("ed").select(problem["Y"], 4, measured=[7]).tolist()[1:]


def test_exact_low_rank_row_is_recovered_from_k_measurements(problem):
    search = search_for(problem, n=K, noise_std=0.01)
    run_to_end(search, problem["truth"])
    error, std = search.estimate()
    np.testing.assert_allclose(error, problem["truth"], atol=1e-9)
    # No residual degrees of freedom: the meta-matrix's noise level sets the scale.
    assert np.all(std >= 0.01 - 1e-12) and np.all(np.isfinite(std))
    without_noise = search_for(problem, n=K)
    run_to_end(without_noise, problem["truth"])
    assert np.all(np.isnan(without_noise.estimate()[1]))


def test_std_is_the_least_squares_prediction_std(problem):
    rng = np.random.default_rng(1)
    truth = problem["truth"] + rng.normal(0, 0.02, size=M)
    search = search_for(problem, n=8)
    run_to_end(search, truth)
    error, std = search.estimate()
    S = np.array(search.measured)
    YS = problem["Y"][:, S]
    x = np.linalg.solve(YS @ YS.T, YS @ truth[S])
    np.testing.assert_allclose(error, x @ problem["Y"], atol=1e-10)
    sigma2 = np.sum((x @ YS - truth[S]) ** 2) / (len(S) - K)
    expected = np.sqrt(sigma2 * (1 + np.einsum("ij,ik,kj->j", problem["Y"], np.linalg.inv(YS @ YS.T), problem["Y"])))
    np.testing.assert_allclose(std, np.minimum(expected, MAX_ERROR_STD), rtol=1e-8)
    # With the meta-matrix's noise level, it joins the residuals as one more degree of freedom.
    pooled = search_for(problem, n=8, noise_std=0.05)
    run_to_end(pooled, truth)
    rss = sigma2 * (len(S) - K)
    np.testing.assert_allclose(pooled.estimate()[1], expected * np.sqrt((rss + 0.05**2) / (len(S) - K + 1) / sigma2))


def test_95_percent_intervals_cover_about_95_percent():
    """Many noisy rows of a rank-3 model: the true value of an unmeasured configuration lies within
    1.96 std of the estimate about 95% of the time (t with 17 dof: a little less), not 60% or 100%."""
    rng = np.random.default_rng(5)
    m = 60
    # The first component is the constant direction, so errors can sit around 0.5.
    basis = np.column_stack([np.ones(m), rng.normal(size=(m, K - 1))])
    Y = np.linalg.qr(basis)[0].T
    Y[0] = np.abs(Y[0])
    memory = np.ones(m)
    configs = [f"e4m{1 + i % 20}/e{6 + i // 20}m7" for i in range(m)]
    inside = total = 0
    for trial in range(200):
        x = np.array([0.5 * math.sqrt(m), *rng.normal(0, 0.3, size=K - 1)])
        truth = x @ Y + rng.normal(0, 0.01, size=m)
        search = ActiveSearch(configs, Y, memory, method="random", n=20, seed=trial)
        run_to_end(search, truth)
        error, std = search.estimate()
        rest = np.setdiff1d(np.arange(m), search.measured)
        inside += int(np.sum(np.abs(error[rest] - truth[rest]) <= 1.96 * std[rest]))
        total += len(rest)
    assert 0.91 <= inside / total <= 0.955


def test_configurations_outside_the_measured_span_have_unknown_std(problem):
    search = search_for(problem, n=2, noise_std=0.01)
    run_to_end(search, problem["truth"])
    error, std = search.estimate()
    assert np.all(np.isfinite(error))
    measured = search.measured
    assert np.all(np.isfinite(std[measured]))
    outside = np.setdiff1d(np.arange(M), measured)
    assert np.isnan(std[outside]).all()


def test_frontier_carries_measurements_and_estimates(problem):
    search = search_for(problem, n=4)
    run_to_end(search, problem["truth"])
    frontier = search.frontier("digits[3,5]", "meta", recipe="cpu", fit_run_ids=("fit",))
    assert (frontier.dataset, frontier.meta_experiment, frontier.method, frontier.recipe) == (
        "digits[3,5]", "meta", "ed", "cpu",
    )
    assert frontier.n_measured == 4 and len(frontier.points) == M
    for i, point in enumerate(frontier.points):
        assert point.config == problem["configs"][i] and point.memory_mb == problem["memory"][i]
        if i in search.measured:
            assert point.measured and point.error == problem["truth"][i]
            assert point.error_std == 0.0 and point.run_ids == (f"run-{i}",)
        else:
            assert not point.measured and point.run_ids == ("fit",)
    pick = frontier.best_for(float(np.median(problem["memory"])))
    assert pick.point.memory_mb <= np.median(problem["memory"])


def test_estimate_needs_a_measurement(problem):
    with pytest.raises(PepppError, match="nothing is measured"):
        search_for(problem).estimate()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"configs": []}, "at least one configuration"),
        ({"configs": ["fp32"] * M}, "appears twice"),
        ({"memory": np.ones(M - 1)}, "memory_mb must hold 12"),
        ({"memory": -np.ones(M)}, "memory_mb must hold 12"),
        ({"Y": np.ones((K, M - 1))}, "embeddings must be a finite k x 12"),
        ({"n": 0}, "n=0"),
        ({"cap_mb": 0.5}, "memory cap 0.5 MB is below every configuration"),
        ({"budget_mb": -1.0}, "budget_mb=-1.0"),
        ({"method": "nosuch"}, "unknown method 'nosuch'"),
    ],
)
def test_bad_input_is_one_line(problem, change, message):
    args = {"configs": problem["configs"], "Y": problem["Y"], "memory": problem["memory"]}
    kwargs = {"n": 3}
    for key, value in change.items():
        (args if key in args else kwargs)[key] = value
    with pytest.raises(PepppError, match=message) as info:
        ActiveSearch(args["configs"], args["Y"], args["memory"], **kwargs)
    assert "\n" not in str(info.value)


def test_observe_checks_its_input(problem):
    search = search_for(problem)
    for index, error, message in ((M, 0.1, "out of range"), (0, 1.5, r"in \[0, 1\]"), (0, math.nan, r"in \[0, 1\]")):
        with pytest.raises(PepppError, match=message):
            search.observe(index, error)
    search.observe(0, 0.1)
    with pytest.raises(PepppError, match="already measured"):
        search.observe(0, 0.2)
    with pytest.raises(PepppError, match="batch size 0"):
        search.next_batch(0)


def test_embed_a_full_and_a_partly_observed_matrix():
    E = low_rank(8, seed=3)
    full = embed_meta_matrix(E, rank=K)
    np.testing.assert_allclose(full.embeddings, svd_embeddings(E, K))
    assert full.noise_std == pytest.approx(0.0, abs=1e-9)
    noisy = E + np.random.default_rng(0).normal(0, 0.01, size=E.shape)
    residual = noisy - noisy @ svd_embeddings(noisy, K).T @ svd_embeddings(noisy, K)
    assert embed_meta_matrix(noisy, rank=K).noise_std == pytest.approx(
        math.sqrt(np.sum(residual**2) / (8 * (M - K)))
    )
    holes = E.copy()
    holes[np.random.default_rng(1).random(E.shape) < 0.2] = np.nan
    completed = embed_meta_matrix(holes, rank=K)
    observed = np.isfinite(holes)
    assert np.all(np.isfinite(completed.completed))
    np.testing.assert_allclose(completed.completed[observed], holes[observed])
    assert completed.embeddings.shape == (K, M)
    assert embed_meta_matrix(E, rank=min(M, 8)).embeddings.shape[0] == 8


def test_embed_rejects_bad_matrices():
    E = low_rank(4)
    with pytest.raises(PepppError, match="rank 5 must be an integer between 1 and 4"):
        embed_meta_matrix(E, rank=5)
    E[:, 2] = np.nan
    with pytest.raises(PepppError, match="configuration column 2"):
        embed_meta_matrix(E, rank=2)


def test_an_adaptive_method_runs_through_its_session():
    rng = np.random.default_rng(3)
    E = np.clip(rng.uniform(0.2, 1, (20, 2)) @ rng.uniform(0, 1, (2, 15)) / 2, 0, 1)
    truth = np.clip(rng.uniform(0.2, 1, 2) @ rng.uniform(0, 1, (2, 15)) / 2, 0, 1)
    memory = np.linspace(10, 100, 15)
    configs = [f"c{j}" for j in range(15)]
    meta = embed_meta_matrix(E, rank=2)
    search = ActiveSearch(configs, meta.embeddings, memory, method="adaptive", n=4, cap_mb=80.0, meta_error=E)
    picked = []
    while not search.done:
        batch = search.next_batch(2)
        assert batch and all(memory[i] <= 80.0 and i not in picked for i in batch)
        for i in batch:
            search.observe(i, float(truth[i]))
        picked += batch
    assert len(picked) == 4
    error, std = search.estimate()
    assert error.shape == (15,) and np.all((std[np.isfinite(std)] >= 0))
    frontier = search.frontier("new", "meta")
    assert frontier.n_measured == 4
    with pytest.raises(PepppError, match="needs the completed meta-training matrix"):
        ActiveSearch(configs, meta.embeddings, memory, method="adaptive", n=4)


@pytest.mark.parametrize("method", ["ed", "random", "adaptive"])
def test_the_search_runs_the_code_the_evaluation_scores(method):
    """ActiveSearch and `peppp evaluate` go through the same method session: on the same meta-training
    matrix they pick the same configurations and estimate the same errors and stds."""
    from peppp.evaluate import run_search
    from peppp.methods import get_method

    E = np.clip(low_rank(21, seed=4) + np.random.default_rng(4).normal(0, 0.01, (21, M)), 0, 1)
    memory = np.linspace(1.0, 12.0, M)
    configs = [f"c{j}" for j in range(M)]
    meta = embed_meta_matrix(E[1:], rank=K)
    active = get_method(method, rank=K).fit(meta.completed)
    n = 6
    session = run_search(active.session(memory_mb=memory, seed=2), E[0], n, sequential=active.sequential)
    search = ActiveSearch(configs, meta.embeddings, memory, method=method, n=n, seed=2,
                          noise_std=meta.noise_std, meta_error=meta.completed)
    run_to_end(search, E[0], batch=1 if active.sequential else n)
    assert search.measured == session.measured
    predicted, std = search.estimate()
    estimate = session.estimate()
    np.testing.assert_allclose(predicted, estimate.predicted, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std, estimate.predicted_std, rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(std))
    frontier = search.frontier("new", "meta")
    np.testing.assert_allclose([p.error for p in frontier.points], estimate.error, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([p.error_std for p in frontier.points], estimate.std, rtol=1e-12, atol=1e-15)
