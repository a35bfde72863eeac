"""Meta leave-one-dataset-out evaluation: how good is an estimated frontier from n measurements?

Each dataset (row of the error matrix) is held out in turn; the method meta-trains on the other rows,
picks n configurations of the held-out row to "train" (their true errors are revealed), estimates the
rest, and is scored against the held-out row's true values with the metrics of METHOD.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from peppp.completion import SoftImpute, sample_mask
from peppp.errors import PepppError
from peppp.matrices import read_matrix_csv, validate_matrices
from peppp.methods import DEFAULT_METHOD, METHODS, get_method
from peppp.pareto import budget_regret, convergence, hyperdiff

META_SAMPLE_SCHEMES = ("full", "uniform", "nonuniform")


# --------------------------------------------------------------------------------------------------
# Input: labelled matrices
# --------------------------------------------------------------------------------------------------


def load_matrices(error_csv: str, memory_csv: str, *, exclude: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read, validate and drop the `exclude`d rows of an error and a memory CSV."""
    error = read_matrix_csv(error_csv, what="error")
    memory = read_matrix_csv(memory_csv, what="memory")
    missing = [name for name in exclude if name not in error.index]
    if missing:
        raise PepppError(f"--exclude names dataset {missing[0]!r}, which is not a row of {error_csv}")
    error = error.drop(index=list(exclude))
    memory = memory.drop(index=[name for name in exclude if name in memory.index])
    return validate_matrices(error, memory, complete=True)


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaSample:
    """How the meta-training matrix is observed: fully, or a fraction of cells (uniform / cheap-first)."""

    scheme: str = "full"
    fraction: float = 1.0

    @classmethod
    def parse(cls, text: str) -> MetaSample:
        text = text.strip()
        if text == "full":
            return cls()
        scheme, sep, frac = text.partition(":")
        if scheme not in ("uniform", "nonuniform") or not sep:
            raise PepppError(f"meta-sample {text!r} is not one of full, uniform:<fraction>, nonuniform:<fraction>")
        try:
            fraction = float(frac)
        except ValueError:
            raise PepppError(f"meta-sample fraction {frac!r} is not a number in (0, 1]") from None
        if not 0 < fraction <= 1:
            raise PepppError(f"meta-sample fraction {fraction} must be in (0, 1]")
        return cls(scheme, fraction)

    def __str__(self) -> str:
        return "full" if self.scheme == "full" else f"{self.scheme}:{self.fraction:g}"


def parse_cap(text: str | float | None) -> str | float | None:
    """A memory cap: None (no cap), "median" (median of the memory matrix) or a number of MB."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "none"):
        return None
    if isinstance(text, str) and text.strip().lower() == "median":
        return "median"
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PepppError(f"memory cap {text!r} is not one of none, median or a number of MB") from None
    if not value > 0 or math.isinf(value):
        raise PepppError(f"memory cap {value} MB must be a positive finite number")
    return value


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldResult:
    """All metrics of one held-out dataset at one n."""

    dataset: str
    n: int
    measured: tuple[str, ...]
    regret: float
    hyperdiff: float
    convergence: float
    completion_error: float
    best_error_found: float
    best_error: float
    memory_spent_fraction: float


@dataclass
class EvaluationResult:
    """The folds of a leave-one-dataset-out evaluation and their means per n."""

    method: str
    n: list[int]
    rank: int
    cap: str | float | None
    meta_sample: str
    seed: int
    folds: list[FoldResult] = field(default_factory=list)
    seconds: float = 0.0

    METRICS = ("regret", "hyperdiff", "convergence", "completion_error", "best_error_found", "memory_spent_fraction")

    def to_frame(self) -> pd.DataFrame:
        """One row per (dataset, n) with every metric."""
        return pd.DataFrame([asdict(f) for f in self.folds])

    def summary(self) -> pd.DataFrame:
        """Mean over folds of every metric, one row per n, plus the standard error of regret and HyperDiff."""
        frame = self.to_frame()
        grouped = frame.groupby("n")
        table = grouped[list(self.METRICS)].mean()
        table["regret_se"] = grouped["regret"].std(ddof=1) / np.sqrt(grouped.size())
        table["hyperdiff_se"] = grouped["hyperdiff"].std(ddof=1) / np.sqrt(grouped.size())
        table["folds"] = grouped.size()
        return table.loc[self.n]

    def to_json_dict(self) -> dict:
        """The CLI's `--json` object: lists aligned with `n`, means over folds."""
        table = self.summary()
        out = {
            "method": self.method,
            "n": list(self.n),
            "rank": self.rank,
            "cap": self.cap,
            "meta_sample": self.meta_sample,
            "seed": self.seed,
        }
        for metric in self.METRICS:
            out[metric] = [float(v) for v in table[metric]]
        out["folds"] = int(table["folds"].iloc[0])
        out["seconds"] = round(self.seconds, 3)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict())


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


def meta_train_matrix(train: np.ndarray, train_memory: np.ndarray, *, meta_sample: MetaSample, rank: int, seed: int) -> np.ndarray:
    """The meta-training error matrix as the method sees it: full, or sampled then completed."""
    if meta_sample.scheme == "full":
        return train
    mask, propensity = sample_mask(
        train.shape, scheme=meta_sample.scheme, fraction=meta_sample.fraction, memory_mb=train_memory, seed=seed
    )
    weights = 1.0 / propensity if meta_sample.scheme == "nonuniform" else None
    completer = SoftImpute(rank=rank).fit(np.where(mask, train, np.nan), mask, weights=weights)
    return completer.completed_


