"""Active-sampling methods: which configurations of a new dataset to train, and the estimate they give.

One `ActiveMethod` per module; `METHODS` maps names to factories taking the embedding `rank`.
`DEFAULT_METHOD` is the one peppp uses unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from peppp.design import DESIGNS
from peppp.errors import PepppError
from peppp.methods._base import MAX_ERROR_STD, ActiveMethod, Estimate, Session, usable_cores
from peppp.methods.adaptive import Adaptive
from peppp.methods.design_fit import DesignFit

METHODS: dict[str, Callable[..., ActiveMethod]] = {
    name: (lambda name: lambda *, rank=5: DesignFit(design=name, rank=rank))(name) for name in DESIGNS
}
METHODS["adaptive"] = lambda *, rank=5: Adaptive(rank=rank)

DEFAULT_METHOD = "adaptive"


def get_method(name: str, *, rank: int = 5) -> ActiveMethod:
    """An unfitted method by name (PepppError listing the valid names for an unknown one)."""
    if name not in METHODS:
        raise PepppError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name](rank=rank)


__all__ = [
    "DEFAULT_METHOD",
    "MAX_ERROR_STD",
    "METHODS",
    "ActiveMethod",
    "Adaptive",
    "DesignFit",
    "Estimate",
    "Session",
    "get_method",
    "usable_cores",
]
