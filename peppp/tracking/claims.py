"""Claims on cells: of two sweeps over the same grid, only the one holding a cell's claim trains it.

A claim is one atomic write that only one writer can win, with an owner (a sweep's parent run id) and
an expiry, so a dead owner's claim stops blocking after `ttl_s`:

- SQL stores (sqlite, postgresql, mysql): a row of the table `peppp_claims` (created when missing)
  whose primary key is (experiment, cell_key); the database's unique key decides the winner.
- An MLflow server (http/https): an experiment named `peppp-claims/<experiment>/<cell_key>` with the
  owner and expiry as experiment tags; experiment names are unique on the server, so `create_experiment`
  is the atomic step. A released or expired claim is renamed aside (by id) and deleted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from peppp.errors import PepppError
from peppp.tracking.store import (
    HTTP_SCHEMES,
    connect,
    first_line,
    store_errors,
    uri_scheme,
)

DEFAULT_TTL_S = 6 * 3600.0
TABLE = "peppp_claims"
CLAIM_PREFIX = "peppp-claims/"
TAG_OWNER = "peppp.claim.owner"
TAG_EXPIRES = "peppp.claim.expires_ms"
TAG_KEY = "peppp.claim.key"
TAG_EXPERIMENT = "peppp.claim.experiment"
_ATTEMPTS = 5


@dataclass(frozen=True)
class Claim:
    """A held claim: which cell, who holds it, and when it lapses (ms since the epoch)."""

    experiment: str
    cell_key: str
    owner: str
    expires_ms: int


def claim_cell(
    experiment: str,
    cell_key: str,
    *,
    owner: str,
    ttl_s: float = DEFAULT_TTL_S,
    tracking_uri: str | None = None,
    clock: Callable[[], float] = time.time,
) -> bool:
    """Take the claim on `cell_key` for `owner`; True if `owner` holds it now (again: its expiry moves on).

    False while someone else holds an unexpired claim. An expired claim is taken over. `clock` gives
    the time in seconds since the epoch (tests pass their own).
    """
    _check(experiment, cell_key, owner, ttl_s)
    client = connect(tracking_uri)
    now_ms = int(clock() * 1000)
    expires_ms = now_ms + int(ttl_s * 1000)
    with store_errors(f"cannot claim cell {cell_key} in {client.tracking_uri}"):
        engine = _engine(client)
        if engine is not None:
            return _sql_claim(engine, experiment, cell_key, owner, now_ms, expires_ms)
        if uri_scheme(client.tracking_uri) in HTTP_SCHEMES:
            return _server_claim(client, experiment, cell_key, owner, now_ms, expires_ms)
    raise PepppError(f"tracking store {client.tracking_uri} cannot hold claims; use sqlite, a database or an MLflow server")


def release_claim(experiment: str, cell_key: str, *, owner: str, tracking_uri: str | None = None) -> bool:
    """Drop `owner`'s claim on `cell_key` (a finished cell); True if there was one to drop."""
    _check(experiment, cell_key, owner, 1.0)
    client = connect(tracking_uri)
    with store_errors(f"cannot release the claim on {cell_key} in {client.tracking_uri}"):
        engine = _engine(client)
        if engine is not None:
            return _sql_release(engine, experiment, cell_key, owner)
        found = client.get_experiment_by_name(_claim_name(experiment, cell_key))
        if found is None or found.lifecycle_stage != "active" or found.tags.get(TAG_OWNER) != owner:
            return False
        _move_aside(client, found.experiment_id, "released")
        return True


def list_claims(experiment: str, *, tracking_uri: str | None = None) -> list[Claim]:
    """Every claim held on `experiment`'s cells (expired ones included), by cell key."""
    client = connect(tracking_uri)
    with store_errors(f"cannot list claims in {client.tracking_uri}"):
        engine = _engine(client)
        if engine is not None:
            from sqlalchemy import select

            table = _table(engine)
            with engine.connect() as conn:
                rows = conn.execute(select(table).where(table.c.experiment == experiment)).all()
            claims = [Claim(experiment, r.cell_key, r.owner, int(r.expires_ms)) for r in rows]
        else:
            claims = []
            prefix = _claim_name(experiment, "")
            for found in _search_claim_experiments(client, prefix):
                tags = found.tags
                if found.name.startswith(prefix) and TAG_OWNER in tags:
                    claims.append(Claim(experiment, tags.get(TAG_KEY, found.name[len(prefix):]), tags[TAG_OWNER],
                                        int(tags.get(TAG_EXPIRES, "0"))))
    return sorted(claims, key=lambda c: c.cell_key)