def score_fold(*, true_error: np.ndarray, memory_mb: np.ndarray, estimate, picks: np.ndarray,
               candidates: np.ndarray, memory_scale: float) -> dict:
    """Every metric of METHOD.md for one held-out row, over the candidate configurations."""
    cand = np.flatnonzero(candidates)
    mem, truth, pred = memory_mb[cand], true_error[cand], estimate.predicted[cand]
    return {
        # The user-facing recommendation: measured configurations carry their measured error.
        "regret": budget_regret(mem, truth, estimate.error[cand]),
        # As the paper computes HyperDiff: predicted errors everywhere, measured ones included.
        "hyperdiff": hyperdiff(mem, truth, pred, memory_scale=memory_scale),
        "convergence": convergence(mem, truth, pred, memory_scale=memory_scale),
        "completion_error": float(np.linalg.norm(truth - pred) / max(np.linalg.norm(truth), 1e-12)),
        "best_error_found": float(true_error[picks].min()),
        "best_error": float(truth.min()),
        "memory_spent_fraction": float(memory_mb[picks].sum() / mem.sum()),
    }


def run_search(session, true_error: np.ndarray, n: int, *, sequential: bool):
    """Measure (reveal the true error of) configurations until `n` are measured or none is left."""
    while len(session.measured) < n:
        picks = session.propose(1 if sequential else n - len(session.measured))
        if not picks:
            break
        for index in picks:
            session.observe(index, true_error[index])
    return session


def loocv(
    error: pd.DataFrame,
    memory: pd.DataFrame,
    *,
    method: str = DEFAULT_METHOD,
    n: Sequence[int] = (3, 5, 8, 10, 15),
    rank: int = 5,
    cap: str | float | None = None,
    meta_sample: str | MetaSample = "full",
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvaluationResult:
    """Meta leave-one-dataset-out evaluation of an active-sampling `method` over labelled matrices.

    For every row: meta-train on the other rows (sampled and completed when `meta_sample` says so),
    embed the configurations by SVD (`rank` components), drop configurations above the memory `cap`,
    pick `n` configurations with the active-sampling `method` (a `peppp.methods` name, peppp's default
    unless told), estimate the row from their true errors and score the estimate. Fold `i` uses seed
    `seed + i`, so results are reproducible. `progress(done, total, dataset)` is called after each fold.
    """
    error, memory = validate_matrices(error, memory, complete=True)
    if method not in METHODS:
        raise PepppError(f"unknown method {method!r}; choose one of {', '.join(sorted(METHODS))}")
    sample = meta_sample if isinstance(meta_sample, MetaSample) else MetaSample.parse(meta_sample)
    cap = parse_cap(cap)
    ns = [int(v) for v in n]
    n_rows, n_configs = error.shape
    if n_rows < 2:
        raise PepppError(f"leave-one-out needs at least 2 datasets; the matrix has {n_rows}")
    if not ns or min(ns) < 1:
        raise PepppError(f"n must be a list of positive integers, got {list(n)}")
    E = error.to_numpy(dtype=float)
    M = memory.to_numpy(dtype=float)
    cap_mb = float(np.median(M)) if cap == "median" else cap
    candidates_all = M <= cap_mb if cap_mb is not None else np.ones_like(M, dtype=bool)
    max_n = int(candidates_all.sum(axis=1).min())
    if max(ns) > max_n:
        raise PepppError(
            f"n = {max(ns)} is larger than the {max_n} configurations available"
            + (f" under the memory cap of {cap_mb:.1f} MB" if cap_mb is not None else "")
        )
    if not 1 <= rank <= min(n_rows - 1, n_configs):
        raise PepppError(f"rank {rank} must be between 1 and {min(n_rows - 1, n_configs)} (training rows and configurations)")
    active = get_method(method, rank=rank)
    memory_scale = float(M.max())
    result = EvaluationResult(method=method, n=ns, rank=rank, cap=cap, meta_sample=str(sample), seed=seed)
    start = time.perf_counter()
    for i, name in enumerate(error.index):
        train_rows = np.arange(n_rows) != i
        active.fit(meta_train_matrix(E[train_rows], M[train_rows], meta_sample=sample, rank=rank, seed=seed + i))
        session = None
        for n_i in sorted(ns):
            # A sequential method's search for n extends its search for the smaller n; a one-shot
            # design is made afresh for each n, as the paper does.
            if session is None or not active.sequential:
                session = active.session(memory_mb=M[i], candidates=candidates_all[i], seed=seed + i)
            run_search(session, E[i], n_i, sequential=active.sequential)
            picks = np.asarray(session.measured, dtype=int)
            metrics = score_fold(true_error=E[i], memory_mb=M[i], estimate=session.estimate(), picks=picks,
                                 candidates=candidates_all[i], memory_scale=memory_scale)
            measured = tuple(str(error.columns[j]) for j in picks)
            result.folds.append(FoldResult(dataset=str(name), n=n_i, measured=measured, **metrics))
        if progress is not None:
            progress(i + 1, n_rows, str(name))
    result.seconds = time.perf_counter() - start
    return result
