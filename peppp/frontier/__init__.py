"""The estimated (memory, error) frontier of one dataset: a package, so that its concepts can take a module each."""

from peppp.frontier._value import (
    ARTIFACT_FILES,
    CSV_FILE,
    JSON_FILE,
    MAX_JSON_BYTES,
    PLOT_FILE,
    SCHEMA,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    Frontier,
    FrontierPoint,
    Recommendation,
)

__all__ = [
    "ARTIFACT_FILES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Frontier",
    "FrontierPoint",
    "Recommendation",
]
