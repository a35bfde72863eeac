"""Reading IDX files (the MNIST / Fashion-MNIST array format), plain or gzip-compressed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from peppp.errors import PepppError

# The third magic byte names the element type; IDX numbers are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in one IDX file (`.gz` is decompressed), in native byte order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise PepppError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise PepppError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header_bytes = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_bytes = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected_bytes:
        raise PepppError(f"{path} is truncated or padded: {len(raw)} bytes, header says {expected_bytes}")
    array = np.frombuffer(raw, dtype=dtype, offset=header_bytes).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four MNIST-layout files in `folder` (keys train_images, train_labels, test_images,
    test_labels), or None when any is missing. Names follow the MNIST convention
    (`train-images-idx3-ubyte[.gz]`, `t10k-...`), with any prefix such as `emnist-letters-`."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    patterns = {
        "train_images": ("*train-images-idx3-ubyte*",),
        "train_labels": ("*train-labels-idx1-ubyte*",),
        "test_images": ("*t10k-images-idx3-ubyte*", "*test-images-idx3-ubyte*"),
        "test_labels": ("*t10k-labels-idx1-ubyte*", "*test-labels-idx1-ubyte*"),
    }
    found: dict[str, Path] = {}
    for key, globs in patterns.items():
        matches = sorted(p for g in globs for p in folder.glob(g) if p.is_file())
        if not matches:
            return None
        # Prefer the uncompressed file when both are present: it is faster to read.
        matches.sort(key=lambda p: p.suffix == ".gz")
        found[key] = matches[0]
    return found
