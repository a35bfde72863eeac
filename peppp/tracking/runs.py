"""Runs in: one MLflow child run per trained cell, under a parent run per sweep, round or import.

A cell run carries params (dataset, config, low, high, network, recipe, seed), metrics (`test_error`,
`memory_mb`, `train_seconds`, `final_loss`; a NaN metric means "not measured" and is not logged) and
tags (`peppp.cell_key`, `peppp.status`, `peppp.role`, `peppp.dataset`, `peppp.config`, `peppp.recipe`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from peppp.cells import CellResult
from peppp.errors import PepppError
from peppp.formats import parse_config
from peppp.tracking._mlflow_private import finish_run, insert_runs, sql_store
from peppp.tracking.tags import (  # noqa: F401 - the cell tags, also imported from here
    METRIC_ERROR,
    METRIC_LOSS,
    METRIC_MEMORY,
    METRIC_SECONDS,
    TAG_CELL_KEY,
    TAG_CONFIG,
    TAG_DATASET,
    TAG_KIND,
    TAG_MESSAGE,
    TAG_NOTE,
    TAG_PARENT,
    TAG_RECIPE,
    TAG_ROLE,
    TAG_RUN_NAME,
    TAG_STATUS,
)
from peppp.tracking.liveness import HEARTBEAT_INTERVAL_S, Heartbeat, liveness_tags
from peppp.tracking.store import connect, first_line, get_or_create_experiment, search_all_runs
from peppp.tracking.tags import KIND_ROUND, TAG_METHOD

ROLES = ("meta", "probe")
MESSAGE_CHARS = 2000
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class _RunRecord:
    """Everything one cell run holds, built once so the per-run and the bulk writers agree."""

    name: str
    status: str
    start_ms: int
    end_ms: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def cell_run_name(result: CellResult) -> str:
    """A readable run name, e.g. `fashion-mnist[0,1]|e4m3/e7m9`."""
    return f"{result.dataset}|{result.config}"


def cell_description(result: CellResult, *, role: str) -> str:
    """What a cell run is, in words, for its page in MLflow's UI (the metrics keep the exact values)."""
    config = parse_config(result.config)
    if config.is_fp32:
        how = "in fp32 (the unquantized baseline)"
    else:
        how = (f"under {config}: {config.low} on activations, weights and their gradients, {config.high} on "
               "momentum, master weights, input and logits")
    what = "meta-training cell" if role == "meta" else "active-search measurement"
    text = (f"peppp {what}: {result.dataset} trained {how}; recipe {result.recipe} ({result.network}), "
            f"seed {result.seed}. Status {result.status}")
    if result.status != "failed":
        text += f": test error {result.error:g}, memory {result.memory_mb:g} MB"
    if result.message:
        text += f" ({result.message[:200]})"
    return text + "."


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise PepppError(f"role {role!r} is not one of {', '.join(ROLES)}")


def _record(
    result: CellResult, *, role: str, parent_run_id: str | None, start_ms: int, end_ms: int
) -> _RunRecord:
    config = parse_config(result.config)
    params = {
        "dataset": result.dataset,
        "config": result.config,
        "low": str(config.low),
        "high": str(config.high),
        "network": result.network,
        "recipe": result.recipe,
        "seed": str(result.seed),
    }
    metrics = {
        METRIC_ERROR: result.error,
        METRIC_MEMORY: result.memory_mb,
        METRIC_SECONDS: result.train_seconds,
        METRIC_LOSS: result.final_loss,
    }
    metrics = {k: float(v) for k, v in metrics.items() if not math.isnan(float(v))}
    tags = {
        TAG_RUN_NAME: cell_run_name(result),
        TAG_CELL_KEY: str(result.key),
        TAG_STATUS: result.status,
        TAG_ROLE: role,
        TAG_DATASET: result.dataset,
        TAG_CONFIG: result.config,
        TAG_RECIPE: result.recipe,
    }
    tags[TAG_NOTE] = cell_description(result, role=role)
    if result.message:
        tags[TAG_MESSAGE] = result.message[:MESSAGE_CHARS]
    if parent_run_id:
        tags[TAG_PARENT] = parent_run_id
    return _RunRecord(
        name=cell_run_name(result),
        status="FAILED" if result.status == "failed" else "FINISHED",
        start_ms=start_ms,
        end_ms=end_ms,
        params=params,
        metrics=metrics,
        tags=tags,
    )


