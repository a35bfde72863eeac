"""A task in memory: the source's classes subset, split, capped, resized and standardised (`load_dataset`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from peppp.errors import PepppError
from peppp.training.datasets._names import DatasetSpec, format_classes, parse_dataset
from peppp.training.datasets._sources import Source, load_source


@dataclass(frozen=True, eq=False)
class Dataset:
    """One task in memory: images N x C x H x W float32 standardised per channel by the training split's
    mean and std (after scaling pixels to [0, 1]); labels int64 in 0..num_classes-1, where label i stands
    for the original class classes[i]."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (height, width)
    classes: tuple[int | str, ...]
    channel_mean: tuple[float, ...]  # of the [0, 1] training pixels, before standardising
    channel_std: tuple[float, ...]

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load a task by name (see the package docstring for the grammar).

    seed fixes the train/test split of sets without a fixed one (stratified: each class gives
    round(test_fraction * its size) images to the test split, drawn from a stream seeded by (seed,
    class), so a class subset's split is the full set's split restricted to it) and the draw of a
    training-set cap. max_train caps the training split on top of the name's :n= (the smaller wins, and
    the returned name says so). data_dir is the Fashion-MNIST folder, or the torchvision download root.
    """
    spec = parse_dataset(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PepppError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise PepppError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    if max_train is not None:
        if isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 1:
            raise PepppError(f"max_train must be a positive integer or None, got {max_train!r}")
        spec = replace(spec, max_train=min(max_train, spec.max_train or max_train))
    source = load_source(spec, data_dir)

    keep = _class_indices(spec, source)
    if source.x_test is None:
        in_task = np.flatnonzero(np.isin(source.y_train, keep))
        train_rows, test_rows = _stratified_split(source.y_train[in_task], test_fraction, seed)
        x_all, y_all = source.x_train, source.y_train
        train_rows, test_rows = in_task[train_rows], in_task[test_rows]
        x_train, y_train, x_test, y_test = x_all[train_rows], y_all[train_rows], x_all[test_rows], y_all[test_rows]
    else:
        train_mask, test_mask = np.isin(source.y_train, keep), np.isin(source.y_test, keep)
        x_train, y_train = source.x_train[train_mask], source.y_train[train_mask]
        x_test, y_test = source.x_test[test_mask], source.y_test[test_mask]
    if spec.max_train is not None:
        if spec.max_train < len(keep):
            raise PepppError(
                f"training-set cap {spec.max_train} in {str(spec)!r} is below the {len(keep)} classes; "
                f"allowed at least {len(keep)}"
            )
        rows = _stratified_cap(y_train, spec.max_train, seed)
        x_train, y_train = x_train[rows], y_train[rows]
    for split, labels in (("training", y_train), ("test", y_test)):
        absent = sorted(set(keep.tolist()) - set(np.unique(labels).tolist()))
        if absent:
            shown = ", ".join(str(source.classes[i]) for i in absent)
            raise PepppError(f"{str(spec)!r}: class(es) {shown} have no {split} images; add images or drop them")

    relabel = np.full(len(source.classes), -1, dtype=np.int64)
    relabel[keep] = np.arange(len(keep))
    train_images = _to_unit_tensor(x_train, source.pixel_max, spec.image_px)
    test_images = _to_unit_tensor(x_test, source.pixel_max, spec.image_px)
    mean = train_images.mean(dim=(0, 2, 3))
    std = train_images.std(dim=(0, 2, 3), correction=0)
    # A constant channel (e.g. a border-only channel after subsetting) would divide by zero.
    std = torch.where(std > 0, std, torch.ones_like(std))
    shape = (1, -1, 1, 1)
    return Dataset(
        name=str(spec),
        x_train=((train_images - mean.view(shape)) / std.view(shape)).contiguous(),
        y_train=torch.from_numpy(relabel[y_train]),
        x_test=((test_images - mean.view(shape)) / std.view(shape)).contiguous(),
        y_test=torch.from_numpy(relabel[y_test]),
        num_classes=len(keep),
        in_channels=train_images.shape[1],
        image_size=(train_images.shape[2], train_images.shape[3]),
        classes=tuple(source.classes[i] for i in keep),
        channel_mean=tuple(mean.tolist()),
        channel_std=tuple(std.tolist()),
    )


def _class_indices(spec: DatasetSpec, source: Source) -> np.ndarray:
    """Indices into source.classes of the task's classes, in the source's class order."""
    if spec.classes is None:
        return np.arange(len(source.classes))
    by_text = {str(c): i for i, c in enumerate(source.classes)}
    missing = [str(c) for c in spec.classes if str(c) not in by_text]
    if missing:
        shown = format_classes(source.classes) if all(isinstance(c, int) for c in source.classes) else ", ".join(
            str(c) for c in source.classes
        )
        raise PepppError(
            f"class(es) {', '.join(missing)} in {str(spec)!r} are not classes of {spec.base}; its classes are {shown}"
        )
    return np.array(sorted(by_text[str(c)] for c in spec.classes), dtype=np.int64)


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        order = np.random.default_rng([seed, int(label)]).permutation(len(rows))
        # Keep at least one image of each class on either side when the class has two or more.
        n_test = min(max(round(test_fraction * len(rows)), 1), len(rows) - 1) if len(rows) > 1 else 0
        test.append(rows[order[:n_test]])
        train.append(rows[order[n_test:]])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _stratified_cap(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows of a stratified sample of n from y (all rows when n >= len(y)); class quotas by largest
    remainder with at least one per class, and per-class draws nested (a smaller cap is a subset)."""
    if n >= len(y):
        return np.arange(len(y))
    labels, counts = np.unique(y, return_counts=True)
    exact = n * counts / counts.sum()
    quota = np.maximum(np.floor(exact).astype(np.int64), 1)
    shortfall = n - int(quota.sum())
    remainder_order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for i in range(abs(shortfall)):
        if shortfall > 0:
            quota[remainder_order[i % len(quota)]] += 1
        else:  # the minimum of one per class overshot: take back from the largest quotas
            quota[np.argmax(quota)] -= 1
    rows = []
    for label, take in zip(labels, quota):
        members = np.flatnonzero(y == label)
        order = np.random.default_rng([seed, int(label), 1]).permutation(len(members))
        rows.append(members[order[:take]])
    return np.sort(np.concatenate(rows))


def _to_unit_tensor(x: np.ndarray, pixel_max: float, image_px: int | None) -> torch.Tensor:
    images = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32) / pixel_max
    if image_px is not None and images.shape[2:] != (image_px, image_px):
        images = F.interpolate(images, size=(image_px, image_px), mode="bilinear", antialias=True, align_corners=False)
    return images
