"""Active search on a new dataset: which configurations to train next, and the estimate from those trained.

Pure numpy state: no MLflow, no Prefect. The flows feed it measurements and ask it what to train; a
`peppp.methods` session proposes and estimates, the same code `peppp evaluate` scores.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from peppp.completion import SoftImpute, svd_embeddings
from peppp.errors import PepppError
from peppp.frontier import Frontier
from peppp.methods import get_method
from peppp.methods.design_fit import residual_noise_std


@dataclass(frozen=True)
class MetaModel:
    """What a new dataset's search needs from the meta-training matrix.

    `embeddings` (k x m) are the configuration embeddings; `noise_std` is the root-mean-square residual
    of the meta-training rows around their rank-k fit (per residual degree of freedom), the error
    noise the low-rank model leaves unexplained; None when k equals the number of configurations.
    `completed` is the matrix the embeddings came from (observed cells kept, missing cells completed);
    `observed` marks its measured cells (None: all).
    """

    embeddings: np.ndarray
    noise_std: float | None
    completed: np.ndarray
    observed: np.ndarray | None = None


def embed_meta_matrix(error: np.ndarray, *, rank: int, seed: int = 0) -> MetaModel:
    """Complete a (datasets x configurations) error matrix if it has missing cells, then embed it.

    Missing cells (NaN) are filled by SoftImpute with the same rank cap; the embeddings are the top
    `rank` right singular vectors (METHOD.md, meta-training steps 2 and 3).
    """
    try:
        E = np.array(error, dtype=float)
    except (TypeError, ValueError):
        raise PepppError("the meta-training error matrix must be numeric") from None
    if E.ndim != 2 or 0 in E.shape:
        raise PepppError(f"the meta-training error matrix must be a non-empty 2-D matrix, got shape {E.shape}")
    n_rows, n_configs = E.shape
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 1 <= rank <= min(E.shape):
        raise PepppError(
            f"rank {rank!r} must be an integer between 1 and {min(E.shape)} "
            f"(the meta-training matrix has {n_rows} datasets and {n_configs} configurations)"
        )
    observed = np.isfinite(E)
    empty_columns = np.flatnonzero(~observed.any(axis=0))
    if len(empty_columns):
        raise PepppError(
            f"configuration column {int(empty_columns[0])} of the meta-training matrix has no measurement; "
            "train it on at least one dataset or drop it"
        )
    if not observed.all():
        E = SoftImpute(rank=int(rank), seed=seed).fit(E, observed).completed_
    Y = svd_embeddings(E, int(rank))
    return MetaModel(embeddings=Y, noise_std=residual_noise_std(E, Y), completed=E,
                     observed=None if observed.all() else observed)


class ActiveSearch:
    """The active-search state of one new dataset: what is measured, what failed, the runs behind each
    measurement, the memory cap and the budget, over one session of a `peppp.methods` method, which
    proposes what to train and estimates the rest (the same code `peppp evaluate` scores).

    Lifecycle: build it with every configuration's embedding (Y, k x m) and its memory on this dataset;
    then repeat `next_batch(size)` -> train those -> `observe(index, error)` (or `observe_failure(index)`
    when training failed) until `done`; `estimate()` and `frontier(...)` work after the first
    observation. Measurements made earlier (a resumed search) are fed to `observe` before the first
    `next_batch`, so nothing is trained twice.

    Stopping: `n` measurements, or no candidate left: candidates are the configurations within the
    memory cap `cap_mb` whose memory still fits in what is left of `budget_mb` (the total memory of all
    measurements, as in OBOE's cost-aware design), and that were neither measured nor failed.
    `method` is a `peppp.methods` name, fitted by `fit_embedded`: a design method (`ed`, the paper's
    ED-MF, and its baselines) takes the embeddings and `noise_std` as given and fits the row by least
    squares; the adaptive method fits on `meta_error`, the completed meta-training matrix (and
    `meta_observed`, its measured cells, which its calibration keeps to).
    """

    def __init__(
        self,
        configs: Sequence[str],
        embeddings: np.ndarray,
        memory_mb: Sequence[float] | np.ndarray,
        *,
        method: str = "ed",
        n: int,
        cap_mb: float | None = None,
        budget_mb: float | None = None,
        seed: int = 0,
        noise_std: float | None = None,
        meta_error: np.ndarray | None = None,
        meta_observed: np.ndarray | None = None,
    ) -> None:
        self.configs = tuple(str(c) for c in configs)
        m = len(self.configs)
        if m == 0:
            raise PepppError("active search needs at least one configuration")
        if len(set(self.configs)) != m:
            dup = next(c for c in self.configs if self.configs.count(c) > 1)
            raise PepppError(f"configuration {dup!r} appears twice; each must appear once")
        try:
            Y = np.array(embeddings, dtype=float)
            memory = np.array(memory_mb, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise PepppError("embeddings and memory_mb must be numeric") from None
        if Y.ndim != 2 or Y.shape[1] != m or Y.shape[0] < 1 or not np.all(np.isfinite(Y)):
            raise PepppError(f"embeddings must be a finite k x {m} matrix (one column per configuration), got shape {Y.shape}")
        if memory.shape != (m,) or not np.all(np.isfinite(memory) & (memory > 0)):
            raise PepppError(f"memory_mb must hold {m} finite positive values (one per configuration)")
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise PepppError(f"n={n!r} must be a positive integer (the number of configurations to measure)")
        for name, value in (("cap_mb", cap_mb), ("budget_mb", budget_mb), ("noise_std", noise_std)):
            if value is not None and not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise PepppError(f"{name}={value!r} must be None or a finite number >= 0")
        self.embeddings = Y
        self.memory_mb = memory
        self.method = method
        self.n = int(n)
        self.cap_mb = None if cap_mb is None else float(cap_mb)
        self.budget_mb = None if budget_mb is None else float(budget_mb)
        self.seed = int(seed)
        self.noise_std = None if noise_std is None else float(noise_std)
        self.within_cap = memory <= self.cap_mb if self.cap_mb is not None else np.ones(m, dtype=bool)
        if not self.within_cap.any():
            cheapest = int(np.argmin(memory))
            raise PepppError(
                f"memory cap {self.cap_mb:g} MB is below every configuration's memory; the cheapest, "
                f"{self.configs[cheapest]}, needs {memory[cheapest]:.3f} MB"
            )
        model = get_method(method, rank=Y.shape[0]).fit_embedded(
            Y, noise_std=self.noise_std, error=None if meta_error is None else np.asarray(meta_error, dtype=float),
            observed=meta_observed,
        )
        self._session = model.session(
            memory_mb=memory, candidates=self.within_cap.copy(), budget_mb=self.budget_mb, seed=self.seed
        )
        self._run_ids: dict[int, tuple[str, ...]] = {}
        self._failed: set[int] = set()

    # -- state ---------------------------------------------------------------------------------------

    @property
    def measured(self) -> list[int]:
        """Indices of the measured configurations, in the order they were observed."""
        return list(self._session.measured)

    @property
    def failed(self) -> list[int]:
        return sorted(self._failed)

    @property
    def measured_errors(self) -> np.ndarray:
        return np.array(self._session.errors, dtype=float)

    @property
    def spent_mb(self) -> float:
        """Total memory of the measured configurations (what the budget counts)."""
        return float(sum(self.memory_mb[i] for i in self._session.measured))

    @property
    def remaining_mb(self) -> float:
        return math.inf if self.budget_mb is None else self.budget_mb - self.spent_mb

    def candidates(self) -> np.ndarray:
        """Mask of the configurations that may still be picked (see the class docstring)."""
        open_ = self.within_cap & (self.memory_mb <= self.remaining_mb)
        taken = self.measured + list(self._failed)
        open_[taken] = False
        return open_

    @property
    def done(self) -> bool:
        return len(self._session.measured) >= self.n or not self.candidates().any()

    # -- the loop ------------------------------------------------------------------------------------

    def next_batch(self, size: int = 1) -> list[int]:
        """Up to `size` configurations to train next (fewer near `n` or the budget; [] when done)."""
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise PepppError(f"batch size {size!r} must be a positive integer")
        if self.done:
            return []
        size = min(int(size), self.n - len(self._session.measured))
        open_ = self.candidates()
        return [i for i in self._session.propose(size) if open_[i]]

    def observe(self, index: int, error: float, run_ids: Sequence[str] = ()) -> None:
        """Record the measured test error of configuration `index` (and the runs it came from)."""
        index = self._index(index)
        if not (_is_number(error) and math.isfinite(error) and 0.0 <= error <= 1.0):
            raise PepppError(f"error {error!r} of {self.configs[index]} must be a finite number in [0, 1]")
        if index in self._session.measured:
            raise PepppError(f"configuration {self.configs[index]} is already measured; each is measured once")
        if isinstance(run_ids, str):
            run_ids = (run_ids,)
        self._failed.discard(index)
        self._session.observe(index, float(error))
        self._run_ids[index] = tuple(str(r) for r in run_ids)

    def observe_failure(self, index: int) -> None:
        """Record that configuration `index` could not be trained: it is not picked again."""
        index = self._index(index)
        if index in self._session.measured:
            raise PepppError(f"configuration {self.configs[index]} is already measured; it cannot fail now")
        self._failed.add(index)
        self._session.candidates[index] = False

    # -- the estimate --------------------------------------------------------------------------------

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """The method's predicted error of every configuration, measured ones included, and its std.

        Both come from the method's session (`Estimate.predicted` and `Estimate.predicted_std`). For
        the design methods: the least-squares fit on the embeddings and the std of its prediction of a
        new measurement, pooled with `noise_std` (`peppp.methods.design_fit.prediction_std`), NaN where
        unknown. The std is capped at `peppp.methods.MAX_ERROR_STD`.
        """
        if not self._session.measured:
            raise PepppError("nothing is measured yet; observe at least one configuration before estimating")
        estimate = self._session.estimate()
        return estimate.predicted, estimate.predicted_std

    def frontier(
        self,
        dataset: str,
        meta_experiment: str,
        method: str | None = None,
        *,
        recipe: str = "",
        fit_run_ids: Sequence[str] = (),
    ) -> Frontier:
        """Every configuration with its memory and error: measured where measured (std 0, its runs),
        else the estimate (its std, `fit_run_ids` = the runs that estimated it); with the method's
        joint draws, how sure each memory level's pick is (`Frontier.budgets`)."""
        if not self._session.measured:
            raise PepppError("nothing is measured yet; observe at least one configuration before estimating")
        estimate = self._session.estimate()
        predicted, std, draws = estimate.predicted, estimate.predicted_std, estimate.draws
        m = len(self.configs)
        measured = _mask(m, self.measured)
        error = predicted.copy()
        error_std = std.copy()
        run_ids: list[tuple[str, ...]] = [tuple(fit_run_ids)] * m
        for i, value in zip(self._session.measured, self._session.errors):
            error[i] = value
            error_std[i] = 0.0
            run_ids[i] = self._run_ids[i]
        return Frontier.from_estimates(
            dataset=dataset,
            meta_experiment=meta_experiment,
            configs=self.configs,
            memory_mb=self.memory_mb,
            error=error,
            error_std=error_std,
            measured=measured,
            run_ids=run_ids,
            method=self.method if method is None else method,
            recipe=recipe,
            draws=draws,
        )

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < len(self.configs):
            raise PepppError(f"configuration index {index!r} is out of range 0..{len(self.configs) - 1}")
        return int(index)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _mask(size: int, indices: Sequence[int]) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[list(indices)] = True
    return mask
