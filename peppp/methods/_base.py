"""The active-sampling method interface: learn from a meta-training matrix, then, for one new dataset,
propose configurations to train, take their measured errors, and estimate every configuration's error.

Used the same way by the leave-one-out evaluation (`peppp.evaluate`) and the `active_search` flow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from peppp.errors import PepppError


@dataclass(frozen=True)
class Estimate:
    """Estimated error of every configuration; measured ones carry their measured error.

    `predicted` is the model's prediction everywhere, measured configurations included (what the
    paper's HyperDiff scores); `std` is the standard deviation of each estimate (0 where measured),
    or None when the method has no uncertainty model.
    """

    error: np.ndarray
    predicted: np.ndarray
    std: np.ndarray | None


class Session(ABC):
    """One new dataset's search. Lifecycle: `propose(k)` -> train -> `observe(i, e)` ... -> `estimate()`.

    `measured`/`errors` list what was observed, in order. Proposals respect `candidates` (e.g. a memory
    cap) and, when `budget_mb` is set, the total memory of all measurements.
    """

    def __init__(self, *, memory_mb: np.ndarray, candidates: np.ndarray | None, budget_mb: float | None, seed: int):
        self.memory_mb = np.asarray(memory_mb, dtype=float)
        m = len(self.memory_mb)
        self.candidates = np.ones(m, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
        if self.candidates.shape != (m,):
            raise PepppError(f"candidates must be a boolean mask of length {m}")
        if budget_mb is not None and not budget_mb > 0:
            raise PepppError(f"measurement budget {budget_mb!r} MB must be positive")
        self.budget_mb = budget_mb
        self.seed = seed
        self.measured: list[int] = []
        self.errors: list[float] = []

    @property
    def spent_mb(self) -> float:
        return float(self.memory_mb[self.measured].sum()) if self.measured else 0.0

    def affordable(self) -> np.ndarray:
        """Candidates not yet measured whose memory still fits the measurement budget."""
        mask = self.candidates.copy()
        mask[self.measured] = False
        if self.budget_mb is not None:
            mask &= self.memory_mb <= self.budget_mb - self.spent_mb + 1e-9
        return mask

    def propose(self, k: int = 1) -> list[int]:
        """Up to k new configurations to train next (fewer, or none, when candidates or budget run out)."""
        if k < 1:
            raise PepppError(f"propose needs k >= 1, got {k}")
        if not self.affordable().any():
            return []
        picks = [int(i) for i in self._propose(k)]
        return picks[:k]

    def observe(self, index: int, error: float) -> None:
        """Record the measured test error of configuration `index`."""
        index = int(index)
        if not 0 <= index < len(self.memory_mb):
            raise PepppError(f"configuration index {index} is out of range 0..{len(self.memory_mb) - 1}")
        if index in self.measured:
            raise PepppError(f"configuration {index} was already observed")
        if not np.isfinite(error):
            raise PepppError(f"error {error!r} of configuration {index} is not finite")
        self.measured.append(index)
        self.errors.append(float(error))

    def estimate(self) -> Estimate:
        """Every configuration's estimated error (measured ones: their measured error)."""
        if not self.measured:
            raise PepppError("nothing is measured yet; observe at least one configuration first")
        predicted, std = self._predict()
        error = predicted.copy()
        error[self.measured] = self.errors
        if std is not None:
            std = std.copy()
            std[self.measured] = 0.0
        return Estimate(error=error, predicted=predicted, std=std)

    @abstractmethod
    def _propose(self, k: int) -> Sequence[int]:
        """The next k picks among `self.affordable()`."""

    @abstractmethod
    def _predict(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted error (and std, or None) of every configuration from the observations so far."""


class ActiveMethod(ABC):
    """An active-sampling method. Lifecycle: construct with keyword parameters -> `fit(E)` on a complete
    meta-training error matrix (datasets x configurations) -> `session(...)` per new dataset.

    `sequential` says whether the method adapts to each measurement (the evaluation then proposes one
    configuration at a time) or designs all n up front (the evaluation asks for n at once, as the paper).
    """

    name: str = ""
    sequential: bool = False

    def fit(self, error: np.ndarray) -> ActiveMethod:
        error = np.asarray(error, dtype=float)
        if error.ndim != 2 or not np.isfinite(error).all():
            raise PepppError("the meta-training error matrix must be 2-D and fully observed (complete it first)")
        self._fit(error)
        self.n_configs_ = error.shape[1]
        return self

    def session(
        self,
        *,
        memory_mb: np.ndarray,
        candidates: np.ndarray | None = None,
        budget_mb: float | None = None,
        seed: int = 0,
    ) -> Session:
        if not hasattr(self, "n_configs_"):
            raise PepppError(f"method {self.name!r} is not fitted; call fit(meta-training matrix) first")
        if len(memory_mb) != self.n_configs_:
            raise PepppError(f"memory has {len(memory_mb)} configurations but the meta-training matrix has {self.n_configs_}")
        return self._session(memory_mb=memory_mb, candidates=candidates, budget_mb=budget_mb, seed=seed)

    @abstractmethod
    def _fit(self, error: np.ndarray) -> None: ...

    @abstractmethod
    def _session(self, *, memory_mb, candidates, budget_mb, seed) -> Session: ...
