"""Leave-one-dataset-out evaluation on the paper's real 88x99 matrix and on small synthetic ones."""

import numpy as np
import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.errors import PepppError
from peppp.evaluate import (
    MetaSample,
    calibration_error,
    dataset_group,
    fold_training_rows,
    load_matrices,
    loocv,
    parse_cap,
    recommendation_outcomes,
    std_coverage,
)
from peppp.frontier import Frontier, FrontierPoint
from peppp.frontier._uncertainty import probability_best, probability_best_nested


@pytest.fixture(scope="module")
def paper():
    return load_matrices(str(PAPER_DIR / "error.csv"), str(PAPER_DIR / "memory_mb.csv"), exclude=["deca-08"])


def low_rank(rows=12, cols=20, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.uniform(0.2, 1, (rows, rank)) @ rng.uniform(0, 1, (rank, cols)) / rank
    mem = np.tile(np.linspace(100, 300, cols), (rows, 1)) + rng.uniform(0, 1, (rows, 1))
    names = [f"d{i}" for i in range(rows)]
    configs = [f"c{j}" for j in range(cols)]
    return pd.DataFrame(np.clip(e, 0, 1), names, configs), pd.DataFrame(mem, names, configs)


# --------------------------------------------------------------------------------------------------
# ED-MF written out again from METHOD.md with numpy alone: the figures loocv must reproduce


def reference_pivots(Y: np.ndarray, count: int) -> list[int]:
    """Column-pivoted Gram-Schmidt: the column of largest residual norm, then project it out."""
    residual, picked = Y.copy(), []
    for _ in range(count):
        norms = np.sum(residual**2, axis=0)
        norms[picked] = -1.0
        j = int(np.argmax(norms))
        picked.append(j)
        q = residual[:, j] / np.linalg.norm(residual[:, j])
        residual -= np.outer(q, q @ residual)
    return picked


def reference_ed(Y: np.ndarray, n: int) -> list[int]:
    """The first min(k, n) QR pivots, then greedily the column maximising y^T (Y_S Y_S^T)^-1 y."""
    design = reference_pivots(Y, min(Y.shape[0], n))
    while len(design) < n:
        gain = np.einsum("ij,ij->j", Y, np.linalg.inv(Y[:, design] @ Y[:, design].T) @ Y)
        gain[design] = -np.inf
        design.append(int(np.argmax(gain)))
    return design


def reference_frontier(memory: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated points: none other is no worse in both and better in one."""
    no_worse = (memory[None, :] <= memory[:, None]) & (error[None, :] <= error[:, None])
    better = (memory[None, :] < memory[:, None]) | (error[None, :] < error[:, None])
    return ~(no_worse & better).any(axis=1)


def reference_regret(memory: np.ndarray, truth: np.ndarray, estimate: np.ndarray) -> float:
    """Mean over the true frontier's distinct memories b of the true error of the configuration of
    least estimate within b minus the least true error within b."""
    regrets = []
    for budget in np.unique(memory[reference_frontier(memory, truth)]):
        within = np.flatnonzero(memory <= budget)
        regrets.append(truth[within[np.argmin(estimate[within])]] - truth[within].min())
    return float(np.mean(regrets))


def reference_hypervolume(memory: np.ndarray, error: np.ndarray) -> float:
    """Area dominated by the points up to the reference point (1, 1): the staircase, memory first."""
    order = np.argsort(memory, kind="stable")
    edges = np.append(memory[order], 1.0)
    best, area = np.inf, 0.0
    for i, j in enumerate(order):
        best = min(best, error[j])
        area += (edges[i + 1] - edges[i]) * max(1.0 - best, 0.0)
    return area


def reference_ed_mf(E: np.ndarray, M: np.ndarray, n: int, rank: int) -> list[tuple[list[int], float, float]]:
    """Per held-out row: ED-MF's picks, its budget regret and its HyperDiff (METHOD.md)."""
    folds = []
    for i in range(len(E)):
        Y = np.linalg.svd(np.delete(E, i, axis=0), full_matrices=False)[2][:rank]
        picks = reference_ed(Y, n)
        x = np.linalg.lstsq(Y[:, picks].T, E[i, picks], rcond=None)[0]
        predicted = x @ Y
        estimate = predicted.copy()
        estimate[picks] = E[i, picks]
        scaled = M[i] / M.max()
        hyperdiff = abs(reference_hypervolume(scaled, predicted) - reference_hypervolume(scaled, E[i]))
        folds.append((picks, reference_regret(M[i], E[i], estimate), hyperdiff))
    return folds


def test_paper_ed_mf_matches_an_independent_implementation():
    """loocv's ED-MF on the paper's matrix, fold by fold, against the numpy version above: the same
    picks, the same budget regret and HyperDiff (up to round-off) at every n."""
    error = pd.read_csv(PAPER_DIR / "error.csv", index_col=0).drop(index="deca-08")
    memory = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0).loc[error.index, error.columns]
    E, M = error.to_numpy(dtype=float), memory.to_numpy(dtype=float)
    assert E.shape == (87, 99)
    ns = [3, 5, 8, 10, 15]
    result = loocv(error, memory, method="ed", n=ns, rank=5)
    summary = result.summary()
    for n in ns:
        folds = [f for f in result.folds if f.n == n]
        reference = reference_ed_mf(E, M, n, rank=5)
        assert [f.dataset for f in folds] == list(error.index)
        for fold, (picks, regret, hyperdiff) in zip(folds, reference):
            assert sorted(error.columns.get_indexer(fold.measured)) == sorted(picks), fold.dataset
            assert fold.regret == pytest.approx(regret, abs=1e-12), fold.dataset
            assert fold.hyperdiff == pytest.approx(hyperdiff, abs=1e-9), fold.dataset
        assert summary.loc[n, "regret"] == pytest.approx(np.mean([r for _, r, _ in reference]), abs=1e-12)
        assert summary.loc[n, "hyperdiff"] == pytest.approx(np.mean([h for _, _, h in reference]), abs=1e-9)
    # ED-MF's regret falls as it measures more.
    assert list(summary["regret"]) == sorted(summary["regret"], reverse=True)


def test_paper_random_mf_matches_an_independent_estimate_and_is_worse_than_ed(paper):
    """random-MF's mean regret at one seed against the numpy version above with picks drawn by its own
    generator (10 draws per fold): equal within 4 standard errors; and clearly worse than ED-MF."""
    error, memory = paper
    E, M = error.to_numpy(dtype=float), memory.to_numpy(dtype=float)
    rng = np.random.default_rng(12345)
    regrets = []
    for i in range(len(E)):
        Y = np.linalg.svd(np.delete(E, i, axis=0), full_matrices=False)[2][:5]
        for _ in range(10):
            picks = rng.choice(E.shape[1], 5, replace=False)
            estimate = np.linalg.lstsq(Y[:, picks].T, E[i, picks], rcond=None)[0] @ Y
            estimate[picks] = E[i, picks]
            regrets.append(reference_regret(M[i], E[i], estimate))
    summary = loocv(error, memory, method="random", n=[5], rank=5, seed=0).summary().loc[5]
    assert abs(summary["regret"] - np.mean(regrets)) < 4 * summary["regret_se"]
    ed = loocv(error, memory, method="ed", n=[5], rank=5).summary().loc[5, "regret"]
    assert summary["regret"] > ed + 0.01


def test_exact_low_rank_row_is_recovered_with_rank_measurements():
    error, memory = low_rank(rank=2)
    result = loocv(error, memory, method="ed", n=[2, 4], rank=2)
    table = result.summary()
    assert table.loc[2, "completion_error"] < 1e-8
    assert table.loc[2, "regret"] == pytest.approx(0, abs=1e-12)
    assert table.loc[2, "hyperdiff"] == pytest.approx(0, abs=1e-12)


def test_folds_carry_every_metric_and_the_measured_configs():
    error, memory = low_rank()
    result = loocv(error, memory, method="random", n=[3], rank=2, seed=4)
    frame = result.to_frame()
    assert len(frame) == 12
    assert all(len(set(m)) == 3 and set(m) <= set(error.columns) for m in frame["measured"])
    assert ((frame["memory_spent_fraction"] > 0) & (frame["memory_spent_fraction"] < 1)).all()
    assert (frame["best_error_found"] >= frame["best_error"]).all()
    again = loocv(error, memory, method="random", n=[3], rank=2, seed=4).to_frame()
    assert list(again["measured"]) == list(frame["measured"])


def test_memory_cap_keeps_picks_under_the_cap():
    error, memory = low_rank()
    result = loocv(error, memory, method="ed", n=[4], rank=2, cap="median")
    cap = float(np.median(memory.to_numpy()))
    for fold in result.folds:
        assert all(memory.loc[fold.dataset, c] <= cap for c in fold.measured)


@pytest.mark.parametrize("sample", ["uniform:0.3", "nonuniform:0.3"])
def test_sampled_meta_training_still_estimates(sample):
    error, memory = low_rank(rows=15, cols=30)
    table = loocv(error, memory, method="ed", n=[4], rank=2, meta_sample=sample).summary()
    assert table.loc[4, "completion_error"] < 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "nope"}, "unknown method 'nope'"),
        ({"n": [21]}, "larger than the 20 configurations"),
        ({"rank": 12}, "rank 12 must be between 1 and 11"),
        ({"meta_sample": "half"}, "meta-sample 'half'"),
        ({"cap": "big"}, "memory cap 'big'"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, message):
    error, memory = low_rank()
    with pytest.raises(PepppError, match=message):
        loocv(error, memory, **{"rank": 2, **kwargs})


