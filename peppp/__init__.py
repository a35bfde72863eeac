"""peppp: Pareto Estimation to Pick the Perfect Precision.

Learns the (memory, error) trade-off of low-precision training formats across many datasets and, for a
new dataset, estimates the whole Pareto frontier from a few trainings.
"""

from peppp.errors import PepppError

__version__ = "0.1.0"
__all__ = ["PepppError", "__version__"]
