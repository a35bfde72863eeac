"""One configuration of a frontier as a value (`FrontierPoint`): its memory, error, std and provenance,
checked on construction."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from peppp.errors import PepppError


def is_number(value: object) -> bool:
    """A real number, and not a bool (which Python counts as an int)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def finite(value: numbers.Real) -> bool:
    """Finite as a float (an integer beyond float range is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass(frozen=True)
class FrontierPoint:
    """One configuration of the dataset: its memory, its error estimate and where the estimate came from.

    `error` is the measured test error when `measured`, else the estimate from the low-rank model.
    `error_std` is the standard deviation of that error (the seed spread or 0 for a measured point,
    the model's uncertainty for an estimated one); None when unknown. `run_ids` are the MLflow runs the
    value came from (the trainings of a measured point, the fit that estimated the others).
    """

    config: str
    memory_mb: float
    error: float
    error_std: float | None
    measured: bool
    run_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"configuration {self.config!r}"
        if not isinstance(self.config, str) or not self.config.strip():
            raise PepppError(f"configuration name {self.config!r} must be a non-empty string")
        if not is_number(self.memory_mb) or not (finite(self.memory_mb) and self.memory_mb > 0):
            raise PepppError(f"{where}: memory_mb={self.memory_mb!r} must be a finite number > 0")
        if not is_number(self.error) or not (finite(self.error) and 0.0 <= self.error <= 1.0):
            raise PepppError(f"{where}: error={self.error!r} must be a finite number in [0, 1]")
        if self.error_std is not None and (
            not is_number(self.error_std) or not (finite(self.error_std) and self.error_std >= 0)
        ):
            raise PepppError(f"{where}: error_std={self.error_std!r} must be None or a finite number >= 0")
        if not isinstance(self.measured, (bool, np.bool_)):
            raise PepppError(f"{where}: measured={self.measured!r} must be true or false")
        if isinstance(self.run_ids, str) or not all(isinstance(r, str) and r for r in self.run_ids):
            raise PepppError(f"{where}: run_ids={self.run_ids!r} must be a list of non-empty strings")
        object.__setattr__(self, "memory_mb", float(self.memory_mb))
        object.__setattr__(self, "error", float(self.error))
        if self.error_std is not None:
            object.__setattr__(self, "error_std", float(self.error_std))
        object.__setattr__(self, "measured", bool(self.measured))
        object.__setattr__(self, "run_ids", tuple(self.run_ids))

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% normal interval of the error, clipped to [0, 1]; None when the std is unknown."""
        if self.error_std is None:
            return None
        half = 1.959963984540054 * self.error_std
        return max(0.0, self.error - half), min(1.0, self.error + half)

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "memory_mb": self.memory_mb,
            "error": self.error,
            "error_std": self.error_std,
            "measured": self.measured,
            "run_ids": list(self.run_ids),
        }



@dataclass(frozen=True)
class BudgetLevel:
    """How sure the pick is for the memory budgets from `memory_mb` up to the next level: the probability
    that it truly has the least error among the configurations within the budget, and the error it is
    expected to give away against the truly best, both from the estimating method's joint draws of
    the errors (which carry how the configurations' errors move together)."""

    memory_mb: float
    probability_best: float
    expected_regret: float

    def __post_init__(self) -> None:
        where = f"budget level {self.memory_mb!r} MB"
        if not is_number(self.memory_mb) or not (finite(self.memory_mb) and self.memory_mb > 0):
            raise PepppError(f"{where}: memory_mb must be a finite number > 0")
        if not is_number(self.probability_best) or not (finite(self.probability_best) and 0.0 <= self.probability_best <= 1.0):
            raise PepppError(f"{where}: probability_best={self.probability_best!r} must be a number in [0, 1]")
        if not is_number(self.expected_regret) or not (finite(self.expected_regret) and self.expected_regret >= 0):
            raise PepppError(f"{where}: expected_regret={self.expected_regret!r} must be a finite number >= 0")
        for name in ("memory_mb", "probability_best", "expected_regret"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict:
        return {"memory_mb": self.memory_mb, "probability_best": self.probability_best,
                "expected_regret": self.expected_regret}
