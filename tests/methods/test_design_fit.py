"""DesignFit (ED-MF and its baselines): the design's picks, least squares on the embeddings, and the
least-squares prediction std against closed forms written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from peppp.completion import svd_embeddings
from peppp.design import get_design
from peppp.errors import PepppError
from peppp.methods import MAX_ERROR_STD, DesignFit
from peppp.methods.design_fit import prediction_std, residual_noise_std

K, M = 3, 15


def noisy_low_rank(rows: int = 20, *, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    E = rng.uniform(0.05, 0.3, (rows, K)) @ rng.uniform(0.1, 1.0, (K, M)) / K
    return np.clip(E + noise * rng.standard_normal(E.shape), 0.0, 1.0)


def test_the_constructor_only_stores_its_parameters():
    method = DesignFit(design="nosuch", rank=0)
    assert method.get_params() == {"design": "nosuch", "rank": 0} and method.name == "nosuch"
    assert not [a for a in vars(method) if a.endswith("_")]
    E = noisy_low_rank()
    with pytest.raises(PepppError, match="rank 0 must be a positive integer"):
        method.fit(E)
    with pytest.raises(PepppError, match="unknown design 'nosuch'"):
        DesignFit(design="nosuch").fit(E)
    with pytest.raises(PepppError, match="rank=16 must be an integer between 1 and 15"):
        DesignFit(rank=16).fit(E)


def test_fit_learns_the_embeddings_and_the_noise_level():
    E = noisy_low_rank()
    method = DesignFit(rank=K).fit(E)
    np.testing.assert_array_equal(method.embeddings_, svd_embeddings(E, K))
    Y = method.embeddings_
    residual = E - E @ Y.T @ Y
    assert method.noise_std_ == pytest.approx(math.sqrt(np.sum(residual**2) / (E.shape[0] * (M - K))), rel=1e-12)
    assert residual_noise_std(E, svd_embeddings(E, M)) is None  # rank m: nothing left to measure noise on
    assert method.design_.name == "ed" and method.n_configs_ == M


def test_picks_are_the_designs_and_the_estimate_is_least_squares():
    E = noisy_low_rank()
    method = DesignFit(design="ed", rank=K).fit(E[1:])
    memory = np.linspace(1.0, 15.0, M)
    session = method.session(memory_mb=memory, seed=0)
    picks = session.propose(6)
    assert picks == get_design("ed").select(method.embeddings_, 6).tolist()
    for j in picks:
        session.observe(j, float(E[0, j]))
    Y, S = method.embeddings_, np.array(picks)
    x = np.linalg.solve(Y[:, S] @ Y[:, S].T, Y[:, S] @ E[0, S])
    np.testing.assert_allclose(session.estimate().predicted, x @ Y, atol=1e-12)


@pytest.mark.parametrize("noise_std", [None, 0.05])
def test_std_is_the_least_squares_prediction_std(noise_std):
    E = noisy_low_rank(noise=0.02)
    Y = svd_embeddings(E[1:], K)
    method = DesignFit(design="random", rank=K).fit_embedded(Y, noise_std=noise_std)
    session = method.session(memory_mb=np.ones(M), seed=3)
    for j in session.propose(8):
        session.observe(j, float(E[0, j]))
    estimate = session.estimate()
    S = np.array(session.measured)
    YS = Y[:, S]
    x = np.linalg.solve(YS @ YS.T, YS @ E[0, S])
    rss = float(np.sum((x @ YS - E[0, S]) ** 2))
    sigma2 = rss / (len(S) - K) if noise_std is None else (rss + noise_std**2) / (len(S) - K + 1)
    expected = np.sqrt(sigma2 * (1 + np.einsum("ij,ik,kj->j", Y, np.linalg.inv(YS @ YS.T), Y)))
    np.testing.assert_allclose(estimate.predicted_std, np.minimum(expected, MAX_ERROR_STD), rtol=1e-8)
    free = np.setdiff1d(np.arange(M), S)
    np.testing.assert_allclose(estimate.std[free], expected[free], rtol=1e-8)
    assert np.all(estimate.std[S] == 0.0)


def test_std_is_unknown_outside_the_measured_span_and_without_degrees_of_freedom():
    Y = svd_embeddings(noisy_low_rank(), K)
    S = [0, 4]  # two measurements span two of the three directions
    std = prediction_std(Y, S, np.zeros(2), noise_std=0.01)
    basis = np.linalg.qr(Y[:, S])[0]
    inside = np.linalg.norm(Y - basis @ basis.T @ Y, axis=0) < 1e-9
    assert inside[S].all() and np.isnan(std[~inside]).all() and np.isfinite(std[inside]).all()
    # K measurements fit exactly: no residual degree of freedom and no noise level, no std.
    assert np.isnan(prediction_std(Y, [0, 4, 9], np.zeros(3), noise_std=None)).all()
    # The noise level alone still gives one: sigma = noise_std.
    S3 = [0, 4, 9]
    leverage = np.einsum("ij,ik,kj->j", Y, np.linalg.inv(Y[:, S3] @ Y[:, S3].T), Y)
    np.testing.assert_allclose(prediction_std(Y, S3, np.zeros(3), noise_std=0.01), 0.01 * np.sqrt(1 + leverage))


def test_fit_embedded_takes_the_embeddings_as_given_and_checks_them():
    Y = svd_embeddings(noisy_low_rank(), K)
    method = DesignFit(rank=K).fit_embedded(Y, noise_std=0.02)
    np.testing.assert_array_equal(method.embeddings_, Y)
    assert method.noise_std_ == 0.02 and method.n_configs_ == M
    for embeddings, noise_std, message in (
        (Y[:2], None, "finite 3 x m matrix"),
        (np.where(np.eye(K, M, dtype=bool), np.nan, Y), None, "finite 3 x m matrix"),
        (Y, -0.1, "noise_std=-0.1"),
        (Y, math.inf, "noise_std=inf"),
    ):
        with pytest.raises(PepppError, match=message) as info:
            DesignFit(rank=K).fit_embedded(embeddings, noise_std=noise_std)
        assert "\n" not in str(info.value)
