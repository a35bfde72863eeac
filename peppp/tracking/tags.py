"""The names peppp writes into MLflow: run tags, metric keys and parent-run kinds, defined once."""

from __future__ import annotations

# cell runs
TAG_CELL_KEY = "peppp.cell_key"
TAG_STATUS = "peppp.status"
TAG_ROLE = "peppp.role"
TAG_DATASET = "peppp.dataset"
TAG_CONFIG = "peppp.config"
TAG_RECIPE = "peppp.recipe"
TAG_MESSAGE = "peppp.message"
# parent runs (sweeps, search rounds, imports, registered frontiers)
TAG_KIND = "peppp.kind"
TAG_METHOD = "peppp.method"
TAG_ROUND = "peppp.round"
TAG_PROCESS = "peppp.process"
TAG_HEARTBEAT = "peppp.heartbeat_ms"
# MLflow's own
TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"  # the description the UI shows on a run's or an experiment's page
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # what the UI opens an experiment on
EXPERIMENT_KIND_TRAINING = "custom_model_development"  # training runs (not MLflow 3's GenAI traces)

METRIC_ERROR = "test_error"
METRIC_MEMORY = "memory_mb"
METRIC_SECONDS = "train_seconds"
METRIC_LOSS = "final_loss"

KIND_SWEEP, KIND_ROUND, KIND_IMPORT, KIND_FRONTIER = "sweep", "round", "import", "frontier"
KIND_REPORT = "report"  # a chip designer's report on an experiment's formats (peppp report)
