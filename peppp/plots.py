"""Pictures of a meta-dataset: the error matrix as a heatmap (datasets x configurations)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


def error_heatmap(error: pd.DataFrame, path: str | os.PathLike, *, title: str = "test error", dpi: int = 110) -> Path:
    """Write `error` (datasets x configurations, NaN = not measured) as a PNG heatmap: colour is the
    test error, missing cells are grey and counted in the title, every row and column labelled."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    values = error.to_numpy(dtype=float)
    rows, cols = values.shape
    width = min(max(6.0, 0.22 * cols + 3.0), 40.0)
    height = min(max(3.5, 0.22 * rows + 2.0), 40.0)
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    ax.set_xticks(range(cols))
    ax.set_xticklabels([str(c) for c in error.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(rows))
    ax.set_yticklabels([str(r) for r in error.index], fontsize=7)
    ax.set_xlabel("precision configuration (LOW/HIGH)")
    ax.set_ylabel("dataset")
    missing = int(np.isnan(values).sum())
    ax.set_title(f"{title}: {rows} datasets x {cols} configurations, {missing} missing")
    fig.colorbar(image, ax=ax, label="test error (lower is better)", fraction=0.04, pad=0.02)
    if missing:
        ax.legend(handles=[Patch(color="#d9d9d9", label="not measured")], loc="lower right",
                  bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, borderaxespad=0.2)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
