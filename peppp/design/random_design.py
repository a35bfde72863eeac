"""The random baseline: configurations drawn uniformly from the candidates."""

from __future__ import annotations

import numpy as np

from peppp.design._base import DesignStrategy


class RandomDesign(DesignStrategy):
    """n - len(measured) candidates drawn uniformly at random without replacement (seeded)."""

    name = "random"

    def __init__(self) -> None:
        pass

    def _select(self, Y, n, measured, available, costs, budget, rng) -> np.ndarray:
        picks = rng.permutation(np.flatnonzero(available))[: n - len(measured)]
        return np.concatenate([measured, picks]).astype(int)
