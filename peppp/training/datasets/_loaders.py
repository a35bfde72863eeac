"""The seeded shuffling loader over a task's training split."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from peppp.errors import PepppError
from peppp.training.datasets._tasks import Dataset


class TrainLoader:
    """Shuffled mini-batches (x, y) of a dataset's training split, from tensors already in memory.

    Lifecycle: build once per training run; each `for batch in loader` is one epoch with a fresh
    permutation drawn from the loader's own generator, seeded once, so the epochs differ from each other
    but the whole sequence depends only on the seed.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, seed: int, drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise PepppError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = self.dataset.n_train
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # drawn on the CPU (the same order on every device), gathered where the data lives: a training
        # split on a GPU takes one copy of the order per epoch, none per batch
        order = torch.randperm(self.dataset.n_train, generator=self._generator).to(self.dataset.x_train.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield self.dataset.x_train[rows], self.dataset.y_train[rows]


def train_loader(dataset: Dataset, *, batch_size: int, seed: int, drop_last: bool = False) -> TrainLoader:
    """A seeded shuffling loader over the training split (see TrainLoader)."""
    return TrainLoader(dataset, batch_size=batch_size, seed=seed, drop_last=drop_last)
