"""Meta leave-one-dataset-out evaluation: how good is an estimated frontier from n measurements?

Each dataset (row of the error matrix) is held out in turn; the method meta-trains on the other rows
(with `folds="groups"`, on the rows of other dataset groups only), picks n configurations of the
held-out row to "train" (their true errors are revealed), estimates the rest, and is scored against the
held-out row's true values with the metrics of METHOD.md, and on how far its stds and probabilities
can be trusted (coverage, calibration error).
"""

from __future__ import annotations

import inspect
import json
import math
import multiprocessing
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from peppp.completion import SoftImpute, sample_mask
from peppp.errors import PepppError
from peppp.frontier._uncertainty import draws_by_budget, probability_best_nested
from peppp.matrices import read_matrix_csv, validate_matrices
from peppp.methods import DEFAULT_METHOD, METHODS, get_method, usable_cores
from peppp.pareto import budget_picks, budget_regret, convergence, hyperdiff, least_within, true_frontier_budgets

META_SAMPLE_SCHEMES = ("full", "uniform", "nonuniform")
# How a held-out row's training rows are chosen: every other row, or the rows of other groups.
FOLD_SCHEMES = ("datasets", "groups")
# Equal-width bins of probability_best for the expected calibration error.
CALIBRATION_BINS = 10


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
    coverage: float = math.nan
    probability_best: tuple[float, ...] = ()
    truly_best: tuple[bool, ...] = ()


@dataclass
class EvaluationResult:
    """The folds of a leave-one-dataset-out evaluation and their means per n."""

    method: str
    n: list[int]
    rank: int
    cap: str | float | None
    meta_sample: str
    seed: int
    fold_scheme: str = "datasets"
    folds: list[FoldResult] = field(default_factory=list)
    seconds: float = 0.0
    jobs: int = 1  # the processes the folds ran in (`seconds` is their wall time)

    METRICS = ("regret", "hyperdiff", "convergence", "completion_error", "best_error_found", "memory_spent_fraction",
               "coverage", "calibration_error")

    def to_frame(self) -> pd.DataFrame:
        """One row per (dataset, n) with every metric (the (budget) pairs of probability_best as tuples)."""
        return pd.DataFrame([asdict(f) for f in self.folds])

    def summary(self) -> pd.DataFrame:
        """Mean over folds of every metric, one row per n, plus the standard error of regret and HyperDiff.

        `coverage` is the mean over folds (NaN folds, where the method gave no std, left out);
        `calibration_error` pools the (fold, budget) pairs of all folds at that n (`calibration_error`).
        """
        frame = self.to_frame()
        grouped = frame.groupby("n")
        table = grouped[[m for m in self.METRICS if m != "calibration_error"]].mean()
        table["calibration_error"] = [
            calibration_error(*self.calibration_pairs(n)) if n in grouped.groups else math.nan for n in table.index
        ]
        table["regret_se"] = grouped["regret"].std(ddof=1) / np.sqrt(grouped.size())
        table["hyperdiff_se"] = grouped["hyperdiff"].std(ddof=1) / np.sqrt(grouped.size())
        table["folds"] = grouped.size()
        return table.loc[self.n]

    def calibration_pairs(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """probability_best of the recommendation and whether it was truly best, over all (fold, budget)
        pairs at `n`."""
        folds = [f for f in self.folds if f.n == n]
        probability = np.array([p for f in folds for p in f.probability_best], dtype=float)
        outcome = np.array([o for f in folds for o in f.truly_best], dtype=bool)
        return probability, outcome

    def reliability(self, n: int, *, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
        """Per equal-width bin of probability_best: its pairs, mean probability and share truly best."""
        probability, outcome = self.calibration_pairs(n)
        which = np.minimum((probability * bins).astype(int), bins - 1)
        rows = []
        for b in range(bins):
            inside = which == b
            rows.append({"lower": b / bins, "upper": (b + 1) / bins, "pairs": int(inside.sum()),
                         "probability": float(probability[inside].mean()) if inside.any() else math.nan,
                         "truly_best": float(outcome[inside].mean()) if inside.any() else math.nan})
        return pd.DataFrame(rows)

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
            "fold_scheme": self.fold_scheme,
        }
        for metric in self.METRICS:
            out[metric] = [None if math.isnan(v) else float(v) for v in table[metric]]
        out["folds"] = int(table["folds"].iloc[0])
        out["seconds"] = round(self.seconds, 3)
        out["jobs"] = self.jobs
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict())


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


