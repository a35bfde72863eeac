"""PEPPP's own method and its baselines: a one-shot experiment design on the SVD embeddings, then a
least-squares fit of the new row (ED-MF with `ed`, random-MF with `random`, and so on)."""

from __future__ import annotations

import numpy as np

from peppp.completion import fit_row, svd_embeddings
from peppp.design import get_design
from peppp.methods._base import ActiveMethod, Session


class DesignFitSession(Session):
    def __init__(self, method: DesignFit, **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def _propose(self, k: int):
        n = len(self.measured) + k
        available = self.affordable()
        available[self.measured] = True  # measured ones stay in the design whatever the cap says
        design = self.method.design_.select(
            self.method.embeddings_,
            n,
            measured=self.measured,
            candidates=available,
            costs=self.memory_mb,
            budget=self.budget_mb,
            seed=self.seed,
        )
        return [int(i) for i in design[len(self.measured) :]]

    def _predict(self):
        return fit_row(self.method.embeddings_, self.measured, self.errors), None


class DesignFit(ActiveMethod):
    """Design `design` (a `peppp.design` name) on the top-`rank` right singular vectors, then least squares."""

    sequential = False

    def __init__(self, *, design: str = "ed", rank: int = 5):
        self.design = design
        self.rank = rank
        self.name = design
        self.design_ = get_design(design)

    def _fit(self, error: np.ndarray) -> None:
        self.embeddings_ = svd_embeddings(error, self.rank)

    def _session(self, *, memory_mb, candidates, budget_mb, seed):
        return DesignFitSession(self, memory_mb=memory_mb, candidates=candidates, budget_mb=budget_mb, seed=seed)
