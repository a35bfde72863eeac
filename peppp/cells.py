"""What one cell of the error matrix is: a (dataset, configuration, recipe) key and its training result.

Shared by the training engine (which produces results), tracking (which logs and rebuilds them) and
the flows; imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from peppp._checks import MAX_LABEL_CHARS
from peppp.errors import PepppError

STATUSES = ("ok", "diverged", "failed")


@dataclass(frozen=True)
class CellKey:
    """A stable identity for one cell: the same dataset, configuration and recipe is the same cell."""

    dataset: str
    config: str
    recipe: str

    def __str__(self) -> str:
        return f"{self.dataset}|{self.config}|{self.recipe}"


@dataclass(frozen=True)
class CellResult:
    """One training of one cell: test error (1 - top-1 accuracy), analytic memory and how it went."""

    dataset: str
    config: str
    recipe: str
    network: str
    seed: int
    error: float
    memory_mb: float
    train_seconds: float
    final_loss: float
    status: str = "ok"
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        for what in ("dataset", "recipe", "network"):
            # A longer label would be cut by the store (two cells becoming one), so it is refused here.
            value = getattr(self, what)
            if isinstance(value, str) and len(value) > MAX_LABEL_CHARS:
                raise PepppError(f"{what} {value[:40]!r}... is {len(value)} characters long; at most {MAX_LABEL_CHARS} are kept")

    @property
    def key(self) -> CellKey:
        return CellKey(self.dataset, self.config, self.recipe)

    def to_dict(self) -> dict:
        return asdict(self)
