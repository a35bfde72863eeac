"""Low-rank models of the error matrix: complete it, embed the configurations, fit a new dataset's row.

A completion method is one `BaseCompleter` subclass in its own module, registered in `COMPLETERS`.
"""

from __future__ import annotations

from peppp.completion._base import BaseCompleter
from peppp.completion.embeddings import fit_row, svd_embeddings
from peppp.completion.sampling import SCHEMES, sample_mask
from peppp.completion.softimpute import SoftImpute
from peppp.errors import PepppError

COMPLETERS: dict[str, type[BaseCompleter]] = {"softimpute": SoftImpute}


def get_completer(name: str, **params) -> BaseCompleter:
    """A completer by registry name, built with keyword `params` (PepppError for an unknown name)."""
    if name not in COMPLETERS:
        raise PepppError(f"unknown completer {name!r}; choose one of {', '.join(sorted(COMPLETERS))}")
    try:
        return COMPLETERS[name](**params)
    except TypeError as exc:
        raise PepppError(f"bad parameters for completer {name!r}: {exc}") from None


__all__ = [
    "COMPLETERS",
    "SCHEMES",
    "BaseCompleter",
    "SoftImpute",
    "fit_row",
    "get_completer",
    "sample_mask",
    "svd_embeddings",
]
