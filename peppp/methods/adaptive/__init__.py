"""Adaptive active sampling, peppp's default: a posterior over the new dataset's errors as a mixture of
the meta-training datasets, and picks by the expected drop in budget regret (a knowledge gradient).

Modules: `_mixture` (the model and its posterior), `_acquisition` (knowledge gradient, screening),
`_calibration` (the nested leave-one-out behind the std and probability factors), `_blas` (BLAS on
one thread), `_method` (`Adaptive` and its session).
"""

from peppp.methods.adaptive._acquisition import (
    Budgets,
    knowledge_gradient,
    normal_cdf,
    predictive_quantiles,
    screening_gain,
)
from peppp.methods.adaptive._method import Adaptive, AdaptiveSession
from peppp.methods.adaptive._mixture import (
    NEGLIGIBLE_MASS,
    NEGLIGIBLE_WEIGHT,
    NOISE_FLOOR,
    MixturePosterior,
    RowMixture,
    rank_one_noise,
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
    "normal_cdf",
    "predictive_quantiles",
    "rank_one_noise",
    "screening_gain",
    "silverman_scale",
]
