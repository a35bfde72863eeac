"""Training recipes: the fixed procedure every cell of one error matrix is trained with.

A meta-dataset is only comparable across cells when every cell uses the same recipe, so a recipe has a
name that goes into the cell key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from peppp.errors import PepppError

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Recipe:
    """Network, optimiser settings, epochs and training-sample cap of a training run."""

    name: str
    network: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    max_train: int | None = None
    schedule: str = "constant"
    loss_scale: float = 1000.0
    width: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise PepppError(f"recipe {self.name!r}: epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise PepppError(f"recipe {self.name!r}: batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise PepppError(f"recipe {self.name!r}: lr must be > 0, got {self.lr}")
        if self.max_train is not None and self.max_train < 1:
            raise PepppError(f"recipe {self.name!r}: max_train must be >= 1 or None, got {self.max_train}")
        if self.schedule not in SCHEDULES:
            raise PepppError(f"recipe {self.name!r}: schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not self.loss_scale > 0:
            raise PepppError(f"recipe {self.name!r}: loss_scale must be > 0, got {self.loss_scale}")

    def with_overrides(
        self, *, network: str | None = None, epochs: int | None = None, seed: int | None = None, max_train: int | None = None
    ) -> Recipe:
        """The same recipe with some settings changed; the name records what changed (it keys cells)."""
        changes: dict = {}
        suffix = []
        if network is not None and network != self.network:
            changes["network"] = network
            suffix.append(f"net={network}")
        if epochs is not None and epochs != self.epochs:
            changes["epochs"] = epochs
            suffix.append(f"epochs={epochs}")
        if max_train is not None and max_train != self.max_train:
            changes["max_train"] = max_train
            suffix.append(f"max_train={max_train}")
        if seed is not None:
            changes["seed"] = seed  # a seed is a repetition of the same cell, not a different recipe
        name = self.name + ("," + ",".join(suffix) if suffix else "")
        return replace(self, name=name, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    # The paper's: CIFAR-style ResNet-18, SGD lr 0.001, momentum 0.9, wd 5e-4, batch 32, 10 epochs.
    "paper": Recipe(name="paper", network="resnet18", epochs=10, batch_size=32, lr=0.001),
    # Small enough that one cell takes a few seconds on one CPU core: a narrow 4-layer ConvNet on at
    # most 1,200 training images, with a cosine schedule so few epochs converge.
    "cpu": Recipe(
        name="cpu", network="convnet4", epochs=6, batch_size=64, lr=0.05, max_train=1200, schedule="cosine", width=8
    ),
    # A tiny recipe for smoke tests: one epoch on a few hundred images.
    "tiny": Recipe(
        name="tiny", network="convnet4", epochs=1, batch_size=64, lr=0.05, max_train=256, schedule="constant", width=4
    ),
}


def get_recipe(name: str | Recipe) -> Recipe:
    """A named preset (or the recipe itself)."""
    if isinstance(name, Recipe):
        return name
    try:
        return RECIPES[name]
    except KeyError:
        raise PepppError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