def test_parsers():
    assert MetaSample.parse("uniform:0.2") == MetaSample("uniform", 0.2)
    assert str(MetaSample.parse("nonuniform:0.2")) == "nonuniform:0.2"
    assert parse_cap("none") is None and parse_cap("median") == "median" and parse_cap("600") == 600.0


# --------------------------------------------------------------------------------------------------
# Calibration: coverage of the stds, calibration error of probability_best; folds by group


def test_calibration_error_by_hand():
    # bin [0, 0.1): stated 0.05, came true 1 of 2; bin [0.9, 1]: stated 0.95 and 1.0, both came true
    probability = np.array([0.05, 0.05, 0.95, 1.0])
    outcome = np.array([False, True, True, True])
    expected = (2 * abs(0.05 - 0.5) + 2 * abs(0.975 - 1.0)) / 4
    assert calibration_error(probability, outcome) == pytest.approx(expected)
    assert np.isnan(calibration_error(np.zeros(0), np.zeros(0, dtype=bool)))


def test_calibration_error_is_small_for_honest_probabilities_and_large_for_overconfident_ones():
    rng = np.random.default_rng(1)
    probability = rng.uniform(0, 1, 20_000)
    honest = rng.uniform(0, 1, 20_000) < probability
    assert calibration_error(probability, honest) < 0.02
    assert calibration_error(np.full(20_000, 0.9), rng.uniform(0, 1, 20_000) < 0.5) == pytest.approx(0.4, abs=0.02)