def _check(experiment: str, cell_key: str, owner: str, ttl_s: float) -> None:
    for what, value in (("experiment", experiment), ("cell key", cell_key), ("owner", owner)):
        if not isinstance(value, str) or not value.strip():
            raise PepppError(f"claim {what} {value!r} is empty; give a non-empty string")
    if not isinstance(ttl_s, (int, float)) or not ttl_s > 0:
        raise PepppError(f"claim ttl_s {ttl_s!r} must be a positive number of seconds")


# ----------------------------------------------------------------------------------------------------
# SQL stores: one row per claim


def _engine(client: MlflowClient):
    from peppp.tracking._mlflow_private import sql_engine

    return sql_engine(client)


_TABLES: dict[int, object] = {}


def _table(engine):
    """The claims table, created on first use (by whichever process gets there first)."""
    from sqlalchemy import BigInteger, Column, MetaData, String, Table
    from sqlalchemy.exc import SQLAlchemyError

    table = _TABLES.get(id(engine))
    if table is not None:
        return table
    metadata = MetaData()
    table = Table(
        TABLE,
        metadata,
        Column("experiment", String(256), primary_key=True),
        Column("cell_key", String(512), primary_key=True),
        Column("owner", String(256), nullable=False),
        Column("expires_ms", BigInteger, nullable=False),
    )
    try:
        metadata.create_all(engine, checkfirst=True)
    except SQLAlchemyError:
        # Another process created it between the check and the create.
        metadata.create_all(engine, checkfirst=True)
    _TABLES[id(engine)] = table
    return table


def _sql_claim(engine, experiment: str, cell_key: str, owner: str, now_ms: int, expires_ms: int) -> bool:
    from sqlalchemy import and_, delete, insert, update
    from sqlalchemy.exc import IntegrityError

    table = _table(engine)
    this = and_(table.c.experiment == experiment, table.c.cell_key == cell_key)
    try:
        with engine.begin() as conn:
            # One transaction: drop a lapsed claim, then insert ours; the primary key lets one insert win.
            conn.execute(delete(table).where(this, table.c.expires_ms < now_ms))
            conn.execute(insert(table).values(experiment=experiment, cell_key=cell_key, owner=owner,
                                              expires_ms=expires_ms))
        return True
    except IntegrityError:
        pass
    with engine.begin() as conn:
        renewed = conn.execute(update(table).where(this, table.c.owner == owner).values(expires_ms=expires_ms))
    return renewed.rowcount == 1


def _sql_release(engine, experiment: str, cell_key: str, owner: str) -> bool:
    from sqlalchemy import delete

    table = _table(engine)
    with engine.begin() as conn:
        done = conn.execute(
            delete(table).where(table.c.experiment == experiment, table.c.cell_key == cell_key, table.c.owner == owner)
        )
    return done.rowcount == 1


# ----------------------------------------------------------------------------------------------------
# MLflow server: one experiment per claim


def _claim_name(experiment: str, cell_key: str) -> str:
    return f"{CLAIM_PREFIX}{experiment}/{cell_key}"


def _server_claim(
    client: MlflowClient, experiment: str, cell_key: str, owner: str, now_ms: int, expires_ms: int
) -> bool:
    name = _claim_name(experiment, cell_key)
    tags = {TAG_OWNER: owner, TAG_EXPIRES: str(expires_ms), TAG_KEY: cell_key, TAG_EXPERIMENT: experiment}
    for _ in range(_ATTEMPTS):
        try:
            client.create_experiment(name, tags=tags)
            return True
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        found = client.get_experiment_by_name(name)
        if found is None:
            continue  # released between our create and our look-up: try again
        if found.tags.get(TAG_OWNER) == owner:
            client.set_experiment_tag(found.experiment_id, TAG_EXPIRES, str(expires_ms))
            return True
        if found.lifecycle_stage == "active" and int(found.tags.get(TAG_EXPIRES, "0")) >= now_ms:
            return False
        # Lapsed (or deleted under its name): moving it aside by id cannot touch a newer claim.
        _move_aside(client, found.experiment_id, "expired")
    raise PepppError(f"cannot claim cell {cell_key}: the claim changed hands {_ATTEMPTS} times in a row")


def _move_aside(client: MlflowClient, experiment_id: str, why: str) -> None:
    try:
        found = client.get_experiment(experiment_id)
        client.rename_experiment(experiment_id, f"{found.name}#{why}-{uuid.uuid4().hex}")
        if found.lifecycle_stage == "active":
            client.delete_experiment(experiment_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "INVALID_STATE"):
            raise PepppError(f"cannot clear claim {experiment_id}: {first_line(exc)}") from exc


def _search_claim_experiments(client: MlflowClient, prefix: str) -> list:
    escaped = prefix.replace("'", "\\'")
    found, token = [], None
    while True:
        page = client.search_experiments(filter_string=f"name LIKE '{escaped}%'", max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found
