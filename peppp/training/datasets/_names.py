"""Task names: the grammar (in the package docstring), parsing a name into a DatasetSpec and writing it
back canonically."""

from __future__ import annotations

import re
from dataclasses import dataclass

from peppp.errors import PepppError

BUILTIN_DATASETS = ("digits", "fashion-mnist", "mnist-5k", "animal-mnist")
PATH_SOURCES = ("idx", "npz", "folder", "torchvision")
_MAX_IMAGE_PX = 1024


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
            name += f"[{format_classes(self.classes)}]"
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
    """Parse a task name (grammar in the package docstring); raise PepppError on anything malformed."""
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


def format_classes(classes: tuple[int | str, ...]) -> str:
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