def test_std_coverage_counts_unmeasured_cells_within_one_std():
    truth = np.array([0.10, 0.20, 0.30, 0.40, 0.50])
    estimate = np.array([0.10, 0.25, 0.30, 0.10, 0.50])
    std = np.array([0.0, 0.10, np.nan, 0.10, 0.0])
    unmeasured = np.array([False, True, True, True, True])
    # cell 2 has no std (left out); 1 is within, 3 is not, 4 is exact
    assert std_coverage(truth, estimate, std, unmeasured) == pytest.approx(2 / 3)
    assert np.isnan(std_coverage(truth, estimate, np.full(5, np.nan), unmeasured))


def test_nested_probability_best_agrees_with_one_set_at_a_time():
    rng = np.random.default_rng(3)
    mean = rng.uniform(0.1, 0.5, 30)
    std = rng.uniform(0.0, 0.1, 30)
    std[[4, 9]] = 0.0
    order = rng.permutation(30)
    sizes = np.array([1, 2, 7, 15, 30])
    picks = np.array([order[:k][np.argmin(mean[order[:k]])] for k in sizes])
    nested = probability_best_nested(mean, std, order, sizes, picks)
    for value, k, pick in zip(nested, sizes, picks):
        members = order[:k]
        assert value == pytest.approx(probability_best(mean[members], std[members], int(np.flatnonzero(members == pick)[0])), abs=1e-12)


def test_recommendation_outcomes_match_frontier_best_for():
    """The probability scored per budget is what Frontier.best_for tells a user for that budget."""
    rng = np.random.default_rng(5)
    memory = np.round(rng.uniform(1, 10, 25), 1)
    truth = rng.uniform(0.1, 0.6, 25)
    estimate = truth + rng.normal(0, 0.05, 25)
    std = np.full(25, 0.05)
    std[:3] = 0.0
    probability, truly = recommendation_outcomes(memory, truth, estimate, std)
    frontier = Frontier(dataset="d", meta_experiment="m", points=[FrontierPoint(
        config=f"c{j}", memory_mb=float(memory[j]), error=float(estimate[j]),
        error_std=float(std[j]), measured=bool(j < 3)) for j in range(25)])
    budgets = np.unique(memory[reference_frontier(memory, truth)])
    assert len(probability) == len(budgets)
    for p, ok, budget in zip(probability, truly, budgets):
        rec = frontier.best_for(float(budget))
        assert p == pytest.approx(rec.probability_best, abs=1e-9)
        j = int(rec.point.config[1:])
        assert ok == (truth[j] <= truth[memory <= budget].min())


