"""The parameters base of designs, completers and methods: keyword constructor parameters, stored as given.

scikit-learn's convention: the constructor takes keyword-only parameters, stores each under its own
name and does nothing else (no validation, no state); `fit` (or `select`) validates them, and fitted
state ends in `_` and exists only after `fit`. Logging, cloning and `repr` then read the parameters back.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

_P = TypeVar("_P", bound="Params")


class Params:
    """Mixin giving `get_params`, `clone` and `repr` from the keyword-only constructor parameters."""

    @classmethod
    def _param_names(cls) -> list[str]:
        return [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind is p.KEYWORD_ONLY
        ]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters by name, as given (the values a clone is built with)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def clone(self: _P) -> _P:
        """A new unfitted object with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
