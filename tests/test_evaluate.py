"""Leave-one-dataset-out evaluation on the paper's real 88x99 matrix and on small synthetic ones."""

import numpy as np
import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.errors import PepppError
from peppp.evaluate import MetaSample, load_matrices, loocv, parse_cap


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
