"""The frontier of one dataset as a value (`Frontier`): every configuration's memory and error, the
non-dominated part, and `best_for(budget)` with how sure the pick is (`Recommendation`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from peppp._io import atomic_write_bytes, atomic_write_text
from peppp.errors import PepppError
from peppp.frontier import _plot, _schema
from peppp.frontier._point import BudgetLevel, FrontierPoint, is_number
from peppp.frontier._schema import CSV_FILE, JSON_FILE, PLOT_FILE, SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS
from peppp.frontier._uncertainty import candidate_std, draws_by_budget, expected_regret, probability_best
from peppp.pareto import best_for_budget, budget_picks, pareto_mask


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Recommendation:
    """What `Frontier.best_for(budget_mb)` answers: the pick, the runner-up and how sure the pick is.

    `probability_best` is the probability that the pick truly has the least error among the
    `candidates` configurations within the budget: from the frontier's `budgets` (the estimating
    method's joint draws of the errors) when it has them, else as if the errors were independent
    normals with the points' means and stds (a measured point without a std counts as exact); None when
    neither is known. `expected_regret` is, under the same model, the expected error the pick gives
    away against the truly best candidate.
    """

    budget_mb: float
    point: FrontierPoint
    runner_up: FrontierPoint | None
    candidates: int
    probability_best: float | None
    expected_regret: float | None

    def to_dict(self) -> dict:
        return {
            "budget_mb": self.budget_mb,
            "point": self.point.to_dict(),
            "runner_up": None if self.runner_up is None else self.runner_up.to_dict(),
            "candidates": self.candidates,
            "probability_best": self.probability_best,
            "expected_regret": self.expected_regret,
        }

    def __str__(self) -> str:
        p = self.point
        source = "measured" if p.measured else "estimated"
        std = "" if p.error_std is None else f" ± {p.error_std:.4f}"
        d = mb_decimals([p.memory_mb] + ([] if self.runner_up is None else [self.runner_up.memory_mb]))
        within = "the only configuration" if self.candidates == 1 else f"best of the {self.candidates} configurations"
        text = (
            f"within {self.budget_mb:g} MB: {p.config} ({p.memory_mb:.{d}f} MB), "
            f"error {p.error:.4f}{std} ({source}), {within} that fit"
        )
        if self.probability_best is not None:
            text += (
                f", truly best with probability {self.probability_best:.2f}"
                f" (expected regret {self.expected_regret:.4f})"
            )
        if self.runner_up is not None:
            text += (f"; runner-up {self.runner_up.config} ({self.runner_up.memory_mb:.{d}f} MB, "
                     f"error {self.runner_up.error:.4f})")
        return text


def mb_decimals(values: Sequence[float], *, least: int = 2, most: int = 6) -> int:
    """How many decimals print these memory figures so that different values never look the same
    (at least `least`, at most `most`)."""
    distinct = sorted(set(float(v) for v in values))
    for d in range(least, most + 1):
        if len({f"{v:.{d}f}" for v in distinct}) == len(distinct):
            return d
    return most


@dataclass(frozen=True)
class Frontier:
    """Every configuration of one dataset with its memory and (measured or estimated) error.

    Built once by the workflow that estimated it, stored as `frontier.json` (schema `peppp.frontier`,
    version `schema_version`), and read back with `Frontier.from_json`. `points` hold every
    configuration, dominated or not; `pareto()` is the non-dominated part.
    """

    dataset: str
    meta_experiment: str
    points: tuple[FrontierPoint, ...]
    method: str = ""
    recipe: str = ""
    created_at: str = field(default_factory=_utc_now)
    schema_version: int = SCHEMA_VERSION
    budgets: tuple[BudgetLevel, ...] = ()

    def __post_init__(self) -> None:
        for name in ("dataset", "meta_experiment", "method", "recipe", "created_at"):
            if not isinstance(getattr(self, name), str):
                raise PepppError(f"frontier {name}={getattr(self, name)!r} must be a string")
        if not self.dataset.strip():
            raise PepppError("frontier dataset is empty; give the dataset's name")
        if self.schema_version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(self.schema_version, bool):
            raise PepppError(_schema.unknown_version(self.schema_version))
        points = tuple(self.points)
        if not points:
            raise PepppError(f"frontier of {self.dataset!r} has no configurations; it needs at least one")
        if not all(isinstance(p, FrontierPoint) for p in points):
            raise PepppError("frontier points must be FrontierPoint values")
        seen: set[str] = set()
        for p in points:
            if p.config in seen:
                raise PepppError(f"configuration {p.config!r} appears twice in the frontier of {self.dataset!r}")
            seen.add(p.config)
        object.__setattr__(self, "points", points)
        budgets = tuple(self.budgets)
        if budgets:
            if self.schema_version == 1:
                raise PepppError("frontier schema_version 1 has no budgets; write version 2")
            if not all(isinstance(b, BudgetLevel) for b in budgets):
                raise PepppError("frontier budgets must be BudgetLevel values")
            levels = [b.memory_mb for b in budgets]
            memories = sorted({p.memory_mb for p in points})
            if levels != memories:
                raise PepppError(
                    f"frontier of {self.dataset!r}: budgets must list each distinct memory of its points once, "
                    f"increasing ({len(memories)} levels), got {len(levels)}"
                )
        object.__setattr__(self, "budgets", budgets)

    # -- building ------------------------------------------------------------------------------------

    @classmethod
    def from_estimates(
        cls,
        *,
        dataset: str,
        meta_experiment: str,
        configs: Sequence[str],
        memory_mb: Sequence[float] | np.ndarray,
        error: Sequence[float] | np.ndarray,
        error_std: Sequence[float | None] | np.ndarray | None = None,
        measured: Sequence[bool] | np.ndarray | None = None,
        run_ids: Sequence[Sequence[str]] | None = None,
        method: str = "",
        recipe: str = "",
        draws: np.ndarray | None = None,
    ) -> Frontier:
        """A frontier from aligned per-configuration arrays, as the estimation step has them.

        Estimated errors are clipped to [0, 1]: an error is a fraction, and a linear prediction may
        overshoot it slightly. Measured errors are taken as they are. NaN in `error_std` means unknown.
        `draws` (draws x configurations), the method's joint draws of the errors when it has them, give
        each memory level's `probability_best` and `expected_regret` (`budgets`).
        """
        n = len(configs)
        memory = np.asarray(memory_mb, dtype=float)
        err = np.asarray(error, dtype=float)
        std = np.full(n, np.nan) if error_std is None else np.asarray(
            [np.nan if s is None else s for s in error_std], dtype=float
        )
        meas = np.zeros(n, dtype=bool) if measured is None else np.asarray(measured, dtype=bool)
        runs = [()] * n if run_ids is None else list(run_ids)
        lengths = {
            "memory_mb": len(memory), "error": len(err), "error_std": len(std), "measured": len(meas), "run_ids": len(runs),
        }
        wrong = {k: v for k, v in lengths.items() if v != n}
        if wrong:
            listed = ", ".join(f"{k} has {v}" for k, v in wrong.items())
            raise PepppError(f"one value per configuration is needed ({n} configurations), but {listed}")
        if not np.all(np.isfinite(err)):
            bad = int(np.flatnonzero(~np.isfinite(err))[0])
            raise PepppError(f"configuration {configs[bad]!r}: error={err[bad]} must be a finite number")
        err = np.where(meas, err, np.clip(err, 0.0, 1.0))
        points = tuple(
            FrontierPoint(
                config=str(configs[i]),
                memory_mb=float(memory[i]),
                error=float(err[i]),
                error_std=None if np.isnan(std[i]) else float(std[i]),
                measured=bool(meas[i]),
                run_ids=runs[i],
            )
            for i in range(n)
        )
        budgets: tuple[BudgetLevel, ...] = ()
        if draws is not None:
            draws = np.asarray(draws, dtype=float)
            if draws.ndim != 2 or draws.shape[1] != n or len(draws) == 0 or not np.all(np.isfinite(draws)):
                raise PepppError(f"draws must be a finite (draws x {n}) array, got shape {draws.shape}")
            levels = np.unique(memory)
            order, sizes, picks = budget_picks(memory, [p.error for p in points], levels)
            probability, regret = draws_by_budget(draws, order, sizes, picks)
            budgets = tuple(BudgetLevel(float(b), float(p), float(r)) for b, p, r in zip(levels, probability, regret))
        return cls(dataset=dataset, meta_experiment=meta_experiment, points=points, method=method, recipe=recipe,
                   budgets=budgets)

    # -- questions -----------------------------------------------------------------------------------

    @property
    def memory_mb(self) -> np.ndarray:
        return np.array([p.memory_mb for p in self.points])

    @property
    def error(self) -> np.ndarray:
        return np.array([p.error for p in self.points])

    @property
    def n_measured(self) -> int:
        return sum(p.measured for p in self.points)

    def pareto_mask(self) -> np.ndarray:
        """Which of `points` are non-dominated in (memory, error); exact duplicates are all kept."""
        return pareto_mask(self.memory_mb, self.error)

    def pareto(self) -> tuple[FrontierPoint, ...]:
        """The non-dominated points, by increasing memory (then configuration name): the staircase."""
        mask = self.pareto_mask()
        front = [p for p, keep in zip(self.points, mask) if keep]
        return tuple(sorted(front, key=lambda p: (p.memory_mb, p.error, p.config)))

    def best_for(self, memory_mb: float) -> Recommendation:
        """The configuration of least estimated error using at most `memory_mb`, and how sure that is.

        Ties go to the lower memory, then the earlier point. A budget below every configuration's
        memory is a PepppError naming the cheapest configuration.
        """
        if not is_number(memory_mb) or math.isnan(memory_mb):
            raise PepppError(f"memory budget {memory_mb!r} must be a number of MB")
        memory, err = self.memory_mb, self.error
        fits = np.flatnonzero(memory <= memory_mb)
        if len(fits) == 0:
            cheapest = self.points[int(np.argmin(memory))]
            raise PepppError(
                f"budget {memory_mb:g} MB is below every configuration's memory; the cheapest, "
                f"{cheapest.config}, needs {cheapest.memory_mb:.2f} MB"
            )
        best = best_for_budget(memory, err, memory_mb)
        rest = fits[fits != best]
        runner_up = None
        if len(rest):
            runner_up = self.points[int(rest[best_for_budget(memory[rest], err[rest], memory_mb)])]
        candidates = [self.points[i] for i in fits]
        std = candidate_std(candidates)
        probability = regret = None
        if self.budgets:
            level = self.budgets[int(np.searchsorted([b.memory_mb for b in self.budgets], memory_mb, side="right")) - 1]
            probability, regret = level.probability_best, level.expected_regret
        elif std is not None:
            mean = err[fits]
            pick = int(np.flatnonzero(fits == best)[0])
            probability = probability_best(mean, std, pick)
            regret = expected_regret(mean, std, pick)
        return Recommendation(
            budget_mb=float(memory_mb),
            point=self.points[best],
            runner_up=runner_up,
            candidates=len(fits),
            probability_best=probability,
            expected_regret=regret,
        )

    # -- representations -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return _schema.to_dict(self)

    def to_json(self) -> str:
        return _schema.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> Frontier:
        """A frontier from parsed JSON, checking every field; any defect is one-line PepppError."""
        return cls(**_schema.fields_from_dict(data))

    @classmethod
    def from_json(cls, text: str | bytes) -> Frontier:
        """Parse and validate `frontier.json` text. Only JSON is read: no eval, no pickle."""
        return cls.from_dict(_schema.loads(text))

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> Frontier:
        """Read and validate a `frontier.json` file."""
        return cls.from_json(_schema.read_bytes(path))

    def to_pandas(self):
        """One row per configuration, by increasing memory: the points plus `on_frontier` and the 95% interval."""
        import pandas as pd

        mask = self.pareto_mask()
        rows = []
        for p, front in zip(self.points, mask):
            low, high = p.interval if p.error_std is not None else (math.nan, math.nan)
            rows.append(
                {
                    "config": p.config,
                    "memory_mb": p.memory_mb,
                    "error": p.error,
                    "error_std": math.nan if p.error_std is None else p.error_std,
                    "error_low": low,
                    "error_high": high,
                    "measured": p.measured,
                    "on_frontier": bool(front),
                    "run_ids": ";".join(p.run_ids),
                }
            )
        table = pd.DataFrame(rows)
        return table.sort_values(["memory_mb", "error", "config"], kind="stable").reset_index(drop=True)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write `to_pandas()` as CSV (run ids joined by ';'; empty std means unknown). Atomic."""
        text = self.to_pandas().to_csv(index=False, float_format="%.10g")
        return atomic_write_text(path, text)

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write `to_json()` to `path`. Atomic: a reader never sees half a file."""
        return atomic_write_text(path, self.to_json())

    def plot(self, path: str | os.PathLike, *, budget_mb: float | None = None, dpi: int = 120) -> Path:
        """PNG of every configuration: frontier points coloured (measured filled, estimated hollow),
        dominated ones grey, error bars of one std, the frontier staircase, and a budget line if given."""
        return atomic_write_bytes(path, _plot.png(self, budget_mb=budget_mb, dpi=dpi))

    def write_artifacts(self, directory: str | os.PathLike) -> list[Path]:
        """Write frontier.json, frontier.csv and frontier.png into `directory` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return [
            self.write_json(directory / JSON_FILE),
            self.to_csv(directory / CSV_FILE),
            self.plot(directory / PLOT_FILE),
        ]

