"""Everything peppp reaches inside MLflow beyond its public client API, in one place.

MLflow's client has no bulk writer, no one-query reader of many runs and no handle on its database.
These helpers use its private store object, its table models and its validation, as of the pinned
mlflow==3.17.2; an MLflow upgrade is checked here and nowhere else.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mlflow is imported where used: the sqlite registry reader below needs none of it
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag


def quiet_store_logs() -> None:
    """MLflow's SQL session logs every database error with its traceback before raising it; peppp
    reports each failure in one line (`store.store_errors`), so those logs only bury that line."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def store_of(client: MlflowClient):
    """The client's tracking store object (MLflow exposes it only through this attribute)."""
    return client._tracking_client.store


def sql_store(client: MlflowClient):
    """The client's SqlAlchemyStore, or None when the store is not a SQL database (e.g. a server)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = store_of(client)
    return store if isinstance(store, SqlAlchemyStore) else None


def sql_engine(client: MlflowClient):
    """The SQLAlchemy engine of a SQL store (peppp keeps its claims table there), or None."""
    store = sql_store(client)
    return None if store is None else store.engine


def finish_run(client: MlflowClient, run_id: str, *, status: str, end_ms: int, name: str) -> None:
    """Set a run's status, end time and name in one store call: the client's `set_terminated` would
    fetch the run again and, on a server, print its URL once per run."""
    from mlflow.entities import RunStatus

    store_of(client).update_run_info(run_id, run_status=RunStatus.from_string(status), end_time=end_ms, run_name=name)


def insert_runs(
    store,
    experiment_id: str,
    runs: Sequence[tuple[str, str, int, int, list[Metric], list[Param], list[RunTag]]],
) -> list[str]:
    """Write finished runs (name, status, start ms, end ms, metrics, params, tags) in one transaction
    through MLflow's table models: all or nothing, as `create_run` + `log_batch` + `set_terminated`
    per run would leave them. Returns the new run ids in order."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from mlflow.utils.uri import append_to_uri_path
    from mlflow.utils.validation import _validate_batch_log_data
    from sqlalchemy import insert

    from peppp.errors import PepppError

    experiment = store.get_experiment(experiment_id)
    if experiment.lifecycle_stage != "active":
        raise PepppError(f"experiment {experiment.name!r} is deleted; restore it or pick another name")
    run_rows, tags, params, metrics = [], [], [], []
    run_ids = []
    for name, status, start_ms, end_ms, metric_list, param_list, tag_list in runs:
        # The same checks (and truncation of over-long values) as MLflow's log_batch.
        metric_list, param_list, tag_list = _validate_batch_log_data(metric_list, param_list, tag_list)
        run_id = uuid.uuid4().hex
        run_ids.append(run_id)
        # Mirrors SqlAlchemyStore.create_run followed by set_terminated.
        run_rows.append(
            {
                "run_uuid": run_id,
                "name": name,
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": "unknown",
                "status": status,
                "start_time": start_ms,
                "end_time": end_ms,
                "deleted_time": None,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": append_to_uri_path(experiment.artifact_location, run_id, "artifacts"),
                "experiment_id": int(experiment_id),
            }
        )
        tags.extend({"run_uuid": run_id, "key": t.key, "value": t.value} for t in tag_list)
        params.extend({"run_uuid": run_id, "key": p.key, "value": p.value} for p in param_list)
        for m in metric_list:
            is_nan, value = store.sanitize_metric_value(m.value)
            metrics.append(
                {"run_uuid": run_id, "key": m.key, "value": value, "timestamp": m.timestamp, "step": m.step, "is_nan": is_nan}
            )
    with store.ManagedSessionMaker(read_only=False) as session:
        session.execute(insert(SqlRun.__table__), run_rows)
        session.execute(insert(SqlTag.__table__), tags)
        session.execute(insert(SqlParam.__table__), params)
        if metrics:
            session.execute(insert(SqlMetric.__table__), metrics)
            session.execute(insert(SqlLatestMetric.__table__), metrics)
    return run_ids