def meta_training(train: np.ndarray, train_memory: np.ndarray, *, meta_sample: MetaSample, rank: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The meta-training error matrix as the method sees it (full, or sampled then completed) and which
    of its cells were sampled (None: all)."""
    if meta_sample.scheme == "full":
        return train, None
    mask, propensity = sample_mask(
        train.shape, scheme=meta_sample.scheme, fraction=meta_sample.fraction, memory_mb=train_memory, seed=seed
    )
    weights = 1.0 / propensity if meta_sample.scheme == "nonuniform" else None
    completer = SoftImpute(rank=rank).fit(np.where(mask, train, np.nan), mask, weights=weights)
    return completer.completed_, mask


def calibration_error(probability: np.ndarray, outcome: np.ndarray, *, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: over `bins` equal-width bins of the stated probability, the share of
    pairs in the bin times |mean probability - share of outcomes true|, summed. NaN without pairs."""
    probability = np.asarray(probability, dtype=float)
    outcome = np.asarray(outcome, dtype=float)
    if len(probability) == 0:
        return math.nan
    which = np.minimum((probability * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(probability[inside].mean() - outcome[inside].mean())
    return float(total / len(probability))


def std_coverage(true_error: np.ndarray, estimate: np.ndarray, std: np.ndarray, unmeasured: np.ndarray) -> float:
    """Share of the `unmeasured` cells whose true error lies within estimate +- std (cells without a
    std left out; NaN when none has one)."""
    cells = unmeasured & np.isfinite(std)
    if not cells.any():
        return math.nan
    return float(np.mean(np.abs(true_error[cells] - estimate[cells]) <= std[cells]))


def recommendation_outcomes(memory_mb: np.ndarray, true_error: np.ndarray, error: np.ndarray,
                            std: np.ndarray, draws: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For every budget of the true frontier (its distinct memories, as `budget_regret`): the
    probability that the recommendation is the best within the budget, as `Frontier.best_for` states it
    (from the estimate's joint `draws` when the method gives them, else independent normals with the
    estimate's means and stds), and whether it truly is. Without draws, budgets whose candidates
    include one without a std (NaN) are left out."""
    order, sizes, picks = budget_picks(memory_mb, error, true_frontier_budgets(memory_mb, true_error))
    best_true = least_within(true_error, order, sizes)
    if draws is not None:
        return draws_by_budget(draws, order, sizes, picks)[0], true_error[picks] <= best_true
    known = np.array([np.isfinite(std[order[:k]]).all() for k in sizes], dtype=bool)
    if not known.any():
        return np.zeros(0), np.zeros(0, dtype=bool)
    sizes, picks, best_true = sizes[known], picks[known], best_true[known]
    probability = probability_best_nested(error, std, order, sizes, picks)
    return probability, true_error[picks] <= best_true


def score_fold(*, true_error: np.ndarray, memory_mb: np.ndarray, estimate, picks: np.ndarray,
               candidates: np.ndarray, memory_scale: float) -> dict:
    """Every metric of METHOD.md for one held-out row, over the candidate configurations, with the
    coverage of the estimate's stds and the (probability_best, truly best) pair of every budget."""
    cand = np.flatnonzero(candidates)
    mem, truth, pred = memory_mb[cand], true_error[cand], estimate.predicted[cand]
    unmeasured = np.ones(len(true_error), dtype=bool)
    unmeasured[picks] = False
    draws = None if estimate.draws is None else estimate.draws[:, cand]
    probability, truly_best = recommendation_outcomes(mem, truth, estimate.error[cand], estimate.std[cand], draws)
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
        "coverage": std_coverage(truth, estimate.error[cand], estimate.std[cand], unmeasured[cand]),
        "probability_best": tuple(float(p) for p in probability),
        "truly_best": tuple(bool(o) for o in truly_best),
    }


def dataset_group(name: str) -> str:
    """A dataset's group: its name up to the first "-" (cifar100-insects -> cifar100)."""
    return str(name).split("-", 1)[0]


def fold_training_rows(names: Sequence[str], folds: str = "datasets") -> np.ndarray:
    """(rows x rows) mask: row i's training rows under the fold scheme (`loocv`'s `folds`)."""
    n_rows = len(names)
    if folds == "datasets":
        return ~np.eye(n_rows, dtype=bool)
    groups = np.array([dataset_group(name) for name in names])
    return groups[:, None] != groups[None, :]


def run_search(session, true_error: np.ndarray, n: int, *, sequential: bool):
    """Measure (reveal the true error of) configurations until `n` are measured or none is left."""
    while len(session.measured) < n:
        picks = session.propose(1 if sequential else n - len(session.measured))
        if not picks:
            break
        for index in picks:
            session.observe(index, true_error[index])
    return session


@dataclass(frozen=True)
class _FoldPlan:
    """Everything a leave-one-out fold needs, picklable for a worker process."""

    E: np.ndarray
    M: np.ndarray
    train_masks: np.ndarray
    candidates: np.ndarray
    ns: list[int]
    method: str
    rank: int
    sample: MetaSample
    seed: int
    memory_scale: float
    names: list[str]
    columns: list[str]

    def run(self, i: int, active) -> list[FoldResult]:
        """Fold i: meta-train `active` on its training rows, search and score the held-out row at every n."""
        train_rows = self.train_masks[i]
        matrix, observed = meta_training(self.E[train_rows], self.M[train_rows], meta_sample=self.sample,
                                         rank=self.rank, seed=self.seed + i)
        active.fit(matrix, observed=observed)
        out = []
        session = None
        for n_i in self.ns:
            # A sequential method's search for n extends its search for the smaller n; a one-shot
            # design is made afresh for each n, as the paper does.
            if session is None or not active.sequential:
                session = active.session(memory_mb=self.M[i], candidates=self.candidates[i], seed=self.seed + i)
            run_search(session, self.E[i], n_i, sequential=active.sequential)
            picks = np.asarray(session.measured, dtype=int)
            metrics = score_fold(true_error=self.E[i], memory_mb=self.M[i], estimate=session.estimate(), picks=picks,
                                 candidates=self.candidates[i], memory_scale=self.memory_scale)
            measured = tuple(self.columns[j] for j in picks)
            out.append(FoldResult(dataset=self.names[i], n=n_i, measured=measured, **metrics))
        return out


# A worker process's fold plan and method (`_start_fold_worker`).
_WORKER: dict = {}


# Starting the worker processes costs about 0.6 s (2026-12-01, 2 cores): a leave-one-out of the default
# method on 20 x 30 took 2.7 s in one process and 1.5 s in two, on 8 x 10 0.3 s and 0.7 s.
AUTO_JOBS_MIN_CELLS = 500


def auto_jobs(n_rows: int, n_configs: int) -> int:
    """The worker processes `loocv(jobs="auto")` runs the folds in: one per usable core (`usable_cores`),
    at most one per fold, once the matrix has `AUTO_JOBS_MIN_CELLS` cells; 1 below that, where starting
    the processes would cost more than they save. The results do not depend on it."""
    if n_rows * n_configs < AUTO_JOBS_MIN_CELLS:
        return 1
    return max(1, min(usable_cores(), n_rows))


def _start_fold_worker(plan: _FoldPlan, cores: int) -> None:
    """A worker's method gets its share of the cores (if it takes `workers`), and BLAS one thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    options = {"rank": plan.rank}
    if "workers" in inspect.signature(METHODS[plan.method]).parameters:
        options["workers"] = max(1, cores)
    _WORKER["plan"], _WORKER["active"] = plan, METHODS[plan.method](**options)


def _run_fold_in_worker(i: int) -> list[FoldResult]:
    return _WORKER["plan"].run(i, _WORKER["active"])


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
    folds: str = "datasets",
    progress: Callable[[int, int, str], None] | None = None,
    jobs: int | str = 1,
) -> EvaluationResult:
    """Meta leave-one-dataset-out evaluation of an active-sampling `method` over labelled matrices.

    For every row: meta-train on the other rows (sampled and completed when `meta_sample` says so),
    embed the configurations by SVD (`rank` components), drop configurations above the memory `cap`,
    pick `n` configurations with the active-sampling `method` (a `peppp.methods` name, peppp's default
    unless told), estimate the row from their true errors and score the estimate. Fold `i` uses seed
    `seed + i`, so results are reproducible. `progress(done, total, dataset)` is called after each fold.

    folds: "datasets" trains on every other row; "groups" also drops the held-out row's group (the
    part of each row name before the first "-", `dataset_group`) from the training rows, so the method
    meets a dataset unlike any it was trained on.
    jobs: folds run in this many worker processes at once (each fold is independent and seeded, so the
    result is the same; a method with a `workers` parameter gets the cores shared out among the
    processes). `progress` is then called as folds finish, in any order. The workers are spawned, so a
    script that calls this with jobs > 1 needs the usual `if __name__ == "__main__":` guard. "auto":
    one per usable core on all but small matrices (`auto_jobs`); the CLI's default.
    """
    error, memory = validate_matrices(error, memory, complete=True)
    if method not in METHODS:
        raise PepppError(f"unknown method {method!r}; choose one of {', '.join(sorted(METHODS))}")
    sample = meta_sample if isinstance(meta_sample, MetaSample) else MetaSample.parse(meta_sample)
    cap = parse_cap(cap)
    ns = [int(v) for v in n]
    if folds not in FOLD_SCHEMES:
        raise PepppError(f"folds {folds!r} is not one of {', '.join(FOLD_SCHEMES)}")
    n_rows, n_configs = error.shape
    train_masks = fold_training_rows(list(error.index), folds)
    n_train = int(train_masks.sum(axis=1).min())
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
    if n_train < 2:
        raise PepppError(f"with --folds {folds}, a fold keeps only {n_train} training dataset(s); at least 2 are needed")
    if not 1 <= rank <= min(n_train, n_configs):
        raise PepppError(f"rank {rank} must be between 1 and {min(n_train, n_configs)} (training rows and configurations)")
    automatic = isinstance(jobs, str) and jobs == "auto"
    if automatic:
        jobs = auto_jobs(n_rows, n_configs)
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise PepppError(f"jobs {jobs!r} must be a positive integer or 'auto'")
    plan = _FoldPlan(E=E, M=M, train_masks=train_masks, candidates=candidates_all, ns=sorted(ns), method=method,
                     rank=rank, sample=sample, seed=seed, memory_scale=float(M.max()),
                     names=[str(v) for v in error.index], columns=[str(v) for v in error.columns])
    result = EvaluationResult(method=method, n=ns, rank=rank, cap=cap, meta_sample=str(sample), seed=seed,
                              fold_scheme=folds)
    start = time.perf_counter()
    jobs = result.jobs = min(int(jobs), n_rows)
    pool = None
    if jobs > 1:
        try:
            context = multiprocessing.get_context("spawn")  # a clean interpreter: no threads or locks of ours forked
            pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_fold_worker,
                                       initargs=(plan, usable_cores() // jobs))
        except (OSError, NotImplementedError) as exc:  # no semaphores here (e.g. no /dev/shm)
            if not automatic:
                raise PepppError(f"cannot start {jobs} worker processes here ({exc}); run the folds with jobs 1") from None
            warnings.warn(f"running the folds in this process: worker processes cannot start here ({exc})",
                          RuntimeWarning, stacklevel=2)
            jobs = result.jobs = 1
    if pool is None:
        active = get_method(method, rank=rank)
        for i in range(n_rows):
            result.folds.extend(plan.run(i, active))
            if progress is not None:
                progress(i + 1, n_rows, plan.names[i])
    else:
        by_fold = {}
        try:
            pending = {pool.submit(_run_fold_in_worker, i): i for i in range(n_rows)}
            for done, future in enumerate(as_completed(pending), start=1):
                i = pending[future]
                by_fold[i] = future.result()
                if progress is not None:
                    progress(done, n_rows, plan.names[i])
        finally:
            # a failed fold (or an interrupt) stops the folds not yet started
            pool.shutdown(wait=True, cancel_futures=True)
        for i in range(n_rows):
            result.folds.extend(by_fold[i])
    result.seconds = time.perf_counter() - start
    return result
