"""Tests for weighted SoftImpute: optimality, recovery, both SVD paths, weights, and the interface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.completion import COMPLETERS, BaseCompleter, SoftImpute, get_completer, sample_mask
from peppp.errors import PepppError


def low_rank(n=60, m=40, rank=2, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.uniform(0.2, 1, (n, rank)) @ rng.uniform(0, 1, (rank, m)) / rank
    return np.clip(E + noise * rng.standard_normal((n, m)), 0, 1)


def prox_step(E, mask, weights, low, shrinkage):
    """One proximal-gradient step of the weighted objective from `low` (what SoftImpute iterates)."""
    w = np.where(mask, weights, 0.0)
    w = w / w[mask].mean()
    w_max = w.max()
    F = low + (w / w_max) * (np.where(mask, E, 0.0) - low)
    U, s, Vt = np.linalg.svd(F, full_matrices=False)
    return (U * np.maximum(s - shrinkage / w_max, 0)) @ Vt


@pytest.mark.parametrize("weighted", [False, True])
def test_solution_is_a_fixed_point_of_the_proximal_step(weighted):
    E = low_rank(noise=0.05)
    rng = np.random.default_rng(1)
    mask = rng.random(E.shape) < 0.4
    weights = rng.uniform(1, 5, E.shape) if weighted else np.ones(E.shape)
    # tol 1e-16 is the resolution of the convergence measure (squared relative change in float64).
    model = SoftImpute(rank=None, tol=1e-16, max_iter=20000, clip=None).fit(
        np.where(mask, E, np.nan), mask, weights=weights if weighted else None
    )
    assert model.converged_
    low = (model.U_ * model.singular_values_) @ model.components_
    np.testing.assert_allclose(prox_step(E, mask, weights, low, model.shrinkage_), low, atol=2e-6)
    assert 0 < model.rank_ < min(E.shape)


def test_recovers_a_low_rank_matrix():
    E = low_rank(n=80, m=60, rank=3, seed=2)
    mask, _ = sample_mask(E.shape, fraction=0.5, seed=0)
    model = SoftImpute(rank=5, shrinkage_fraction=0.002).fit(np.where(mask, E, np.nan), mask)
    error = np.linalg.norm((model.completed_ - E)[~mask]) / np.linalg.norm(E[~mask])
    assert error < 0.01


def test_large_shrinkage_gives_zero_estimate():
    E = low_rank()
    mask = np.random.default_rng(0).random(E.shape) < 0.5
    observed = np.where(mask, E, 0.0)
    lambda_max = np.linalg.svd(observed, compute_uv=False)[0]
    model = SoftImpute(shrinkage=lambda_max * 1.001).fit(observed, mask)
    assert model.rank_ == 0 and model.converged_
    np.testing.assert_array_equal(model.completed_, observed)
    # Just below lambda_max the estimate is not zero; the default shrinkage is a fraction of it.
    assert SoftImpute(shrinkage=lambda_max * 0.99).fit(observed, mask).rank_ == 1
    assert SoftImpute(shrinkage_fraction=0.1).fit(observed, mask).shrinkage_ == pytest.approx(0.1 * lambda_max)


def test_subspace_path_matches_exact_path():
    # Rank cap 3 on a 70 x 50 matrix uses warm-started block power steps; rank=None uses full SVDs.
    # The solution has rank 2 < 3, so the cap does not change the problem.
    E = low_rank(n=70, m=50, rank=2, noise=0.01, seed=3)
    mask, _ = sample_mask(E.shape, fraction=0.4, seed=1)
    X = np.where(mask, E, np.nan)
    capped = SoftImpute(rank=3, tol=1e-16, max_iter=5000).fit(X, mask)
    exact = SoftImpute(rank=None, tol=1e-16, max_iter=5000).fit(X, mask)
    assert capped.rank_ == exact.rank_ == 2
    np.testing.assert_allclose(capped.completed_, exact.completed_, atol=2e-6)


def test_float32_matches_float64():
    E = low_rank(n=200, m=120, rank=2, noise=0.01, seed=3)
    mask, propensity = sample_mask(E.shape, scheme="nonuniform", fraction=0.3, memory_mb=np.arange(1, 121), seed=1)
    X = np.where(mask, E, np.nan)
    a = SoftImpute(rank=5, dtype="float32").fit(X, mask, weights=1 / propensity)
    b = SoftImpute(rank=5, dtype="float64").fit(X, mask, weights=1 / propensity)
    assert a.completed_.dtype == np.float64
    np.testing.assert_allclose(a.completed_, b.completed_, atol=1e-4)
    np.testing.assert_array_equal(a.completed_[mask], E[mask])


def test_accelerated_and_plain_reach_the_same_solution():
    E = low_rank(noise=0.05, seed=4)
    mask, _ = sample_mask(E.shape, fraction=0.3, seed=2)
    X = np.where(mask, E, np.nan)
    fast = SoftImpute(rank=4, tol=1e-24, max_iter=20000).fit(X, mask)
    slow = SoftImpute(rank=4, tol=1e-24, max_iter=20000, accelerate=False).fit(X, mask)
    np.testing.assert_allclose(fast.completed_, slow.completed_, atol=2e-6)


def test_equal_weights_change_nothing():
    E = low_rank(seed=5)
    mask, _ = sample_mask(E.shape, fraction=0.3, seed=3)
    X = np.where(mask, E, np.nan)
    plain = SoftImpute().fit(X, mask)
    weighted = SoftImpute().fit(X, mask, weights=np.full(E.shape, 7.0))
    np.testing.assert_allclose(plain.completed_, weighted.completed_, atol=1e-12)
    assert plain.shrinkage_ == pytest.approx(weighted.shrinkage_)


def test_keep_observed_and_clip():
    E = low_rank(noise=0.2, seed=6)
    mask, _ = sample_mask(E.shape, fraction=0.3, seed=4)
    X = np.where(mask, E, np.nan)
    kept = SoftImpute(rank=3).fit(X, mask)
    np.testing.assert_array_equal(kept.completed_[mask], E[mask])
    assert kept.completed_.min() >= 0 and kept.completed_.max() <= 1
    replaced = SoftImpute(rank=3, keep_observed=False, clip=None).fit(X, mask)
    low = (replaced.U_ * replaced.singular_values_) @ replaced.components_
    np.testing.assert_allclose(replaced.completed_, low, atol=1e-12)
    assert np.abs(replaced.completed_[mask] - E[mask]).max() > 0
    shifted = SoftImpute(rank=3, clip=(0.2, 0.3)).fit(X, mask)
    assert shifted.completed_.min() >= 0.2 and shifted.completed_.max() <= 0.3


def test_mask_defaults_to_finite_cells():
    E = low_rank(seed=7)
    mask, _ = sample_mask(E.shape, fraction=0.4, seed=5)
    X = np.where(mask, E, np.nan)
    np.testing.assert_array_equal(SoftImpute().fit(X).completed_, SoftImpute().fit(X, mask).completed_)


@pytest.mark.parametrize("scheme,bound", [("uniform", 0.13), ("nonuniform", 0.15)])
def test_paper_matrix_completion_quality(scheme, bound):
    path = PAPER_DIR / "error.csv"
    if not path.exists():
        pytest.skip(f"the paper's matrix is not at {path}")
    E = pd.read_csv(path, index_col=0).drop(index="deca-08").to_numpy()
    memory = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0).drop(index="deca-08").to_numpy()
    errors = []
    for seed in range(3):
        mask, propensity = sample_mask(E.shape, scheme=scheme, fraction=0.2, memory_mb=memory, seed=seed)
        weights = 1 / propensity if scheme == "nonuniform" else None
        model = SoftImpute(rank=5).fit(np.where(mask, E, np.nan), mask, weights=weights)
        assert model.converged_
        errors.append(np.linalg.norm((model.completed_ - E)[~mask]) / np.linalg.norm(E[~mask]))
    # Measured: about 0.10 (uniform) and 0.11 (non-uniform); filling with the column means gives ~0.3.
    assert np.mean(errors) < bound


# ----------------------------------------------------------------------------------------------------
# interface


def test_lifecycle_params_clone_repr():
    model = SoftImpute(rank=3, tol=1e-6)
    with pytest.raises(PepppError, match="not fitted"):
        model.predict()
    params = model.get_params()
    assert params["rank"] == 3 and params["tol"] == 1e-6 and "seed" in params
    assert repr(model).startswith("SoftImpute(rank=3")
    E = low_rank()
    fitted = model.fit(E, np.ones(E.shape, dtype=bool))
    assert fitted is model
    out = model.predict()
    out[0, 0] = -1.0
    assert model.completed_[0, 0] != -1.0
    clone = model.clone()
    assert clone.get_params() == params and not hasattr(clone, "completed_")
    assert isinstance(model, BaseCompleter)


def test_registry():
    assert COMPLETERS["softimpute"] is SoftImpute
    assert get_completer("softimpute", rank=4).rank == 4
    with pytest.raises(PepppError, match="softimpute"):
        get_completer("nuclear")
    with pytest.raises(PepppError, match="bad parameters"):
        get_completer("softimpute", lam=3)


E_SMALL = np.full((4, 3), 0.5)
OBSERVED = np.ones((4, 3), dtype=bool)


@pytest.mark.parametrize(
    "model,args",
    [
        (SoftImpute(), (E_SMALL, np.ones((3, 4), dtype=bool))),
        (SoftImpute(), (E_SMALL, np.ones((4, 3)))),
        (SoftImpute(), (E_SMALL, np.zeros((4, 3), dtype=bool))),
        (SoftImpute(), (np.where(OBSERVED, np.nan, 0.0), OBSERVED)),
        (SoftImpute(), (np.ones(3), None)),
        (SoftImpute(), (E_SMALL, OBSERVED, -np.ones((4, 3)))),
        (SoftImpute(), (E_SMALL, OBSERVED, np.ones((2, 2)))),
        (SoftImpute(rank=0), (E_SMALL, OBSERVED)),
        (SoftImpute(shrinkage=-1.0), (E_SMALL, OBSERVED)),
        (SoftImpute(shrinkage_fraction=1.0), (E_SMALL, OBSERVED)),
        (SoftImpute(max_iter=0), (E_SMALL, OBSERVED)),
        (SoftImpute(tol=0.0), (E_SMALL, OBSERVED)),
        (SoftImpute(clip=(1.0, 0.0)), (E_SMALL, OBSERVED)),
        (SoftImpute(dtype="float16"), (E_SMALL, OBSERVED)),
    ],
)
def test_bad_input(model, args):
    with pytest.raises(PepppError) as info:
        model.fit(*args)
    assert "\n" not in str(info.value)