def _entities(record: _RunRecord) -> tuple[list[Metric], list[Param], list[RunTag]]:
    metrics = [Metric(k, v, record.end_ms, 0) for k, v in record.metrics.items()]
    params = [Param(k, v) for k, v in record.params.items()]
    tags = [RunTag(k, v) for k, v in record.tags.items()]
    return metrics, params, tags


def _write_one(client: MlflowClient, experiment_id: str, record: _RunRecord) -> str:
    # The run is created bare (name and parent only); the peppp tags that make it a cell arrive in the
    # same request as its metrics, so a run cut off in between is never mistaken for a finished cell.
    structural = {k: v for k, v in record.tags.items() if k == TAG_PARENT}
    run = client.create_run(experiment_id, start_time=record.start_ms, tags=structural, run_name=record.name)
    run_id = run.info.run_id
    metrics, params, tags = _entities(record)
    try:
        client.log_batch(run_id, metrics=metrics, params=params, tags=[t for t in tags if t.key not in structural])
        finish_run(client, run_id, status=record.status, end_ms=record.end_ms, name=record.name)
    except BaseException:
        _delete_quietly(client, [run_id])
        raise
    return run_id


def _delete_quietly(client: MlflowClient, run_ids: list[str]) -> None:
    for run_id in run_ids:
        try:
            client.delete_run(run_id)
        except MlflowException:
            pass  # the error that brought us here matters more than a failed clean-up


def log_cell(
    experiment: str,
    result: CellResult,
    *,
    role: str = "meta",
    parent_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log one trained cell as a finished run (FAILED for status `failed`); returns its run id.

    The experiment is created when missing. `role` says what the cell is for: `meta` (a row of the
    meta-training matrix) or `probe` (a measurement on a new dataset during active search).
    """
    _check_role(role)
    client = connect(tracking_uri)
    experiment_id = get_or_create_experiment(experiment, client=client)
    end_ms = _now_ms()
    seconds = result.train_seconds
    # The run is logged when training is over; date its start back so MLflow shows the real duration.
    start_ms = end_ms - int(seconds * 1000) if math.isfinite(seconds) and seconds > 0 else end_ms
    record = _record(result, role=role, parent_run_id=parent_run_id, start_ms=start_ms, end_ms=end_ms)
    try:
        return _write_one(client, experiment_id, record)
    except MlflowException as exc:
        raise PepppError(f"cannot log cell {result.key}: {first_line(exc)}") from exc


def log_cells_batch(
    experiment: str,
    results: Sequence[CellResult],
    *,
    role: str = "meta",
    parent_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> list[str]:
    """Log many cells at once; returns their run ids in the order given.

    On a SQL store (sqlite, postgresql, ...) all runs go in with one transaction through MLflow's own
    table models: all or nothing, and about 100x faster than one `create_run` + `log_batch` +
    `set_terminated` per run (about 23 ms each on sqlite). Other stores get one run at a time, and a
    failure deletes the runs already written, so a batch never counts half. Start times are spaced
    1 ms apart in the order given, so a rebuilt matrix keeps the order of first appearance.
    """
    _check_role(role)
    if not results:
        return []
    client = connect(tracking_uri)
    experiment_id = get_or_create_experiment(experiment, client=client)
    base_ms = _now_ms()
    records = [
        _record(r, role=role, parent_run_id=parent_run_id, start_ms=base_ms + i, end_ms=base_ms + i)
        for i, r in enumerate(results)
    ]
    store = sql_store(client)
    try:
        if store is not None:
            runs = [(r.name, r.status, r.start_ms, r.end_ms, *_entities(r)) for r in records]
            return insert_runs(store, experiment_id, runs)
        return _write_each(client, experiment_id, records)
    except MlflowException as exc:
        raise PepppError(f"cannot log {len(results)} cells into {experiment!r}: {first_line(exc)}") from exc


def _write_each(client: MlflowClient, experiment_id: str, records: list[_RunRecord]) -> list[str]:
    run_ids: list[str] = []
    try:
        for record in records:
            run_ids.append(_write_one(client, experiment_id, record))
    except BaseException:
        _delete_quietly(client, run_ids)
        raise
    return run_ids


def start_parent_run(
    experiment: str,
    *,
    kind: str,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
    description: str | None = None,
) -> str:
    """Open a parent run for a sweep, an active-search round or an import; returns its run id.

    Cells logged with `parent_run_id=` nest under it. Close it with `end_run`, or use `parent_run`.
    `description` is what the run's page in MLflow's UI says it is.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise PepppError(f"run kind {kind!r} must be a short lower-case word such as sweep, round or import")
    client = connect(tracking_uri)
    experiment_id = get_or_create_experiment(experiment, client=client)
    all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    all_tags[TAG_KIND] = kind
    run_name = name or kind
    all_tags[TAG_RUN_NAME] = run_name
    if description:
        all_tags[TAG_NOTE] = description
    try:
        return client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id
    except MlflowException as exc:
        raise PepppError(f"cannot start a {kind} run in {experiment!r}: {first_line(exc)}") from exc


def end_run(run_id: str, *, status: str = "FINISHED", tracking_uri: str | None = None) -> None:
    """Close a run opened by `start_parent_run` with an MLflow status (FINISHED, FAILED or KILLED)."""
    if status not in RUN_STATUSES:
        raise PepppError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
    connect(tracking_uri).set_terminated(run_id, status=status)


def log_metrics(run_id: str, values: Mapping[str, float], *, tracking_uri: str | None = None) -> None:
    """Log summary metrics on a run at once (a NaN or infinite value means "none" and is left out)."""
    now = _now_ms()
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if math.isfinite(float(v))]
    if metrics:
        connect(tracking_uri).log_batch(run_id, metrics=metrics)


