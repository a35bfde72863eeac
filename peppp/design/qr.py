"""The QR baseline: configurations in the pivot order of a column-pivoted QR of the embeddings."""

from __future__ import annotations

import numpy as np

from peppp.design._base import DesignStrategy, qr_pivots


class QRDesign(DesignStrategy):
    """The first n pivots of a column-pivoted QR of Y restricted to the candidates.

    A QR of the k-row Y yields only k meaningful pivots (after k steps the residual is zero), so for
    n > k the design continues block by block: the next up to k picks are the pivots of a fresh
    pivoted QR of the columns not chosen yet. Each block is a well-spread basis of its own; unlike ED,
    no block looks at what earlier blocks already cover. The first block is taken after projecting
    off the span of the measured columns.
    """

    name = "qr"

    def __init__(self) -> None:
        pass

    def _select(self, Y, n, measured, available, costs, budget, rng) -> np.ndarray:
        k = Y.shape[0]
        design = list(measured)
        left = available.copy()
        chosen = measured
        while len(design) < n:
            picks = qr_pivots(Y, chosen, left, min(k, n - len(design)))
            design += picks.tolist()
            left[picks] = False
            chosen = np.zeros(0, dtype=int)  # later blocks start afresh
        return np.asarray(design)
