"""peppp: Pareto Estimation to Pick the Perfect Precision.

Learns the (memory, error) trade-off of low-precision training formats across many datasets and, for a
new dataset, estimates the whole Pareto frontier from a few trainings. Production jobs fetch a
registered frontier: `peppp.fetch_frontier(name).best_for(memory_mb)`.
"""

from peppp.errors import PepppError

__version__ = "0.1.0"
__all__ = ["Frontier", "PepppError", "__version__", "fetch_frontier"]


def __getattr__(name: str):
    # Lazy so that `import peppp` stays light (no MLflow, no scipy) for the CLI and the math.
    if name == "fetch_frontier":
        from peppp.registry import fetch_frontier

        return fetch_frontier
    if name == "Frontier":
        from peppp.frontier import Frontier

        return Frontier
    raise AttributeError(f"module 'peppp' has no attribute {name!r}")
