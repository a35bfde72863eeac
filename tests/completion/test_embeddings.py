"""Tests for svd_embeddings and fit_row, including the paper's real 87x99 matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.completion import fit_row, svd_embeddings
from peppp.errors import PepppError


@pytest.fixture(scope="module")
def paper_error():
    path = PAPER_DIR / "error.csv"
    if not path.exists():
        pytest.skip(f"the paper's matrix is not at {path}")
    return pd.read_csv(path, index_col=0).drop(index="deca-08").to_numpy()


def test_paper_matrix_is_strongly_low_rank(paper_error):
    assert paper_error.shape == (87, 99)
    s = np.linalg.svd(paper_error, compute_uv=False)
    np.testing.assert_allclose(s[:5], [69.65, 5.93, 1.14, 1.04, 0.88], atol=0.006)


def test_paper_embeddings_are_the_top_right_singular_vectors(paper_error):
    Y = svd_embeddings(paper_error, 5)
    assert Y.shape == (5, 99)
    np.testing.assert_allclose(Y @ Y.T, np.eye(5), atol=1e-12)
    _, s, Vt = np.linalg.svd(paper_error, full_matrices=False)
    np.testing.assert_allclose(np.abs(Y @ Vt[:5].T), np.eye(5), atol=1e-10)
    # The projection keeps the top singular values: ||E Y^T|| column norms are s_1..s_5.
    np.testing.assert_allclose(np.linalg.norm(paper_error @ Y.T, axis=0), s[:5], rtol=1e-10)


def test_signs_are_fixed():
    rng = np.random.default_rng(0)
    E = rng.random((30, 20))
    Y = svd_embeddings(E, 4)
    biggest = Y[np.arange(4), np.argmax(np.abs(Y), axis=1)]
    assert np.all(biggest > 0)
    np.testing.assert_array_equal(svd_embeddings(E, 4), Y)


def test_randomized_path_matches_exact_svd():
    # 600 x 300 with rank 5 takes the randomized path; a noisy rank-5 matrix keeps a clear gap.
    rng = np.random.default_rng(1)
    E = rng.random((600, 5)) @ rng.random((5, 300)) + 1e-3 * rng.standard_normal((600, 300))
    Y = svd_embeddings(E, 5)
    _, _, Vt = np.linalg.svd(E, full_matrices=False)
    np.testing.assert_allclose(np.abs(Y @ Vt[:5].T), np.eye(5), atol=1e-8)


@pytest.mark.parametrize("rank", [0, 21, 2.5, True, "3"])
def test_bad_rank(rank):
    with pytest.raises(PepppError, match="rank"):
        svd_embeddings(np.ones((20, 30)), rank)


def test_bad_matrix():
    with pytest.raises(PepppError):
        svd_embeddings(np.array([[0.1, np.nan], [0.2, 0.3]]), 1)
    with pytest.raises(PepppError):
        svd_embeddings(np.ones(5), 1)


# ----------------------------------------------------------------------------------------------------
# fit_row


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((40, 4)))
    return Q.T  # 4 x 40, orthonormal rows


def test_fit_row_recovers_a_row_in_the_span(embeddings):
    x = np.array([3.0, -1.0, 0.5, 2.0])
    row = x @ embeddings
    for measured in ([0, 5, 9, 30], [1, 2, 3, 4, 5, 6, 7, 8]):
        np.testing.assert_allclose(fit_row(embeddings, measured, row[measured]), row, atol=1e-12)


def test_fit_row_least_squares_when_overdetermined(embeddings):
    rng = np.random.default_rng(3)
    measured = rng.choice(40, 12, replace=False)
    e = rng.random(12)
    A = embeddings[:, measured].T
    x = np.linalg.solve(A.T @ A, A.T @ e)
    np.testing.assert_allclose(fit_row(embeddings, measured, e), x @ embeddings, atol=1e-12)


def test_fit_row_minimum_norm_when_underdetermined(embeddings):
    measured, e = [3, 17], np.array([0.4, 0.7])
    predicted = fit_row(embeddings, measured, e)
    x = np.linalg.pinv(embeddings[:, measured].T) @ e
    np.testing.assert_allclose(predicted, x @ embeddings, atol=1e-12)
    np.testing.assert_allclose(predicted[measured], e, atol=1e-12)


def test_fit_row_prior_fills_the_unmeasured_directions(embeddings):
    prior = np.array([1.0, 2.0, -1.0, 0.5])
    measured = [3]
    predicted = fit_row(embeddings, measured, [0.25], prior=prior)
    assert predicted[3] == pytest.approx(0.25)
    # The correction from the prior is along the measured column only (minimum norm).
    y = embeddings[:, 3]
    x = prior + y * (0.25 - prior @ y) / (y @ y)
    np.testing.assert_allclose(predicted, x @ embeddings, atol=1e-12)


def test_fit_row_ridge_closed_form(embeddings):
    rng = np.random.default_rng(4)
    measured = rng.choice(40, 6, replace=False)
    e, prior, ridge = rng.random(6), rng.random(4), 0.3
    A = embeddings[:, measured].T
    x = np.linalg.solve(A.T @ A + ridge * np.eye(4), A.T @ e + ridge * prior)
    np.testing.assert_allclose(fit_row(embeddings, measured, e, ridge=ridge, prior=prior), x @ embeddings, atol=1e-12)


@pytest.mark.parametrize(
    "measured,errors,kwargs",
    [
        ([], [], {}),
        ([0, 1], [0.1], {}),
        ([0, 40], [0.1, 0.2], {}),
        ([-1], [0.1], {}),
        ([2, 2], [0.1, 0.1], {}),
        ([2], [np.nan], {}),
        ([2], [0.1], {"ridge": -1.0}),
        ([2], [0.1], {"prior": [1.0, 2.0]}),
    ],
)
def test_fit_row_bad_input(embeddings, measured, errors, kwargs):
    with pytest.raises(PepppError) as info:
        fit_row(embeddings, measured, errors, **kwargs)
    assert "\n" not in str(info.value)
