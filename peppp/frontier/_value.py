"""The estimated (memory, error) frontier of one dataset as a value: JSON schema, CSV, plot, best_for(budget).

No MLflow; pandas and matplotlib load only inside the methods that use them. Reading is JSON only, never pickle.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from peppp._io import atomic_write_bytes, atomic_write_text
from peppp.errors import PepppError
from peppp.pareto import best_for_budget, pareto_mask

__all__ = [
    "ARTIFACT_FILES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Frontier",
    "FrontierPoint",
    "Recommendation",
]

SCHEMA = "peppp.frontier"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
JSON_FILE, CSV_FILE, PLOT_FILE = "frontier.json", "frontier.csv", "frontier.png"
ARTIFACT_FILES = (JSON_FILE, CSV_FILE, PLOT_FILE)
# A frontier of a few hundred configurations is tens of kB; anything far larger is not one of ours.
MAX_JSON_BYTES = 50 * 1024**2

_POINT_FIELDS = ("config", "memory_mb", "error", "error_std", "measured", "run_ids")
_TOP_FIELDS = (
    "schema",
    "schema_version",
    "dataset",
    "meta_experiment",
    "method",
    "recipe",
    "created_at",
    "points",
)
# Midpoints of this many equal-probability bins of the recommended point's error distribution: the
# probability that it is the best is then exact to about 1e-4, deterministic, and needs no seed.
_QUADRATURE_BINS = 4096


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _finite(value: numbers.Real) -> bool:
    """Finite as a float (an integer beyond float range is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


# ----------------------------------------------------------------------------------------------------
# values


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
        if not _is_number(self.memory_mb) or not (_finite(self.memory_mb) and self.memory_mb > 0):
            raise PepppError(f"{where}: memory_mb={self.memory_mb!r} must be a finite number > 0")
        if not _is_number(self.error) or not (_finite(self.error) and 0.0 <= self.error <= 1.0):
            raise PepppError(f"{where}: error={self.error!r} must be a finite number in [0, 1]")
        if self.error_std is not None and (
            not _is_number(self.error_std) or not (_finite(self.error_std) and self.error_std >= 0)
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
class Recommendation:
    """What `Frontier.best_for(budget_mb)` answers: the pick, the runner-up and how sure the pick is.

    `probability_best` is the probability that the pick truly has the least error among the
    `candidates` configurations within the budget, if their errors were independent normals with the
    points' means and stds (a measured point without a std counts as exact); None when an estimated
    candidate has no std. `expected_regret` is, under the same model, the expected error the pick gives
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
        text = (
            f"within {self.budget_mb:g} MB: {p.config} ({p.memory_mb:.1f} MB), "
            f"error {p.error:.4f}{std} ({source}), best of {self.candidates}"
        )
        if self.probability_best is not None:
            text += (
                f", truly best with probability {self.probability_best:.2f}"
                f" (expected regret {self.expected_regret:.4f})"
            )
        if self.runner_up is not None:
            text += f"; runner-up {self.runner_up.config} (error {self.runner_up.error:.4f})"
        return text


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

    def __post_init__(self) -> None:
        for name in ("dataset", "meta_experiment", "method", "recipe", "created_at"):
            if not isinstance(getattr(self, name), str):
                raise PepppError(f"frontier {name}={getattr(self, name)!r} must be a string")
        if not self.dataset.strip():
            raise PepppError("frontier dataset is empty; give the dataset's name")
        if self.schema_version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(self.schema_version, bool):
            raise PepppError(
                f"frontier schema_version {self.schema_version!r} is unknown; this peppp reads "
                f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
            )
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
    ) -> Frontier:
        """A frontier from aligned per-configuration arrays, as the estimation step has them.

        Estimated errors are clipped to [0, 1]: an error is a fraction, and a linear prediction may
        overshoot it slightly. Measured errors are taken as they are. NaN in `error_std` means unknown.
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
        return cls(dataset=dataset, meta_experiment=meta_experiment, points=points, method=method, recipe=recipe)

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
        if not _is_number(memory_mb) or math.isnan(memory_mb):
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
        std = _candidate_std(candidates)
        probability = regret = None
        if std is not None:
            mean = err[fits]
            pick = int(np.flatnonzero(fits == best)[0])
            probability = _probability_best(mean, std, pick)
            regret = _expected_regret(mean, std, pick)
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
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "dataset": self.dataset,
            "meta_experiment": self.meta_experiment,
            "method": self.method,
            "recipe": self.recipe,
            "created_at": self.created_at,
            "points": [p.to_dict() for p in self.points],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> Frontier:
        """A frontier from parsed JSON, checking every field; any defect is one-line PepppError."""
        if not isinstance(data, dict):
            raise PepppError(f"frontier JSON must be an object, got {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise PepppError(f"not a frontier: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
            raise PepppError(
                f"frontier schema_version {version!r} is unknown; this peppp reads "
                f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))} (upgrade peppp to read newer ones)"
            )
        _check_fields("frontier", data, _TOP_FIELDS)
        for name in ("dataset", "meta_experiment", "method", "recipe", "created_at"):
            if not isinstance(data[name], str):
                raise PepppError(f"frontier field {name!r} must be a string, got {data[name]!r}")
        try:
            datetime.fromisoformat(data["created_at"])
        except ValueError:
            raise PepppError(f"frontier created_at {data['created_at']!r} is not an ISO 8601 time") from None
        if not isinstance(data["points"], list):
            raise PepppError(f"frontier field 'points' must be a list, got {type(data['points']).__name__}")
        points = tuple(_point_from_dict(i, p) for i, p in enumerate(data["points"]))
        return cls(
            dataset=data["dataset"],
            meta_experiment=data["meta_experiment"],
            points=points,
            method=data["method"],
            recipe=data["recipe"],
            created_at=data["created_at"],
            schema_version=version,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Frontier:
        """Parse and validate `frontier.json` text. Only JSON is read: no eval, no pickle."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PepppError(f"frontier JSON is not UTF-8 text (byte {exc.start})") from None
        if not isinstance(text, str):
            raise PepppError(f"frontier JSON must be text, got {type(text).__name__}")

        def no_constants(name: str) -> None:
            raise PepppError(f"frontier JSON holds {name}; only finite numbers are allowed")

        try:
            data = json.loads(text, parse_constant=no_constants)
        except json.JSONDecodeError as exc:
            raise PepppError(f"frontier JSON is corrupt: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise PepppError("frontier JSON is corrupt: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
            raise PepppError(f"frontier JSON is corrupt: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(data)

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> Frontier:
        """Read and validate a `frontier.json` file."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_JSON_BYTES:
                raise PepppError(f"{path} is {size} bytes; a frontier JSON is at most {MAX_JSON_BYTES}")
            return cls.from_json(path.read_bytes())
        except OSError as exc:
            raise PepppError(f"cannot read frontier {path}: {exc.strerror or exc}") from None

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
        # The Agg canvas directly: no pyplot, so no global backend switch and no display needed.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        # A budget below every configuration fails here, before anything is drawn or written.
        pick = None if budget_mb is None else self.best_for(budget_mb).point
        mask = self.pareto_mask()
        fig = Figure(figsize=(8, 5.2), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        grey, measured_colour, estimated_colour = "#b0b0b0", "#1f5fa8", "#d9641e"

        measured = np.array([p.measured for p in self.points], dtype=bool)
        std = np.array([p.error_std or 0.0 for p in self.points])
        memory, error = self.memory_mb, self.error
        # Four groups (on the frontier or not x measured or not), one call each: 99 separate artists
        # would make the plot take seconds.
        for on_front in (False, True):
            for is_measured in (False, True):
                group = (mask == on_front) & (measured == is_measured)
                if not group.any():
                    continue
                colour = (measured_colour if is_measured else estimated_colour) if on_front else grey
                with_std = group & (std > 0)
                if with_std.any():
                    ax.errorbar(
                        memory[with_std], error[with_std], yerr=std[with_std], fmt="none", ecolor=colour,
                        elinewidth=1.0 if on_front else 0.6, capsize=2 if on_front else 0,
                        alpha=0.9 if on_front else 0.6, zorder=2 if on_front else 1,
                    )
                ax.plot(
                    memory[group], error[group], linestyle="none", marker="o" if is_measured else "D",
                    markersize=6.5 if on_front else 4.5, markerfacecolor=colour if is_measured else "white",
                    markeredgecolor=colour, markeredgewidth=1.3, zorder=4 if on_front else 3,
                )

        front = self.pareto()
        xs = [p.memory_mb for p in front]
        ys = [p.error for p in front]
        right = max(p.memory_mb for p in self.points) * 1.05
        ax.step(xs + [right], ys + [ys[-1]], where="post", color="#333333", linewidth=1.2, zorder=2)

        handles = [
            Line2D([], [], linestyle="none", marker="o", color=measured_colour, label="measured, on frontier"),
            Line2D([], [], linestyle="none", marker="D", markerfacecolor="white", markeredgecolor=estimated_colour,
                   label="estimated, on frontier"),
            Line2D([], [], linestyle="none", marker="o", color=grey, label="measured, dominated"),
            Line2D([], [], linestyle="none", marker="D", markerfacecolor="white", markeredgecolor=grey,
                   label="estimated, dominated"),
            Line2D([], [], color="#333333", label="frontier"),
        ]
        if budget_mb is not None:
            green = "#2a9d4b"
            ax.axvline(budget_mb, color=green, linestyle="--", linewidth=1.0)
            handles.append(Line2D([], [], color=green, linestyle="--", label=f"budget {budget_mb:g} MB"))
            ax.plot(pick.memory_mb, pick.error, linestyle="none", marker="o", markersize=15,
                    markerfacecolor="none", markeredgecolor=green, markeredgewidth=1.6, zorder=5)
            handles.append(Line2D([], [], linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                                  markeredgecolor=green, label="pick within budget"))
        if memory.max() / memory.min() > 8:
            ax.set_xscale("log")
        ax.set_xlabel("training memory (MB)")
        ax.set_ylabel("test error (1 - top-1 accuracy)")
        ax.set_title(
            f"{self.dataset}: estimated frontier, {self.n_measured} of {len(self.points)} configurations measured",
            fontsize=10,
        )
        ax.grid(True, which="major", color="#e6e6e6", linewidth=0.7)
        ax.legend(handles=handles, fontsize=8, loc="upper right", frameon=False)
        footer = f"meta-experiment {self.meta_experiment}" + (f", method {self.method}" if self.method else "")
        fig.text(0.01, 0.005, footer + "; bars: ±1 std", fontsize=7, color="#666666")
        if len(front) <= 14:
            _label_frontier(fig, ax, front)

        return atomic_write_bytes(path, _png_bytes(fig, dpi=dpi))

    def write_artifacts(self, directory: str | os.PathLike) -> list[Path]:
        """Write frontier.json, frontier.csv and frontier.png into `directory` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return [
            self.write_json(directory / JSON_FILE),
            self.to_csv(directory / CSV_FILE),
            self.plot(directory / PLOT_FILE),
        ]


# ----------------------------------------------------------------------------------------------------
# helpers


def _check_fields(where: str, data: dict, expected: Sequence[str]) -> None:
    missing = [k for k in expected if k not in data]
    if missing:
        raise PepppError(f"{where} lacks field(s) {', '.join(map(repr, missing))}")
    unknown = sorted(k for k in data if k not in expected)
    if unknown:
        raise PepppError(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; schema version "
            f"{SCHEMA_VERSION} allows {', '.join(expected)}"
        )


def _point_from_dict(index: int, data: object) -> FrontierPoint:
    where = f"frontier points[{index}]"
    if not isinstance(data, dict):
        raise PepppError(f"{where} must be an object, got {type(data).__name__}")
    _check_fields(where, data, _POINT_FIELDS)
    if not isinstance(data["config"], str):
        raise PepppError(f"{where}.config must be a string, got {data['config']!r}")
    for name in ("memory_mb", "error"):
        if not _is_number(data[name]):
            raise PepppError(f"{where}.{name} must be a number, got {data[name]!r}")
    if data["error_std"] is not None and not _is_number(data["error_std"]):
        raise PepppError(f"{where}.error_std must be a number or null, got {data['error_std']!r}")
    if not isinstance(data["measured"], bool):
        raise PepppError(f"{where}.measured must be true or false, got {data['measured']!r}")
    if not isinstance(data["run_ids"], list) or not all(isinstance(r, str) for r in data["run_ids"]):
        raise PepppError(f"{where}.run_ids must be a list of strings, got {data['run_ids']!r}")
    try:
        return FrontierPoint(
            config=data["config"],
            memory_mb=data["memory_mb"],
            error=data["error"],
            error_std=data["error_std"],
            measured=data["measured"],
            run_ids=tuple(data["run_ids"]),
        )
    except PepppError as exc:
        raise PepppError(f"{where}: {exc}") from None


def _candidate_std(points: Sequence[FrontierPoint]) -> np.ndarray | None:
    """Stds of the candidates; a measured point without one is exact, an estimated one makes it unknown."""
    std = []
    for p in points:
        if p.error_std is None:
            if not p.measured:
                return None
            std.append(0.0)
        else:
            std.append(p.error_std)
    return np.array(std)


def _survival(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """P(X_j >= x) for independent X_j ~ N(mean_j, std_j^2), std 0 meaning a point mass; shape (len(x), m)."""
    from scipy.special import ndtr

    x = x[:, None]
    exact = std == 0
    z = (x - mean) / np.where(exact, 1.0, std)
    return np.where(exact, (x <= mean).astype(float), ndtr(-z))


def _probability_best(mean: np.ndarray, std: np.ndarray, pick: int) -> float:
    """P(X_pick <= X_j for every other j) for independent normals (std 0: exact)."""
    others = np.arange(len(mean)) != pick
    if not others.any():
        return 1.0
    if std[pick] == 0:
        x = np.array([mean[pick]])
        return float(np.prod(_survival(x, mean[others], std[others])))
    from scipy.special import ndtri

    u = (np.arange(_QUADRATURE_BINS) + 0.5) / _QUADRATURE_BINS
    x = mean[pick] + std[pick] * ndtri(u)
    return float(np.mean(np.prod(_survival(x, mean[others], std[others]), axis=1)))


def _expected_regret(mean: np.ndarray, std: np.ndarray, pick: int) -> float:
    """E[X_pick - min_j X_j] for independent normals, via E[min] = lo + integral of P(min > x) over [lo, hi]."""
    if len(mean) == 1:
        return 0.0
    spread = 8.0 * std
    lo, hi = float(np.min(mean - spread)), float(np.max(mean + spread))
    if hi <= lo:
        return 0.0
    x = np.linspace(lo, hi, 8001)
    above = np.prod(_survival(x, mean, std), axis=1)
    expected_min = lo + float(np.sum((above[1:] + above[:-1]) * np.diff(x)) / 2)
    return max(0.0, float(mean[pick]) - expected_min)


def _label_frontier(fig, ax, front: Sequence[FrontierPoint]) -> None:
    """Name each frontier point below and left of it, where the staircase leaves the plot empty; a
    label that would overlap an earlier one, or leave the axes, moves down or to the right side."""
    from matplotlib.transforms import Bbox

    fig.draw_without_rendering()  # settle the layout and the autoscaled limits before measuring
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    # The frontier markers are obstacles too, so no name covers a point.
    radius = 6 * fig.dpi / 72
    centres = ax.transData.transform([(p.memory_mb, p.error) for p in front])
    placed = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in centres]
    for p in front:
        for step in range(16):
            left = step < 8
            label = ax.annotate(
                p.config, (p.memory_mb, p.error), xytext=(-5 if left else 5, -3 - 8 * (step % 8)),
                textcoords="offset points", ha="right" if left else "left", va="top", fontsize=7, color="#333333",
            )
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
            if (inside and not any(box.overlaps(other) for other in placed)) or step == 15:
                placed.append(box)
                break
            label.remove()


def _png_bytes(fig, *, dpi: int) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()

