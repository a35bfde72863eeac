"""Publish a frontier in the MLflow model registry and fetch it back: JSON artifacts only, nothing pickled.

A registered model per dataset (`frontier_model_name`) whose versions point at the `frontier/` artifact
folder of the run that computed each frontier; the alias `champion` follows the newest version.
Fetching downloads `frontier.json` alone, checks it against the checksum registered with the version
and validates it; nothing downloaded is executed or unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from peppp.errors import PepppError
from peppp.frontier import JSON_FILE, MAX_JSON_BYTES, Frontier
from peppp.tracking.store import connect
from peppp.tracking.tags import KIND_FRONTIER, TAG_KIND

if TYPE_CHECKING:  # mlflow is imported where used: a sqlite store's frontier is read without it
    from mlflow import MlflowClient

__all__ = [
    "ARTIFACT_DIR",
    "DEFAULT_ALIAS",
    "RegisteredFrontier",
    "fetch_frontier",
    "frontier_model_name",
    "list_frontier_models",
    "load_registered_frontier",
    "log_frontier",
    "register_frontier",
]

ARTIFACT_DIR = "frontier"
DEFAULT_ALIAS = "champion"
MODEL_PREFIX = "peppp-frontier-"
# Marks registered models made here, so we never add versions to (or read) someone else's model.
KIND_TAG, KIND = TAG_KIND, KIND_FRONTIER
SHA256_TAG = "frontier_sha256"


@dataclass(frozen=True)
class RegisteredFrontier:
    """A frontier as fetched from the registry, with where it came from."""

    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str
    source: str
    frontier: Frontier


def frontier_model_name(dataset: str) -> str:
    """The registered model name for a dataset: `peppp-frontier-` + the name in lower-case letters,
    digits and dashes (`fashion-mnist:0,2,4,6` -> `peppp-frontier-fashion-mnist-0-2-4-6`)."""
    if not isinstance(dataset, str):
        raise PepppError(f"dataset {dataset!r} must be a string")
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")
    if not slug:
        raise PepppError(f"dataset {dataset!r} has no letters or digits to name a registered model after")
    return MODEL_PREFIX + slug


def log_frontier(frontier: Frontier, *, run_id: str, client: MlflowClient | None = None,
                 tracking_uri: str | None = None) -> str:
    """Log frontier.json, frontier.csv and frontier.png under `frontier/` of run `run_id`.

    Returns the artifact URI of that folder. A run holds one frontier: logging a different one on a
    run that already has one is an error (registered versions point at that folder and must not change);
    logging the same one again does nothing.
    """
    from mlflow.exceptions import MlflowException

    client = client or connect(tracking_uri, create=False)
    run = _get_run(client, run_id)
    uri = f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_DIR}"
    existing = _logged_json(client, run_id)
    if existing is not None:
        if existing == frontier.to_json().encode():
            return uri
        raise PepppError(
            f"run {run_id} already holds a different frontier under {ARTIFACT_DIR}/; log this one on a new run"
        )
    with tempfile.TemporaryDirectory(prefix="peppp-frontier-") as tmp:
        frontier.write_artifacts(tmp)
        try:
            client.log_artifacts(run_id, tmp, ARTIFACT_DIR)
        except (MlflowException, OSError) as exc:
            raise PepppError(f"cannot log the frontier on run {run_id}: {_first_line(exc)}") from exc
    return uri


def register_frontier(frontier: Frontier, *, run_id: str, name: str | None = None, alias: str = DEFAULT_ALIAS,
                      client: MlflowClient | None = None, tracking_uri: str | None = None) -> tuple[str, int]:
    """Log the frontier on `run_id` (if not yet there), register it as a new version of `name`
    (default `frontier_model_name(frontier.dataset)`) and move `alias` to that version.

    No model flavour, no pickle: the version's source is the run's `frontier/` folder. Version tags:
    dataset, meta_experiment, method, schema_version, created_at and the SHA-256 of frontier.json.
    Returns (name, version).
    """
    from mlflow.exceptions import MlflowException

    client = client or connect(tracking_uri, create=False)
    name = name or frontier_model_name(frontier.dataset)
    _check_alias(alias)
    source = log_frontier(frontier, run_id=run_id, client=client)
    _ensure_registered_model(client, name)
    tags = {
        "dataset": frontier.dataset,
        "meta_experiment": frontier.meta_experiment,
        "method": frontier.method,
        "schema_version": str(frontier.schema_version),
        "created_at": frontier.created_at,
        SHA256_TAG: hashlib.sha256(frontier.to_json().encode()).hexdigest(),
    }
    description = (
        f"{frontier.dataset}: {len(frontier.points)} configurations, {frontier.n_measured} measured, "
        f"{len(frontier.pareto())} on the frontier"
    )
    try:
        version = client.create_model_version(name, source=source, run_id=run_id, tags=tags, description=description)
    except MlflowException as exc:
        raise PepppError(f"cannot register a version of {name!r}: {_first_line(exc)}") from exc
    try:
        client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        # A version nobody's alias reaches would look registered but never be fetched: take it back.
        with contextlib.suppress(MlflowException):
            client.delete_model_version(name, version.version)
        raise PepppError(
            f"cannot point alias {alias!r} of {name!r} at version {version.version}: {_first_line(exc)}"
        ) from exc
    return name, int(version.version)


def load_registered_frontier(name: str, *, alias: str | None = DEFAULT_ALIAS, version: int | None = None,
                             client: MlflowClient | None = None, tracking_uri: str | None = None) -> RegisteredFrontier:
    """The version of `name` that `alias` points at (or `version` when given), with its frontier.

    Downloads only frontier.json, checks its registered SHA-256 and validates the JSON. On a local
    sqlite store whose artifacts lie beside its database (the default store), the registry tables and
    the JSON are read directly, without loading MLflow (a lookup in well under a second); anything else
    goes through MLflow's client.
    """
    if client is None:
        fast = _from_local_sqlite(name, alias=alias, version=version, tracking_uri=tracking_uri)
        if fast is not None:
            return fast
    from mlflow.exceptions import MlflowException

    client = client or connect(tracking_uri, create=False)
    model = _get_frontier_model(client, name)
    if version is None:
        _check_alias(alias)
        if alias not in model.aliases:
            known = ", ".join(f"{a} -> version {v}" for a, v in sorted(model.aliases.items())) or "none"
            raise PepppError(f"registered frontier {name!r} has no alias {alias!r}; its aliases: {known}")
        version = int(model.aliases[alias])
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PepppError(f"version {version!r} must be a positive integer")
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise PepppError(f"registered frontier {name!r} has no version {version}: {_first_line(exc)}") from exc
    where = f"{name!r} version {version}"
    run_id = _confined_run(client, mv, where)
    with tempfile.TemporaryDirectory(prefix="peppp-fetch-") as tmp:
        path = _download_json(client, run_id, tmp, where=where)
        payload = path.read_bytes() if path is not None and path.stat().st_size <= MAX_JSON_BYTES else None
    aliases = tuple(sorted(a for a, v in model.aliases.items() if int(v) == version))
    return RegisteredFrontier(name=name, version=version, aliases=aliases, run_id=mv.run_id or "",
                              source=mv.source, frontier=_checked(payload, (mv.tags or {}).get(SHA256_TAG), where))


def _checked(payload: bytes | None, expected_sha256: str | None, where: str) -> Frontier:
    """The frontier in a fetched frontier.json: size, registered checksum and schema checked."""
    if payload is None:
        raise PepppError(f"{JSON_FILE} of {where} is too large to be a frontier")
    if expected_sha256 and hashlib.sha256(payload).hexdigest() != expected_sha256:
        raise PepppError(f"{JSON_FILE} of {where} does not match the checksum registered with it; it was altered")
    try:
        return Frontier.from_json(payload)
    except PepppError as exc:
        raise PepppError(f"{where}: {exc}") from None


def _from_local_sqlite(name: str, *, alias: str | None, version: int | None,
                       tracking_uri: str | None) -> RegisteredFrontier | None:
    """`load_registered_frontier` on a local sqlite store, straight from its files; None where it cannot
    be done so (another kind of store, an unusual source, anything amiss): the caller asks MLflow."""
    from urllib.parse import unquote, urlparse

    from peppp.tracking._mlflow_private import read_model_version_sqlite
    from peppp.tracking.store import resolve_tracking_uri, sqlite_path, uri_scheme

    uri = resolve_tracking_uri(tracking_uri, create_dir=False)
    db = sqlite_path(uri) if uri_scheme(uri) == "sqlite" else None
    if db is None or not db.is_file():
        return None
    if version is None and not isinstance(alias, str):
        return None
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        return None
    mv = read_model_version_sqlite(db, name, alias=alias, version=version, model_tag=(KIND_TAG, KIND))
    if mv is None:
        return None
    parsed = urlparse(mv.source)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    root = db.resolve().parent
    path = (Path(unquote(parsed.path)) / JSON_FILE).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None  # outside the store's folder: MLflow's own download decides
    with open(path, "rb") as stream:
        payload = stream.read(MAX_JSON_BYTES + 1)
    if len(payload) > MAX_JSON_BYTES:
        payload = None
    where = f"{name!r} version {mv.version}"
    return RegisteredFrontier(name=name, version=mv.version, aliases=mv.aliases, run_id=mv.run_id, source=mv.source,
                              frontier=_checked(payload, mv.tags.get(SHA256_TAG), where))


def fetch_frontier(name: str, alias: str = DEFAULT_ALIAS, *, version: int | None = None,
                   tracking_uri: str | None = None, client: MlflowClient | None = None) -> Frontier:
    """The registered frontier `name` at `alias` (default `champion`), or at `version` when given.

    Reads JSON only; nothing downloaded is executed or unpickled. Unknown name, alias or version, an
    unreachable store and a corrupt or unknown-schema artifact are each a one-line PepppError.
    """
    return load_registered_frontier(name, alias=alias, version=version, client=client,
                                     tracking_uri=tracking_uri).frontier


def list_frontier_models(*, client: MlflowClient | None = None, tracking_uri: str | None = None) -> list[str]:
    """Names of the registered frontiers in the store, sorted."""
    from mlflow.exceptions import MlflowException

    client = client or connect(tracking_uri, create=False)
    try:
        models = client.search_registered_models(max_results=1000)
    except MlflowException as exc:
        raise PepppError(f"cannot list registered models in {client.tracking_uri}: {_first_line(exc)}") from exc
    return sorted(m.name for m in models if (m.tags or {}).get(KIND_TAG) == KIND)


# ----------------------------------------------------------------------------------------------------
# helpers


def _get_run(client: MlflowClient, run_id: str):
    from mlflow.exceptions import MlflowException

    if not isinstance(run_id, str) or not run_id:
        raise PepppError(f"run_id {run_id!r} must be a run id string")
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise PepppError(f"no run {run_id!r} in {client.tracking_uri}: {_first_line(exc)}") from exc


def _logged_json(client: MlflowClient, run_id: str) -> bytes | None:
    """frontier.json as already logged on the run, or None when the run has none."""
    from mlflow.exceptions import MlflowException

    try:
        listed = {f.path for f in client.list_artifacts(run_id, ARTIFACT_DIR)}
    except (MlflowException, OSError):
        return None
    if f"{ARTIFACT_DIR}/{JSON_FILE}" not in listed:
        return None
    with tempfile.TemporaryDirectory(prefix="peppp-frontier-") as tmp, _quiet_downloads():
        try:
            path = client.download_artifacts(run_id, f"{ARTIFACT_DIR}/{JSON_FILE}", tmp)
        except (MlflowException, OSError) as exc:
            raise PepppError(f"cannot read the frontier already on run {run_id}: {_first_line(exc)}") from exc
        return Path(path).read_bytes()


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise PepppError(f"cannot look up registered model {name!r}: {_first_line(exc)}") from exc
        try:
            client.create_registered_model(
                name, tags={KIND_TAG: KIND}, description="peppp estimated (memory, error) frontier of one dataset"
            )
            return
        except MlflowException as create_exc:
            if create_exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise PepppError(f"cannot create registered model {name!r}: {_first_line(create_exc)}") from create_exc
            model = client.get_registered_model(name)  # another process created it meanwhile
    if (model.tags or {}).get(KIND_TAG) != KIND:
        raise PepppError(f"registered model {name!r} exists but is not a peppp frontier; pick another name")


def _get_frontier_model(client: MlflowClient, name: str):
    from mlflow.exceptions import MlflowException

    if not isinstance(name, str) or not name.strip():
        raise PepppError(f"registered frontier name {name!r} is empty; give a name such as {MODEL_PREFIX}<dataset>")
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise PepppError(f"cannot look up registered model {name!r}: {_first_line(exc)}") from exc
        known = list_frontier_models(client=client)
        listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise PepppError(
            f"no registered frontier named {name!r} in {client.tracking_uri}; registered frontiers: {listed or 'none'}"
        ) from None
    if (model.tags or {}).get(KIND_TAG) != KIND:
        raise PepppError(f"registered model {name!r} is not a peppp frontier (no {KIND_TAG}={KIND} tag)")
    return model


def _confined_run(client: MlflowClient, mv, where: str) -> str:
    """The run whose `frontier/` folder the version points at, after checking that it points there and
    nowhere else: the source must be exactly that folder, inside its experiment's artifact root (a
    source edited to hold `..`, another folder or a web address is refused, never fetched)."""
    from mlflow.exceptions import MlflowException

    source = (mv.source or "").rstrip("/")
    refused = f"{where}: its source {source!r} is not the frontier folder of its run in this store; refusing to fetch it"
    if not mv.run_id:
        raise PepppError(refused)
    try:
        run = client.get_run(mv.run_id)
        root = client.get_experiment(run.info.experiment_id).artifact_location.rstrip("/")
    except MlflowException as exc:
        raise PepppError(f"{where}: its run {mv.run_id} cannot be read: {_first_line(exc)}") from exc
    run_root = run.info.artifact_uri.rstrip("/")
    if source != f"{run_root}/{ARTIFACT_DIR}" or ".." in source.split("/") or not run_root.startswith(root + "/"):
        raise PepppError(refused)
    local = _local_path(run_root)
    if local is not None and not local.resolve().is_relative_to(_local_path(root).resolve()):
        raise PepppError(refused)  # a link out of the artifact root
    return mv.run_id


def _local_path(uri: str) -> Path | None:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


def _download_json(client: MlflowClient, run_id: str, directory: str, *, where: str) -> Path | None:
    """frontier.json of the run, downloaded only when the store lists it within MAX_JSON_BYTES (None
    when it is larger: nothing of it is read)."""
    from mlflow.exceptions import MlflowException

    member = f"{ARTIFACT_DIR}/{JSON_FILE}"
    try:
        listed = {f.path: f for f in client.list_artifacts(run_id, ARTIFACT_DIR)}
        if member not in listed:
            raise PepppError(f"{JSON_FILE} of {where} is missing from its run {run_id}")
        size = listed[member].file_size
        if size is not None and size > MAX_JSON_BYTES:
            return None
        with _quiet_downloads():
            path = Path(client.download_artifacts(run_id, member, directory))
    except (MlflowException, OSError) as exc:
        raise PepppError(f"cannot download {JSON_FILE} of {where}: {_first_line(exc)}") from exc
    if not path.is_file():
        raise PepppError(f"{JSON_FILE} of {where} is missing from its run {run_id}")
    return path


@contextlib.contextmanager
def _quiet_downloads():
    """No tqdm bar on stderr for a one-file download (MLflow reads this variable on each download)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _check_alias(alias: object) -> None:
    # MLflow reserves v<number> (it means that version) and "latest".
    valid = isinstance(alias, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", alias)
    if not valid or re.fullmatch(r"[vV]\d+", alias) or alias.lower() == "latest":
        raise PepppError(f"alias {alias!r} must be a name of letters, digits, '_' or '-' (not v<number> or latest)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
