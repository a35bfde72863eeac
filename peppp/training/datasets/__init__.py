"""Datasets by name, offline: a package, so that the name grammar, the sources, the task assembly and the
loaders can take a module each."""

from peppp.training.datasets._sources import (
    BUILTIN_DATASETS,
    FASHION_MNIST_DEBIAN_PACKAGE,
    FASHION_MNIST_ENV,
    PATH_SOURCES,
    Dataset,
    DatasetSpec,
    TrainLoader,
    _read_array_pickle,
    available_datasets,
    fashion_mnist_dir,
    list_tasks,
    load_dataset,
    parse_dataset,
    source_installed,
    train_loader,
)

__all__ = [
    "BUILTIN_DATASETS",
    "FASHION_MNIST_DEBIAN_PACKAGE",
    "FASHION_MNIST_ENV",
    "PATH_SOURCES",
    "Dataset",
    "DatasetSpec",
    "TrainLoader",
    "available_datasets",
    "fashion_mnist_dir",
    "list_tasks",
    "load_dataset",
    "parse_dataset",
    "source_installed",
    "train_loader",
]