def round_methods(experiment: str, dataset: str, *, tracking_uri: str | None = None) -> set[str]:
    """The methods (tag `peppp.method`) of every active search round of `dataset` in `experiment`."""
    client = connect(tracking_uri, create=False)
    experiment_id = get_or_create_experiment(experiment, create=False, client=client)
    quoted = dataset.replace("'", "\\'")
    runs = search_all_runs(
        client, experiment_id, f"tags.`{TAG_KIND}` = '{KIND_ROUND}' and tags.`{TAG_DATASET}` = '{quoted}'",
        ViewType.ACTIVE_ONLY,
    )
    return {r.data.tags.get(TAG_METHOD, "") for r in runs}


def log_params(run_id: str, values: Mapping[str, object], *, tracking_uri: str | None = None) -> None:
    """Log parameters on a run at once (as text, as MLflow keeps them)."""
    params = [Param(k, str(v)) for k, v in values.items()]
    if params:
        connect(tracking_uri).log_batch(run_id, params=params)


def log_files(run_id: str, paths: Sequence, *, tracking_uri: str | None = None, folder: str | None = None) -> None:
    """Attach files to a run as artifacts (under `folder` where given)."""
    client = connect(tracking_uri)
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), folder)
    except MlflowException as exc:
        raise PepppError(f"cannot store artifacts of run {run_id}: {first_line(exc)}") from exc


def delete_run(run_id: str, *, tracking_uri: str | None = None) -> None:
    """Mark a run deleted: it stays in the store but never counts in a matrix again."""
    connect(tracking_uri).delete_run(run_id)


@contextmanager
def parent_run(
    experiment: str,
    *,
    kind: str,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
    heartbeat_s: float = HEARTBEAT_INTERVAL_S,
    delete_on_error: bool = False,
    description: str | None = None,
) -> Iterator[str]:
    """`with parent_run(...) as run_id:` the one way a sweep, round or import holds its parent run.

    The run carries this process's tag and a heartbeat beaten every `heartbeat_s` while the block runs
    (`peppp.tracking.liveness`: how a later process tells live work from dead). It ends FINISHED, FAILED
    on an error, KILLED on Ctrl-C (or any other interruption that is not an error); with
    `delete_on_error` a run that did not finish is then deleted (an import that is all or nothing).
    """
    all_tags = {**liveness_tags(), **(tags or {})}
    run_id = start_parent_run(experiment, kind=kind, name=name, tags=all_tags, tracking_uri=tracking_uri,
                              description=description)
    heartbeat = Heartbeat(run_id, tracking_uri=tracking_uri, interval_s=heartbeat_s).start()
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except Exception:
        raise
    except BaseException:  # KeyboardInterrupt, SystemExit, a cancelled task: not a failure of the work
        status = "KILLED"
        raise
    finally:
        heartbeat.stop()
        end_run(run_id, status=status, tracking_uri=tracking_uri)
        if delete_on_error and status != "FINISHED":
            delete_run(run_id, tracking_uri=tracking_uri)


def _now_ms() -> int:
    return int(time.time() * 1000)
