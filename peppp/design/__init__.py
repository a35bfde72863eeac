"""Which configurations of a new dataset to train: experiment design on the configuration embeddings.

One `DesignStrategy` subclass per module; `DESIGNS` maps each registry name to its class.
"""

from __future__ import annotations

from peppp.design._base import DesignStrategy
from peppp.design.convex import ConvexAOptimal, ConvexDesign, ConvexDOptimal, ConvexEOptimal
from peppp.design.ed import ExperimentDesign
from peppp.design.ed_cost import CostAwareDesign
from peppp.design.qr import QRDesign
from peppp.design.random_design import RandomDesign
from peppp.errors import PepppError

DESIGNS: dict[str, type[DesignStrategy]] = {
    cls.name: cls
    for cls in (
        ExperimentDesign,
        CostAwareDesign,
        QRDesign,
        RandomDesign,
        ConvexDOptimal,
        ConvexAOptimal,
        ConvexEOptimal,
    )
}


def get_design(name: str, **params) -> DesignStrategy:
    """A design strategy by registry name, built with keyword `params` (PepppError for unknown ones)."""
    if name not in DESIGNS:
        raise PepppError(f"unknown design {name!r}; choose one of {', '.join(sorted(DESIGNS))}")
    try:
        return DESIGNS[name](**params)
    except TypeError as exc:
        raise PepppError(f"bad parameters for design {name!r}: {exc}") from None


__all__ = [
    "DESIGNS",
    "ConvexAOptimal",
    "ConvexDOptimal",
    "ConvexDesign",
    "ConvexEOptimal",
    "CostAwareDesign",
    "DesignStrategy",
    "ExperimentDesign",
    "QRDesign",
    "RandomDesign",
    "get_design",
]
