"""The active-sampling method interface: learn from a meta-training matrix, then, for one new dataset,
propose configurations to train, take their measured errors, and estimate every configuration's error.

Used the same way by the leave-one-out evaluation (`peppp.evaluate`) and by production
(`peppp.active.ActiveSearch`, which the `active_search` flow drives).
"""

from __future__ import annotations

import math
import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from peppp._params import Params
from peppp.errors import PepppError

# No distribution on [0, 1] has a standard deviation above 1/2; a wider estimate says nothing more.
MAX_ERROR_STD = 0.5


def usable_cores(*, cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int:
    """The cores this process may use: those it may run on (its CPU affinity where the system has one),
    and no more than its cgroup's CPU quota rounded up (`cgroup_cpus`): a container limited to 2 CPUs
    on a 64-core host gets 2, not 64 worker processes or threads that would queue for them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpus(cgroup_root=cgroup_root, proc_cgroup=proc_cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else max(1, cores)


def cgroup_cpus(*, cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The CPUs this process's cgroup may use (quota / period: 1.5 for "150000 100000"), the least over
    its cgroup and the cgroups above it, or None where none sets a limit or the files cannot be read.

    cgroup v2: `cpu.max` ("max 100000" is no limit) in the process's cgroup (`proc_cgroup`'s "0::" line)
    and its parents under `cgroup_root`; cgroup v1: `cpu.cfs_quota_us` (-1 is no limit) over
    `cpu.cfs_period_us` in the cpu controller's hierarchy (its line in `proc_cgroup`), likewise.
    """
    v2, v1 = [], []
    try:
        with open(proc_cgroup, encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.strip().split(":", 2)
                if len(fields) != 3:
                    continue
                path = [p for p in fields[2].split("/") if p and p != ".."]
                if fields[0] == "0" and fields[1] == "":
                    v2 = path
                elif "cpu" in fields[1].split(","):
                    v1 = path
    except OSError:
        pass
    limits = []
    for depth in range(len(v2), -1, -1):  # the process's own cgroup first, the root last
        text = _read_small(os.path.join(cgroup_root, *v2[:depth], "cpu.max"))
        fields = text.split() if text else []
        if len(fields) == 2:
            limits.append(_ratio(fields[0], fields[1]))
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for depth in range(len(v1), -1, -1):
            folder = os.path.join(cgroup_root, mount, *v1[:depth])
            quota = _read_small(os.path.join(folder, "cpu.cfs_quota_us"))
            period = _read_small(os.path.join(folder, "cpu.cfs_period_us"))
            if quota and period:
                limits.append(_ratio(quota, period))
    limits = [v for v in limits if v is not None]
    return min(limits) if limits else None


def _read_small(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read(256).strip()
    except OSError:
        return None


def _ratio(quota: str, period: str) -> float | None:
    """quota / period of a cgroup's CPU limit; None for no limit (-1 or "max") or text that is not one."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


@dataclass(frozen=True)
class Estimate:
    """Estimated error of every configuration; measured ones carry their measured error.

    `predicted` is the model's prediction everywhere, measured configurations included (what the
    paper's HyperDiff scores); `predicted_std` is the model's standard deviation of each prediction
    (NaN where the method cannot tell). `error` and `std` are what a user is told: at a measured
    configuration the measured error, with std 0. Standard deviations are capped at `MAX_ERROR_STD`.
    `draws` (draws x configurations), when the method has a joint model, are joint draws of the errors
    (measured ones fixed) that `probability_best` and the expected regret are computed from; without
    them the errors are taken as independent normals (`error`, `std`).
    """

    error: np.ndarray
    predicted: np.ndarray
    std: np.ndarray
    predicted_std: np.ndarray
    draws: np.ndarray | None = None


class Session(ABC):
    """One new dataset's search. Lifecycle: `propose(k)` -> train -> `observe(i, e)` ... -> `estimate()`.

    `measured`/`errors` list what was observed, in order. Proposals respect `candidates` (e.g. a memory
    cap) and, when `budget_mb` is set, the total memory of all measurements.
    """

    def __init__(self, *, memory_mb: np.ndarray, candidates: np.ndarray | None, budget_mb: float | None, seed: int):
        self.memory_mb = np.asarray(memory_mb, dtype=float)
        m = len(self.memory_mb)
        if candidates is None:
            self.candidates = np.ones(m, dtype=bool)
        else:
            mask = np.asarray(candidates)
            if mask.dtype != bool or mask.shape != (m,):
                raise PepppError(f"candidates must be a boolean mask of length {m}, got {mask.dtype} {mask.shape}")
            # A copy: the caller may drop candidates from `self.candidates` (a failed training) without
            # touching its own mask, and its later changes to that mask do not reach the session.
            self.candidates = mask.copy()
        if budget_mb is not None and not (_is_number(budget_mb) and budget_mb >= 0):
            raise PepppError(f"measurement budget {budget_mb!r} MB must be a number >= 0")
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
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise PepppError(f"propose needs an integer k >= 1, got {k!r}")
        if not self.affordable().any():
            return []
        picks = [int(i) for i in self._propose(k)]
        return picks[:k]

    def observe(self, index: int, error: float) -> None:
        """Record the measured test error of configuration `index`."""
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < len(self.memory_mb):
            raise PepppError(f"configuration index {index!r} is out of range 0..{len(self.memory_mb) - 1}")
        index = int(index)
        if index in self.measured:
            raise PepppError(f"configuration {index} was already observed")
        if not (_is_number(error) and math.isfinite(error)):
            raise PepppError(f"error {error!r} of configuration {index} is not a finite number")
        self.measured.append(index)
        self.errors.append(float(error))

    def estimate(self) -> Estimate:
        """Every configuration's estimated error and its std (measured ones: the measurement, std 0),
        with the model's own prediction and std alongside (`Estimate`)."""
        if not self.measured:
            raise PepppError("nothing is measured yet; observe at least one configuration first")
        predicted, predicted_std = self._predict()
        predicted_std = np.minimum(predicted_std, MAX_ERROR_STD)  # NaN (unknown) stays NaN
        error = predicted.copy()
        error[self.measured] = self.errors
        std = predicted_std.copy()
        std[self.measured] = 0.0
        return Estimate(error=error, predicted=predicted, std=std, predicted_std=predicted_std, draws=self._draws(error))

    def _draws(self, error: np.ndarray) -> np.ndarray | None:
        """Joint draws of every configuration's error around `error` (draws x configurations, measured
        ones fixed), or None when the method has no joint model."""
        return None

    @abstractmethod
    def _propose(self, k: int) -> Sequence[int]:
        """The next k picks among `self.affordable()`."""

    @abstractmethod
    def _predict(self) -> tuple[np.ndarray, np.ndarray]:
        """Predicted error of every configuration from the observations so far, and its standard
        deviation (NaN where the method cannot tell)."""


class ActiveMethod(Params, ABC):
    """An active-sampling method. Lifecycle (scikit-learn's): construct with keyword parameters (stored
    as given, nothing else) -> `fit(E)` on a complete meta-training error matrix (datasets x
    configurations) validates the parameters and the matrix and learns (fitted attributes end in `_`)
    -> `session(...)` per new dataset. `fit_embedded` is `fit` for a caller that has embedded the matrix
    already (the active-search flows). `get_params`, `clone` and `repr` come from `peppp._params.Params`.

    `sequential` says whether the method adapts to each measurement (the evaluation then proposes one
    configuration at a time) or designs all n up front (the evaluation asks for n at once, as the paper).
    """

    name: str = ""
    sequential: bool = False

    def fit(self, error: np.ndarray, *, observed: np.ndarray | None = None) -> ActiveMethod:
        """Learn from a complete meta-training error matrix (datasets x configurations); returns self.

        observed: which cells were measured (a boolean mask of the matrix's shape) when the others were
        completed (SoftImpute); None = all measured. Kept as `observed_` for a method that calibrates
        itself on measured values only (the default method's nested leave-one-out).
        """
        error = _meta_matrix(error)
        if observed is not None:
            mask = np.asarray(observed)
            if mask.dtype != bool or mask.shape != error.shape:
                raise PepppError(f"observed must be a boolean mask of shape {error.shape}, got {mask.dtype} {mask.shape}")
            observed = None if mask.all() else mask.copy()
        self.observed_ = observed
        self._fit(error)
        self.n_configs_ = error.shape[1]
        return self

    def fit_embedded(
        self, embeddings: np.ndarray, *, noise_std: float | None = None, error: np.ndarray | None = None,
        observed: np.ndarray | None = None,
    ) -> ActiveMethod:
        """`fit` from a meta-training matrix that is embedded already (`peppp.active.embed_meta_matrix`).

        embeddings: its configuration embeddings (k x m); noise_std: the error noise its rank-k model
        leaves unexplained (None: unknown); error: the complete matrix they came from, or None where
        the caller kept only the embeddings. A method that needs no more than the embeddings and the
        noise level overrides this to take them as they are (no second SVD, the very same numbers);
        any other fits on `error` (and `observed`, its measured cells, as `fit` takes them).
        """
        if error is None:
            raise PepppError(f"method {self.name!r} needs the completed meta-training matrix, not only its embeddings")
        return self.fit(error, observed=observed)

    def session(
        self,
        *,
        memory_mb: np.ndarray,
        candidates: np.ndarray | None = None,
        budget_mb: float | None = None,
        seed: int = 0,
    ) -> Session:
        """A new dataset's search: `memory_mb` of every configuration on it, `candidates` the mask of
        those that may be proposed (None: all), `budget_mb` the most all measurements may use together."""
        if not hasattr(self, "n_configs_"):
            raise PepppError(f"method {self.name!r} is not fitted; call fit(meta-training matrix) first")
        try:
            memory_mb = np.asarray(memory_mb, dtype=float)
        except (TypeError, ValueError):
            raise PepppError("memory_mb must hold numbers, one per configuration") from None
        if memory_mb.shape != (self.n_configs_,):
            raise PepppError(
                f"memory_mb has shape {memory_mb.shape} but the meta-training matrix has {self.n_configs_} configurations"
            )
        if not np.all(np.isfinite(memory_mb) & (memory_mb > 0)):
            raise PepppError("memory_mb must be finite and positive, one value (MB) per configuration")
        return self._session(memory_mb=memory_mb, candidates=candidates, budget_mb=budget_mb, seed=seed)

    @abstractmethod
    def _fit(self, error: np.ndarray) -> None:
        """Learn from the validated, complete matrix; store fitted attributes (ending in `_`)."""

    @abstractmethod
    def _session(self, *, memory_mb, candidates, budget_mb, seed) -> Session:
        """The method's `Session` for one new dataset (arguments as `session` takes them, validated)."""


def _meta_matrix(error) -> np.ndarray:
    try:
        error = np.asarray(error, dtype=float)
    except (TypeError, ValueError):
        raise PepppError("the meta-training error matrix must be numeric") from None
    if error.ndim != 2 or 0 in error.shape or not np.isfinite(error).all():
        raise PepppError("the meta-training error matrix must be 2-D, non-empty and fully observed (complete it first)")
    return error


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
