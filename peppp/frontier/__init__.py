"""The estimated (memory, error) frontier of one dataset as a value: JSON schema, CSV, plot, best_for(budget).

No MLflow; pandas and matplotlib load only inside the methods that use them. Reading is JSON only, never pickle.
`_value` holds Frontier and Recommendation, `_point` FrontierPoint, `_schema` frontier.json, `_uncertainty`
how sure a pick is, `_plot` the PNG; the files are written whole by `peppp._io`.
"""

from peppp.frontier._point import BudgetLevel, FrontierPoint
from peppp.frontier._schema import (
    ARTIFACT_FILES,
    CSV_FILE,
    JSON_FILE,
    MAX_JSON_BYTES,
    PLOT_FILE,
    SCHEMA,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
)
from peppp.frontier._value import Frontier, Recommendation, mb_decimals

__all__ = [
    "ARTIFACT_FILES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "BudgetLevel",
    "Frontier",
    "FrontierPoint",
    "Recommendation",
    "mb_decimals",
]
