"""The contract every design method in DESIGNS must keep (like optuna's tests/samplers_tests battery).

A new method registered in peppp.design.DESIGNS runs all of these without any change here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.design import DESIGNS, DesignStrategy, get_design
from peppp.errors import PepppError

METHODS = sorted(DESIGNS)


def embeddings(k=5, m=40, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((m, k)))
    return Q.T


def check_valid(design, m):
    design = np.asarray(design)
    assert design.ndim == 1
    assert np.issubdtype(design.dtype, np.integer)
    assert len(np.unique(design)) == len(design)
    assert np.all((design >= 0) & (design < m))


@pytest.fixture(params=METHODS)
def method(request) -> DesignStrategy:
    return get_design(request.param)


@pytest.mark.parametrize("n", [0, 1, 3, 5, 6, 12, 40, 55])
def test_length_and_validity(method, n):
    Y = embeddings()
    design = method.select(Y, n, seed=0)
    check_valid(design, 40)
    assert len(design) == min(n, 40)


def test_within_candidates(method):
    Y = embeddings()
    candidates = np.zeros(40, dtype=bool)
    candidates[::3] = True  # 14 candidates
    for n in (3, 8, 14, 20):
        design = method.select(Y, n, candidates=candidates, seed=1)
        check_valid(design, 40)
        assert candidates[design].all()
        assert len(design) == min(n, 14)


def test_fewer_candidates_than_rank(method):
    Y = embeddings(k=5)
    candidates = np.zeros(40, dtype=bool)
    candidates[[7, 19, 33]] = True
    design = method.select(Y, 6, candidates=candidates, seed=0)
    assert sorted(design.tolist()) == [7, 19, 33]


def test_starts_with_measured(method):
    Y = embeddings()
    candidates = np.ones(40, dtype=bool)
    candidates[[2, 30]] = False  # measured configurations may lie outside the candidates
    measured = [30, 11, 2]
    for n in (3, 4, 7, 15):
        design = method.select(Y, n, measured=measured, candidates=candidates, seed=2)
        check_valid(design, 40)
        assert design[:3].tolist() == measured
        assert candidates[design[3:]].all()
        assert len(design) == n


def test_measured_spanning_everything(method):
    Y = embeddings(k=3)
    design = method.select(Y, 8, measured=[0, 1, 2, 3, 4], seed=0)
    check_valid(design, 40)
    assert design[:5].tolist() == [0, 1, 2, 3, 4] and len(design) == 8


@pytest.mark.parametrize("budget", [0.0, 5.0, 17.5, 60.0, 1e9])
def test_respects_budget(method, budget):
    Y = embeddings()
    costs = np.random.default_rng(3).uniform(1, 10, 40)
    design = method.select(Y, 12, costs=costs, budget=budget, seed=3)
    check_valid(design, 40)
    assert costs[design].sum() <= budget * (1 + 1e-12)
    if budget == 1e9:
        assert len(design) == 12


def test_budget_counts_measured_and_keeps_them(method):
    Y = embeddings()
    costs = np.full(40, 2.0)
    design = method.select(Y, 10, measured=[5, 6], costs=costs, budget=9.0, seed=0)
    assert design[:2].tolist() == [5, 6] and len(design) == 4  # 2 measured + 2 new = 8 <= 9
    # Measured configurations stay even when they alone exceed the budget.
    design = method.select(Y, 10, measured=[5, 6], costs=costs, budget=1.0, seed=0)
    assert design.tolist() == [5, 6]


def test_deterministic_under_seed(method):
    Y = embeddings(seed=4)
    costs = np.linspace(1, 3, 40)
    a = method.select(Y, 9, measured=[1], costs=costs, seed=11)
    b = method.select(Y, 9, measured=[1], costs=costs, seed=11)
    np.testing.assert_array_equal(a, b)
    c = method.select(Y, 9, measured=[1], costs=costs, seed=np.random.default_rng(11))
    np.testing.assert_array_equal(a, c)


def test_rank_deficient_embeddings(method):
    rng = np.random.default_rng(5)
    Y = np.zeros((4, 30))
    Y[:2] = rng.standard_normal((2, 30))  # only two informative directions
    Y[:, 10] = Y[:, 3]  # an exact duplicate column
    design = method.select(Y, 10, seed=0)
    check_valid(design, 30)
    assert len(design) == 10


def test_single_component(method):
    Y = np.linspace(-1, 1, 15)[None, :]
    design = method.select(Y, 4, seed=0)
    check_valid(design, 15)
    assert len(design) == 4


def test_does_not_modify_inputs(method):
    Y = embeddings()
    candidates = np.ones(40, dtype=bool)
    costs = np.ones(40)
    measured = np.array([3, 4])
    copies = Y.copy(), candidates.copy(), costs.copy(), measured.copy()
    method.select(Y, 8, measured=measured, candidates=candidates, costs=costs, budget=20, seed=0)
    for before, after in zip(copies, (Y, candidates, costs, measured)):
        np.testing.assert_array_equal(before, after)


def test_paper_embeddings_under_median_cap(method):
    if not (PAPER_DIR / "error.csv").exists():
        pytest.skip(f"the paper's matrix is not at {PAPER_DIR}")
    error = pd.read_csv(PAPER_DIR / "error.csv", index_col=0).drop(index="deca-08")
    memory = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0).drop(index="deca-08").to_numpy()
    from peppp.completion import svd_embeddings

    Y = svd_embeddings(error.to_numpy()[1:], 5)
    cap = memory <= np.median(memory)
    for n in (3, 5, 15):
        design = method.select(Y, n, candidates=cap[0], costs=memory[0], seed=0)
        check_valid(design, 99)
        assert cap[0][design].all() and len(design) == n


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1},
        {"n": 2.5},
        {"n": True},
        {"n": 2, "measured": [1, 2, 3]},
        {"n": 5, "measured": [1, 1]},
        {"n": 5, "measured": [40]},
        {"n": 5, "measured": [0.5]},
        {"n": 5, "candidates": np.ones(40)},
        {"n": 5, "candidates": np.ones(39, dtype=bool)},
        {"n": 5, "costs": np.zeros(40)},
        {"n": 5, "costs": np.ones(12)},
        {"n": 5, "budget": 10.0},
        {"n": 5, "costs": np.ones(40), "budget": -1.0},
        {"n": 5, "costs": np.ones(40), "budget": float("nan")},
    ],
)
def test_bad_input_raises_one_line(method, kwargs):
    with pytest.raises(PepppError) as info:
        method.select(embeddings(), **kwargs)
    assert "\n" not in str(info.value)


def test_bad_embeddings(method):
    for Y in (np.ones(5), np.zeros((0, 4)), np.array([[0.1, np.nan]])):
        with pytest.raises(PepppError):
            method.select(Y, 1)


def test_registry_names_and_params():
    assert {"ed", "qr", "random", "convex-d", "convex-a", "convex-e", "ed-cost"} <= set(DESIGNS)
    for name, cls in DESIGNS.items():
        assert cls.name == name and issubclass(cls, DesignStrategy)
        design = get_design(name)
        assert isinstance(design, cls) and repr(design).startswith(cls.__name__)
        assert isinstance(design.get_params(), dict)
    with pytest.raises(PepppError, match="ed, ed-cost"):
        get_design("bayesian")
    with pytest.raises(PepppError, match="bad parameters"):
        get_design("random", ridge=1.0)
