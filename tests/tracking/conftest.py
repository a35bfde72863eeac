"""A fresh sqlite MLflow store per test, copied from one migrated once per session (migrations take seconds)."""

from __future__ import annotations

import math

import pytest

from peppp.cells import CellResult



def make_cell(
    dataset: str = "digits",
    config: str = "e4m3/e7m9",
    error: float = 0.25,
    memory_mb: float = 100.0,
    *,
    seed: int = 0,
    status: str = "ok",
    recipe: str = "quick",
    train_seconds: float = 2.5,
    final_loss: float = 0.7,
    message: str = "",
) -> CellResult:
    return CellResult(
        dataset=dataset,
        config=config,
        recipe=recipe,
        network="resnet18",
        seed=seed,
        error=error,
        memory_mb=memory_mb,
        train_seconds=train_seconds,
        final_loss=final_loss if status != "failed" else math.nan,
        status=status,
        message=message,
    )


@pytest.fixture
def cell():
    """Factory for a CellResult with sensible defaults: `cell("digits", "e4m3/e7m9", 0.2, 120.0)`."""
    return make_cell
