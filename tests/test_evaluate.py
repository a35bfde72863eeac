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


def test_paper_ed_reproduces_the_independent_protocol(paper):
    error, memory = paper
    assert error.shape == (87, 99)
    result = loocv(error, memory, method="ed", n=[5], rank=5)
    summary = result.summary().loc[5]
    assert summary["folds"] == 87
    assert summary["regret"] == pytest.approx(0.028, abs=0.002)
    assert summary["hyperdiff"] == pytest.approx(0.012, abs=0.002)


def test_paper_random_is_clearly_worse_than_ed(paper):
    error, memory = paper
    ed = loocv(error, memory, method="ed", n=[5], rank=5).summary().loc[5, "regret"]
    rnd = loocv(error, memory, method="random", n=[5], rank=5, seed=0).summary().loc[5, "regret"]
    assert rnd > ed + 0.01
    assert 0.035 < rnd < 0.08


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