def select_finished_runs(
    store,
    experiment_id: str,
    *,
    tags: Sequence[tuple[str, str]],
    required_tags: Sequence[str],
    metrics: Sequence[str],
) -> tuple[list[tuple], list[str]]:
    """One query over MLflow's runs, tags and latest_metrics tables: a row per active FINISHED or
    FAILED run of the experiment with the given tags (label, key) as columns (runs lacking a required
    label are left out) and each metric as `key` plus `key_is_nan`. Returns (rows, column names)."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlRun, SqlTag
    from sqlalchemy import and_, select

    runs, tag_table, latest = SqlRun.__table__, SqlTag.__table__, SqlLatestMetric.__table__
    columns = [runs.c.run_uuid.label("run_id"), runs.c.start_time.label("start_time")]
    joined = runs
    # One join per tag and metric turns MLflow's key-value rows into one row per run inside the
    # database, using the (key, run_uuid) primary keys.
    for label, key in tags:
        tag = tag_table.alias(f"tag_{label}")
        on = and_(tag.c.run_uuid == runs.c.run_uuid, tag.c.key == key)
        joined = joined.join(tag, on) if label in required_tags else joined.outerjoin(tag, on)
        columns.append(tag.c.value.label(label))
    for key in metrics:
        metric = latest.alias(f"metric_{key}")
        joined = joined.outerjoin(metric, and_(metric.c.run_uuid == runs.c.run_uuid, metric.c.key == key))
        columns += [metric.c.value.label(key), metric.c.is_nan.label(f"{key}_is_nan")]
    query = (
        select(*columns)
        .select_from(joined)
        .where(
            runs.c.experiment_id == int(experiment_id),
            runs.c.lifecycle_stage == "active",
            # A run still RUNNING was cut off while it was being logged: it is no cell (yet).
            runs.c.status.in_(("FINISHED", "FAILED")),
        )
    )
    with store.ManagedSessionMaker() as session:
        rows = session.execute(query).all()
    return rows, [c.name for c in columns]


@dataclass(frozen=True)
class SqliteVersion:
    """A registered model version as read straight from a sqlite store's registry tables."""

    version: int
    aliases: tuple[str, ...]  # every alias pointing at this version
    run_id: str
    source: str
    tags: dict[str, str]


def read_model_version_sqlite(
    db_path: Path, name: str, *, alias: str | None, version: int | None, model_tag: tuple[str, str]
) -> SqliteVersion | None:
    """The version of registered model `name` that `alias` (or `version`) names, read with Python's
    sqlite3 from MLflow's registry tables (schema of mlflow 3.17), without importing MLflow (2-3 s).

    None whenever anything is not as expected (no such model, alias or version, a model without the
    `model_tag` (key, value), another schema): the caller then asks MLflow itself, which also words the
    error. Read-only; a busy database waits up to 2 s.
    """
    key, value = model_tag
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2.0) as db:
            tagged = db.execute(
                "select 1 from registered_model_tags where name = ? and key = ? and value = ?", (name, key, value)
            ).fetchone()
            if tagged is None:
                return None
            aliases = db.execute("select alias, version from registered_model_aliases where name = ?", (name,)).fetchall()
            if version is None:
                found = [int(v) for a, v in aliases if a == alias]
                if not found:
                    return None
                version = found[0]
            row = db.execute(
                "select run_id, source, status from model_versions where name = ? and version = ?", (name, version)
            ).fetchone()
            if row is None or row[2] != "READY":
                return None
            tags = dict(db.execute(
                "select key, value from model_version_tags where name = ? and version = ?", (name, version)
            ).fetchall())
    except sqlite3.Error:
        return None
    return SqliteVersion(version=int(version), aliases=tuple(sorted(a for a, v in aliases if int(v) == int(version))),
                         run_id=row[0] or "", source=row[1] or "", tags=tags)
