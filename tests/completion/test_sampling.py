"""Tests for sample_mask: probabilities, coverage of rows and columns, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from peppp.completion import sample_mask
from peppp.errors import PepppError


def test_uniform_probability_and_fraction():
    mask, propensity = sample_mask((200, 150), scheme="uniform", fraction=0.2, seed=0)
    assert mask.dtype == bool and mask.shape == (200, 150)
    np.testing.assert_array_equal(propensity, np.full((200, 150), 0.2))
    assert abs(mask.mean() - 0.2) < 0.01


def test_every_row_and_column_is_observed_even_when_sparse():
    mask, _ = sample_mask((60, 40), scheme="uniform", fraction=0.005, seed=1)
    assert mask.any(axis=1).all() and mask.any(axis=0).all()
    memory = np.linspace(100, 5000, 40)
    mask, _ = sample_mask((60, 40), scheme="nonuniform", fraction=0.01, memory_mb=memory, seed=1)
    assert mask.any(axis=1).all() and mask.any(axis=0).all()


def test_nonuniform_prefers_cheap_cells_and_keeps_the_mean():
    memory = np.linspace(100, 1000, 50)
    mask, propensity = sample_mask((400, 50), scheme="nonuniform", fraction=0.2, memory_mb=memory, seed=2)
    assert propensity.mean() == pytest.approx(0.2, abs=1e-12)
    assert propensity.max() <= 1.0
    row = propensity[0]
    assert np.all(np.diff(row) <= 0)  # cheaper configuration, higher probability
    # Uncapped cells are exactly proportional to 1 / memory.
    uncapped = row < 1
    np.testing.assert_allclose(row[uncapped] * memory[uncapped], row[uncapped][0] * memory[uncapped][0])
    assert mask[:, :10].mean() > 2 * mask[:, -10:].mean()


def brute_propensity(memory, fraction):
    lo, hi = 0.0, fraction * memory.max() * 10
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.minimum(1, mid / memory).mean() < fraction:
            lo = mid
        else:
            hi = mid
    return np.minimum(1, hi / memory)


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 0.9, 1.0])
def test_nonuniform_caps_at_one_with_exact_mean(fraction):
    # Very cheap cells would get p > 1; the cap moves their mass to the others.
    memory = np.concatenate([[1.0, 2.0, 3.0], np.linspace(200, 400, 30)])
    _, propensity = sample_mask((5, 33), scheme="nonuniform", fraction=fraction, memory_mb=memory, seed=0)
    np.testing.assert_allclose(propensity[0], brute_propensity(memory, fraction), atol=1e-9)
    assert propensity.mean() == pytest.approx(fraction, abs=1e-12)


def test_full_memory_matrix_equals_per_configuration_vector_when_rows_agree():
    memory = np.linspace(100, 1000, 20)
    full = np.tile(memory, (10, 1))
    a = sample_mask((10, 20), scheme="nonuniform", fraction=0.3, memory_mb=memory, seed=5)
    b = sample_mask((10, 20), scheme="nonuniform", fraction=0.3, memory_mb=full, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])


def test_deterministic_under_seed():
    a, _ = sample_mask((30, 30), fraction=0.3, seed=7)
    b, _ = sample_mask((30, 30), fraction=0.3, seed=7)
    c, _ = sample_mask((30, 30), fraction=0.3, seed=8)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scheme": "stratified", "fraction": 0.2},
        {"fraction": 0.0},
        {"fraction": 1.5},
        {"fraction": "a lot"},
        {"scheme": "nonuniform", "fraction": 0.2},
        {"scheme": "nonuniform", "fraction": 0.2, "memory_mb": np.ones(7)},
        {"scheme": "nonuniform", "fraction": 0.2, "memory_mb": np.zeros(10)},
    ],
)
def test_bad_input(kwargs):
    with pytest.raises(PepppError) as info:
        sample_mask((5, 10), seed=0, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_shape():
    with pytest.raises(PepppError):
        sample_mask((0, 10))
    with pytest.raises(PepppError):
        sample_mask("big")
