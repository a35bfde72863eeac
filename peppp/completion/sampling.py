"""Which cells of a meta-training matrix to observe: uniformly, or favouring cheap low-memory cells."""

from __future__ import annotations

import numpy as np

from peppp.errors import PepppError

SCHEMES = ("uniform", "nonuniform")


def _inverse_memory_propensity(memory: np.ndarray, fraction: float) -> np.ndarray:
    """p = min(1, c / memory) with c chosen so that mean(p) == fraction exactly (water-filling)."""
    inverse = 1.0 / memory
    v = np.sort(inverse.ravel())[::-1]
    n = len(v)
    # If the t largest are capped at 1, the rest share fraction * n - t: c_t = (f n - t) / sum(v[t:]).
    # The answer is the first t whose next value is not capped under c_t.
    t = np.arange(n)
    tail = np.cumsum(v[::-1])[::-1]
    c = (fraction * n - t) / tail
    first = int(np.argmax(c * v <= 1.0 + 1e-12))
    return np.minimum(1.0, c[first] * inverse)


def _cover_rows_and_columns(mask: np.ndarray, propensity: np.ndarray, rng: np.random.Generator) -> None:
    """Observe one extra cell in every empty row, then every empty column (in place).

    The added cell is drawn with probability proportional to the propensity, so the cover keeps the
    scheme's preference (cheap cells under the non-uniform scheme).
    """
    for axis in (1, 0):
        empty = np.flatnonzero(~mask.any(axis=axis))
        for line in empty:
            p = propensity[line] if axis == 1 else propensity[:, line]
            pick = rng.choice(len(p), p=p / p.sum())
            if axis == 1:
                mask[line, pick] = True
            else:
                mask[pick, line] = True


def sample_mask(
    shape: tuple[int, int],
    *,
    scheme: str = "uniform",
    fraction: float = 0.2,
    memory_mb: np.ndarray | None = None,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the observed cells of a (datasets x configurations) matrix; returns (mask, propensity).

    - "uniform": every cell independently with probability `fraction`.
    - "nonuniform": probability proportional to 1 / memory_mb (a full matrix or one value per
      configuration), capped at 1 and scaled so that the mean probability is `fraction`.
    Every row and column gets at least one observed cell (drawn by propensity when the draw left it
    empty). `propensity` is each cell's sampling probability under the scheme; SoftImpute weights are
    1 / propensity.
    """
    try:
        n_rows, n_cols = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise PepppError(f"shape={shape!r} must be two integers (rows, columns)") from None
    if n_rows < 1 or n_cols < 1:
        raise PepppError(f"shape={shape!r} must have at least one row and one column")
    if scheme not in SCHEMES:
        raise PepppError(f"scheme={scheme!r} is unknown; choose one of {', '.join(SCHEMES)}")
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise PepppError(f"fraction={fraction!r} must be a number in (0, 1]") from None
    if not 0 < fraction <= 1:
        raise PepppError(f"fraction={fraction!r} must be in (0, 1]")
    rng = np.random.default_rng(seed)
    if scheme == "uniform":
        propensity = np.full((n_rows, n_cols), fraction)
    else:
        if memory_mb is None:
            raise PepppError("scheme 'nonuniform' needs memory_mb (the memory of every cell or configuration)")
        memory = np.asarray(memory_mb, dtype=float)
        if memory.shape not in ((n_rows, n_cols), (n_cols,)):
            raise PepppError(
                f"memory_mb has shape {memory.shape}; give shape {(n_rows, n_cols)} or one value per configuration ({n_cols})"
            )
        if not np.all(np.isfinite(memory) & (memory > 0)):
            raise PepppError("memory_mb must be finite and positive in every cell")
        # One value per configuration: every row shares the same probabilities, so solve on one row.
        propensity = np.array(np.broadcast_to(_inverse_memory_propensity(memory, fraction), (n_rows, n_cols)))
    mask = rng.random((n_rows, n_cols)) < propensity
    _cover_rows_and_columns(mask, propensity, rng)
    return mask, propensity
