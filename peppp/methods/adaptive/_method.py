"""The adaptive method itself: `Adaptive` (fit: the mixture from the training rows) and its session (picks
by knowledge gradient, estimates from the posterior)."""

from __future__ import annotations

import functools

import numpy as np

from peppp.errors import PepppError
from peppp.methods._base import ActiveMethod, Session, usable_cores
from peppp.methods.adaptive._acquisition import Budgets, knowledge_gradient, screening_gain
from peppp.methods.adaptive._blas import one_blas_thread
from peppp.methods.adaptive._calibration import fit_scales, scale_multipliers, squared_error, surprise_factor
from peppp.methods.adaptive._mixture import MixturePosterior, RowMixture, silverman_scale


def _one_blas_thread(method):
    """Run a session step with BLAS on one thread (`one_blas_thread`)."""

    @functools.wraps(method)
    def step(*args, **kwargs):
        with one_blas_thread():
            return method(*args, **kwargs)

    return step


class AdaptiveSession(Session):
    """One new dataset: each pick maximises the knowledge gradient over the candidates' memory budgets
    (per MB when the measurements have a memory budget); a batch of k fantasises each pick at its
    posterior mean before choosing the next. The estimate's `predicted` is the posterior mean of the
    new dataset's noise-free error (at a measured configuration: between the smoothed value and the
    measurement, as the noise model splits the residual), its `std` the posterior standard deviation
    of the error itself, times the calibration factor for the number measured (`Adaptive.calibrate`)
    and the widening its surprising measurements call for (`widening`)."""

    # Numbers of measurements at which the calibration factors are fitted; interpolated between.
    CALIBRATION_SIZES = (1, 2, 3, 5, 8, 12, 20)
    # Joint draws of the errors behind probability_best (its standard error is at most 0.011).
    DRAWS = 2048

    def __init__(self, method: Adaptive, **kwargs):
        super().__init__(**kwargs)
        self.method = method
        self._fitted_scales: tuple[np.ndarray, ...] | None = None
        # Each measurement's squared standardised error under the posterior before it, and that posterior.
        self._squared: list[float] = []
        self._before: MixturePosterior | None = None
        self._current: tuple[int, MixturePosterior, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._opening: tuple[bytes, int | None] | None = None

    @_one_blas_thread
    def _scales(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sizes, std factors, draws factors, draws spreads, reference surprises), fitted once per
        session from the training rows (and this dataset's memory, which picks the kind of cells
        measured); the candidates are those the session started with."""
        if self._fitted_scales is None:
            sizes = np.array([n for n in self.CALIBRATION_SIZES if n < self.candidates.sum()] or [1])
            std, draws, spread, reference = fit_scales(
                self.method.model_, self.memory_mb, self.candidates, sizes, rows=self.method.calibration_rows,
                seed=self.seed, workers=self.method.threads(), observed=self.method.observed_, first=self._first_pick())
            self._fitted_scales = (sizes, std, draws, spread, reference)
        return self._fitted_scales

    def std_scale(self, n_measured: int) -> float:
        """The calibration factor of the posterior std after `n_measured` measurements (1 uncalibrated)."""
        if not self.method.calibrate:
            return 1.0
        sizes, std, _, _, _ = self._scales()
        return float(np.interp(n_measured, sizes, std))

    def probability_scale(self, n_measured: int) -> tuple[float, float]:
        """The median factor of the joint draws' deviations from the mean that `probability_best` is
        computed with, and the log-std of the factor across draws (`scale_multipliers`), after
        `n_measured` measurements ((1, 0) uncalibrated)."""
        if not self.method.calibrate:
            return 1.0, 0.0
        sizes, _, draws, spread, _ = self._scales()
        return float(np.interp(n_measured, sizes, draws)), float(np.interp(n_measured, sizes, spread))

    def widening(self) -> float:
        """The factor by which this dataset's surprising measurements widen the calibrated std and
        draws (`surprise_factor`: its surprise so far against the nested leave-one-out's; 1 uncalibrated)."""
        if not self.method.calibrate or not self.measured:
            return 1.0
        while len(self._squared) < len(self.measured):
            j = len(self._squared)
            post = self._before if self._before is not None else self._posterior([], [])
            mean, var, _ = post.moments()
            cell, value = self.measured[j], self.errors[j]
            self._squared.append(squared_error(value, mean, var, cell))
            self._before = post.extended(cell, value)
        sizes, _, _, _, reference = self._scales()
        n = len(self.measured)
        return surprise_factor(float(np.mean(self._squared[:n])), float(np.interp(n, sizes, reference)))

    def _posterior(self, measured: list[int], errors: list[float]) -> MixturePosterior:
        return self.method.model_.condition(measured, errors)

    def _now(self) -> tuple[MixturePosterior, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The posterior on the measurements so far and its moments (mean, variance, signal), kept until
        the next measurement: an estimate's prediction and its draws share them."""
        if self._current is None or self._current[0] != len(self.measured):
            post = self._posterior(self.measured, self.errors)
            self._current = (len(self.measured), post, post.moments())
        return self._current[1], self._current[2]

    @_one_blas_thread
    def _propose(self, k: int):
        measured, errors = list(self.measured), list(self.errors)
        picks: list[int] = []
        for _ in range(k):
            available = self.affordable()
            available[picks] = False
            if self.budget_mb is not None:
                spent = self.memory_mb[measured].sum() if measured else 0.0
                available &= self.memory_mb <= self.budget_mb - spent + 1e-9
            choices = np.flatnonzero(available)
            if len(choices) == 0:
                break
            post = self._posterior(measured, errors)
            # (with nothing measured, `choices` are the opening choices of `_first_pick`)
            j = self._best(post, choices, len(measured)) if measured else self._first_pick()
            picks.append(j)
            if len(picks) < k:
                # Kriging believer: the pick is fantasised at its posterior mean, so the next pick
                # of the same batch goes where that measurement would leave the most regret.
                measured.append(j)
                errors.append(float(post.moments()[0][j]))
        return picks

    def _first_pick(self) -> int | None:
        """The pick from the prior among the candidates within the measurement budget (None: none
        fits), kept while the candidates stay as they are: the session's first proposal, and where the
        calibration's held-out rows start (`fit_scales`'s `first`)."""
        key = np.packbits(self.candidates).tobytes()
        if self._opening is None or self._opening[0] != key:
            choices = self.candidates.copy()
            if self.budget_mb is not None:
                choices &= self.memory_mb <= self.budget_mb + 1e-9
            pick = self._best(self._posterior([], []), np.flatnonzero(choices), 0) if choices.any() else None
            self._opening = (key, pick)
        return self._opening[1]

    def _best(self, post: MixturePosterior, choices: np.ndarray, step: int) -> int:
        method = self.method
        rng = np.random.default_rng([self.seed, step])
        # The recommendations that matter are among the current candidates (a caller may drop some).
        budgets = Budgets.of(self.memory_mb, self.candidates)
        if len(choices) > method.max_choices:
            mean, var, _ = post.moments()
            cheap = screening_gain(mean, np.sqrt(var), budgets, choices)
            choices = choices[np.argsort(-cheap, kind="stable")[: method.max_choices]]
        gain = knowledge_gradient(
            post, budgets, choices, fantasies=method.fantasies, max_components=method.max_components, rng=rng,
            workers=method.threads(),
        )
        if self.budget_mb is not None:
            gain = gain / self.memory_mb[choices]  # per MB spent, as OBOE's cost-aware design
        return int(choices[int(np.argmax(gain))])

    @_one_blas_thread
    def _predict(self):
        _, (_, var, signal) = self._now()
        signal = signal.copy()
        if self.measured:
            # A component's noise (noise_scale times the training row's) is the training row's own
            # plus the new row's. The training row's part is what the new row does not share: its
            # posterior mean, 1/noise_scale of the residual, goes back into the new row's
            # noise-free error, which then lies that far from the smoothed value to the measurement.
            S = np.asarray(self.measured)
            share = min(1.0, 1.0 / self.method.noise_scale)
            signal[S] += share * (np.asarray(self.errors) - signal[S])
        return signal, np.sqrt(var) * self.std_scale(len(self.measured)) * self.widening()

    @_one_blas_thread
    def _draws(self, error: np.ndarray) -> np.ndarray:
        """`DRAWS` joint draws of the posterior around `error`, their deviations times the factors of
        `probability_scale`."""
        post, (mean, _, _) = self._now()
        rng = np.random.default_rng([self.seed, len(self.measured), 7])
        deviation = post.draws(self.DRAWS, rng) - mean
        scale, spread = self.probability_scale(len(self.measured))
        scale *= self.widening()
        out = error[None, :] + (scale * scale_multipliers(self.DRAWS, spread, rng))[:, None] * deviation
        out[:, self.measured] = self.errors
        return out


class Adaptive(ActiveMethod):
    """Mixture-of-datasets posterior, knowledge-gradient picks (peppp's default method).

    fit: the training rows become the mixture's components (`RowMixture`), with their principal
    directions and per-row noise levels; nothing else is learned, so fitting is one truncated SVD.
    session: works in rounds (propose, measure, observe), from zero measurements on; a pick is where
    a measurement is expected to lower the recommended error of the memory budgets most.

    rank: principal directions in which the new dataset may differ from each training dataset.
    kernel_scale: the mixture's kernel width relative to the datasets' spread; None = Silverman's rule
      for the number of training rows and `rank` dimensions (`silverman_scale`).
    noise_scale: multiplies each training row's cell noise; 2 because the new row and the training row
      each carry their own.
    fantasies: quadrature points for each candidate measurement in the knowledge gradient.
    max_components, max_choices: caps that keep one pick cheap on big matrices.
    workers: threads that share one knowledge gradient's choices and the calibration's held-out rows
      (None: up to 4, one per core this process may use); nothing depends on how many. BLAS is held to
      one thread in the session's steps.
    calibrate: multiply the posterior std by a factor per number of measurements, fitted in a nested
      leave-one-out over `calibration_rows` training rows (`fit_scales`), so that +-1 std covers about
      68% of the unmeasured configurations (uncalibrated, it covers 80-88% after 3-8 measurements on
      the paper's matrix: the mixture's spread is wider than its errors); and scale the joint draws
      that `probability_best` is computed from by a second factor, itself spread log-normally across
      the draws (a scale mixture: after few measurements the spread is unsure too), both fitted in the
      same leave-one-out for the least Brier score. The held-out rows start at the session's own first
      pick. Picks do not depend on any of it.
    """

    name = "adaptive"
    sequential = True

    def __init__(
        self,
        *,
        rank: int = 5,
        kernel_scale: float | None = None,
        noise_scale: float = 2.0,
        fantasies: int = 64,
        max_components: int = 256,
        max_choices: int = 128,
        calibrate: bool = True,
        calibration_rows: int = 12,
        workers: int | None = None,
    ):
        if rank < 1:
            raise PepppError(f"rank {rank} must be a positive integer")
        if kernel_scale is not None and not kernel_scale > 0:
            raise PepppError(f"kernel_scale {kernel_scale!r} must be positive (or None for Silverman's rule)")
        if not noise_scale > 0:
            raise PepppError(f"noise_scale {noise_scale!r} must be positive")
        if not isinstance(calibrate, (bool, np.bool_)):
            raise PepppError(f"calibrate {calibrate!r} must be True or False")
        if isinstance(calibration_rows, bool) or not isinstance(calibration_rows, (int, np.integer)) or calibration_rows < 1:
            raise PepppError(f"calibration_rows {calibration_rows!r} must be a positive integer")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
            raise PepppError(f"workers {workers!r} must be a positive integer (or None for one per core, up to 4)")
        self.rank = rank
        self.kernel_scale = kernel_scale
        self.noise_scale = noise_scale
        self.fantasies = fantasies
        self.max_components = max_components
        self.max_choices = max_choices
        self.calibrate = calibrate
        self.calibration_rows = calibration_rows
        self.workers = workers

    def threads(self) -> int:
        """How many threads a knowledge gradient uses (`workers`, or one per usable core up to 4)."""
        if self.workers is not None:
            return int(self.workers)
        return max(1, min(4, usable_cores()))

    def _fit(self, error: np.ndarray) -> None:
        if error.shape[0] < 2:
            raise PepppError(f"the adaptive method needs at least 2 meta-training datasets, got {error.shape[0]}")
        basis = RowMixture.from_matrix(error, rank=self.rank)
        h = self.kernel_scale
        if h is None:
            h = silverman_scale(error.shape[0], basis.factor.shape[1])
        self.kernel_scale_ = h
        self.model_ = basis.scaled(h, self.noise_scale)

    def _session(self, *, memory_mb, candidates, budget_mb, seed):
        return AdaptiveSession(self, memory_mb=memory_mb, candidates=candidates, budget_mb=budget_mb, seed=seed)