def test_recommendation_outcomes_from_joint_draws_match_frontier_best_for():
    """With a method's joint draws, the probability scored per budget is the share of draws in which
    the pick is least, and it is what the frontier built from the same draws tells a user."""
    rng = np.random.default_rng(6)
    memory = np.round(rng.uniform(1, 10, 25), 1)
    truth = rng.uniform(0.1, 0.6, 25)
    estimate = truth + rng.normal(0, 0.05, 25)
    measured = np.arange(25) < 3
    estimate[measured] = truth[measured]
    draws = estimate + rng.normal(0, 0.04, (3000, 1)) + rng.normal(0, 0.02, (3000, 25))
    draws[:, measured] = truth[measured]
    std = np.where(measured, 0.0, 0.045)
    probability, truly = recommendation_outcomes(memory, truth, estimate, std, draws)
    frontier = Frontier.from_estimates(dataset="d", meta_experiment="m", configs=[f"c{j}" for j in range(25)],
                                       memory_mb=memory, error=estimate, error_std=std, measured=measured, draws=draws)
    budgets = np.unique(memory[reference_frontier(memory, truth)])
    assert len(probability) == len(budgets)
    independent, _ = recommendation_outcomes(memory, truth, estimate, std)
    assert not np.allclose(probability, independent)  # the shared shift matters
    for p, ok, budget in zip(probability, truly, budgets):
        rec = frontier.best_for(float(budget))
        j = int(rec.point.config[1:])
        inside = memory <= budget
        assert p == pytest.approx(np.mean(draws[:, j] <= draws[:, inside].min(axis=1)), abs=1e-12)
        assert p == pytest.approx(rec.probability_best, abs=1e-12)
        assert ok == (truth[j] <= truth[inside].min())


def test_coverage_and_calibration_in_the_summary_and_json():
    error, memory = low_rank(rows=12, cols=20)
    noisy = error + np.random.default_rng(0).normal(0, 0.02, error.shape)
    result = loocv(noisy.clip(0, 1), memory, method="adaptive", n=[3, 6], rank=2)
    table = result.summary()
    assert ((table["coverage"] > 0) & (table["coverage"] <= 1)).all()
    assert ((table["calibration_error"] >= 0) & (table["calibration_error"] <= 1)).all()
    probability, outcome = result.calibration_pairs(6)
    assert table.loc[6, "calibration_error"] == pytest.approx(calibration_error(probability, outcome))
    assert len(probability) == sum(len(f.probability_best) for f in result.folds if f.n == 6) > 12
    reliability = result.reliability(6)
    assert reliability["pairs"].sum() == len(probability)
    out = result.to_json_dict()
    assert out["fold_scheme"] == "datasets" and len(out["coverage"]) == len(out["calibration_error"]) == 2


def test_group_folds_train_without_the_held_out_rows_group():
    assert fold_training_rows(["a-1", "a-2", "b", "c-x-y"], "groups").tolist() == [
        [False, False, True, True], [False, False, True, True], [True, True, False, True], [True, True, True, False]]
    assert dataset_group("cifar100-insects") == "cifar100" and dataset_group("cifar10") == "cifar10"
    # every row has a twin of its own group: leave-one-dataset-out sees the twin, leave-one-group-out does not
    error, memory = low_rank(rows=8, cols=20, rank=3, seed=2)
    twins = pd.concat([error, error.rename(index=lambda s: s + "-twin")])
    twins.index = [f"g{name.split('-')[0][1:]}-{'b' if name.endswith('twin') else 'a'}" for name in twins.index]
    memory2 = pd.DataFrame(np.tile(memory.to_numpy()[0], (16, 1)), twins.index, twins.columns)
    by_dataset = loocv(twins, memory2, method="ed", n=[2], rank=1, folds="datasets").summary()
    by_group = loocv(twins, memory2, method="ed", n=[2], rank=1, folds="groups").summary()
    assert by_dataset.loc[2, "completion_error"] < by_group.loc[2, "completion_error"]
    with pytest.raises(PepppError, match="folds 'rows' is not one of datasets, groups"):
        loocv(twins, memory2, n=[2], rank=1, folds="rows")


