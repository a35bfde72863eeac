"""The one exception family peppp raises for bad input or an unusable store.

The CLI turns any `PepppError` into one line on stderr and exit status 2; library callers catch it
(it is also a `ValueError`, so plain `except ValueError` works too).
"""


class PepppError(ValueError):
    """Bad input, a missing resource or an unusable store, described in one line."""
