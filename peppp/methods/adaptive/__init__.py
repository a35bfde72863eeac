"""Adaptive active sampling, peppp's default: a package, so that the mixture model, the acquisition and
the method can take a module each."""

from peppp.methods.adaptive._mixture import (
    NEGLIGIBLE_MASS,
    NEGLIGIBLE_WEIGHT,
    NOISE_FLOOR,
    Adaptive,
    AdaptiveSession,
    Budgets,
    MixturePosterior,
    RowMixture,
    knowledge_gradient,
    predictive_quantiles,
    rank_one_noise,
    screening_gain,
    silverman_scale,
)

__all__ = [
    "NEGLIGIBLE_MASS",
    "NEGLIGIBLE_WEIGHT",
    "NOISE_FLOOR",
    "Adaptive",
    "AdaptiveSession",
    "Budgets",
    "MixturePosterior",
    "RowMixture",
    "knowledge_gradient",
    "predictive_quantiles",
    "rank_one_noise",
    "screening_gain",
    "silverman_scale",
]