# --------------------------------------------------------------------------------------------------
# folds in worker processes


@pytest.mark.parametrize("method, sample", [("adaptive", "uniform:0.5"), ("ed", "full")])
def test_folds_in_worker_processes_give_the_same_result(method, sample):
    """Each fold is seeded on its own, so running them in two processes (spawned, each with its own
    method) changes nothing but the order in which they finish."""
    error, memory = low_rank(rows=10, cols=20, rank=2, seed=4)
    kw = dict(method=method, n=[2, 4], rank=2, meta_sample=sample, seed=3)
    alone = loocv(error, memory, **kw)
    finished = []
    shared = loocv(error, memory, jobs=2, progress=lambda done, total, name: finished.append((done, total, name)), **kw)
    assert [(f.dataset, f.n, f.measured) for f in shared.folds] == [(f.dataset, f.n, f.measured) for f in alone.folds]
    pd.testing.assert_frame_equal(shared.summary(), alone.summary())
    assert [d for d, _, _ in finished] == list(range(1, 11)) and {t for _, t, _ in finished} == {10}
    assert sorted(name for _, _, name in finished) == sorted(error.index)


def test_jobs_must_be_a_positive_integer():
    error, memory = low_rank(rows=6, cols=8, rank=2, seed=1)
    with pytest.raises(PepppError, match="jobs 0 must be a positive integer"):
        loocv(error, memory, method="ed", n=[2], rank=2, jobs=0)
    with pytest.raises(PepppError, match="jobs True must be a positive integer"):
        loocv(error, memory, method="ed", n=[2], rank=2, jobs=True)
    with pytest.raises(PepppError, match="jobs 'all' must be a positive integer or 'auto'"):
        loocv(error, memory, method="ed", n=[2], rank=2, jobs="all")


def test_auto_jobs_is_one_per_core_and_fold_from_the_threshold_and_one_below(monkeypatch):
    import peppp.evaluate as evaluate

    monkeypatch.setattr(evaluate, "usable_cores", lambda: 4)
    cells = evaluate.AUTO_JOBS_MIN_CELLS
    assert evaluate.auto_jobs(10, cells // 10 - 1) == 1
    assert evaluate.auto_jobs(10, cells // 10) == 4
    assert evaluate.auto_jobs(3, cells) == 3  # at most one per fold
    monkeypatch.setattr(evaluate, "usable_cores", lambda: 1)
    assert evaluate.auto_jobs(100, 100) == 1


def test_auto_jobs_in_loocv_runs_small_matrices_here_and_large_ones_in_processes(monkeypatch):
    import peppp.evaluate as evaluate

    monkeypatch.setattr(evaluate, "usable_cores", lambda: 2)
    small = loocv(*low_rank(rows=6, cols=8, rank=2, seed=1), method="ed", n=[2], rank=2, jobs="auto")
    assert small.jobs == 1 and small.to_json_dict()["jobs"] == 1
    error, memory = low_rank(rows=20, cols=evaluate.AUTO_JOBS_MIN_CELLS // 20, rank=2, seed=1)
    large = loocv(error, memory, method="ed", n=[2], rank=2, jobs="auto")
    assert large.jobs == 2
    pd.testing.assert_frame_equal(large.summary(), loocv(error, memory, method="ed", n=[2], rank=2).summary())


def test_where_worker_processes_cannot_start_auto_runs_here_and_a_number_says_why(monkeypatch):
    import peppp.evaluate as evaluate

    def no_semaphores(*args, **kwargs):
        raise OSError("[Errno 38] Function not implemented")  # what a host without /dev/shm says

    monkeypatch.setattr(evaluate, "usable_cores", lambda: 2)
    monkeypatch.setattr(evaluate, "ProcessPoolExecutor", no_semaphores)
    error, memory = low_rank(rows=20, cols=evaluate.AUTO_JOBS_MIN_CELLS // 20, rank=2, seed=1)
    with pytest.warns(RuntimeWarning, match="running the folds in this process: worker processes cannot start"):
        fallen_back = loocv(error, memory, method="ed", n=[2], rank=2, jobs="auto")
    assert fallen_back.jobs == 1 and len(fallen_back.folds) == 20
    with pytest.raises(PepppError, match="cannot start 2 worker processes here .*run the folds with jobs 1"):
        loocv(error, memory, method="ed", n=[2], rank=2, jobs=2)
