"""Where the runs live: the tracking URI, a quick check that the store answers, experiments by name."""

from __future__ import annotations

import contextlib

import itertools
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from typing import TYPE_CHECKING

from peppp.errors import PepppError
from peppp.tracking.tags import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND, TAG_NOTE

if TYPE_CHECKING:  # mlflow loads when a store is first used: reading a registered frontier from sqlite needs none
    from mlflow import MlflowClient

DEFAULT_STORE_DIR = "mlruns"
DEFAULT_DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
HTTP_SCHEMES = ("http", "https")


def resolve_tracking_uri(uri: str | None = None, *, create_dir: bool = True) -> str:
    """The store to use: `uri` if given, else $MLFLOW_TRACKING_URI, else sqlite under ./mlruns.

    The default is `sqlite:///<cwd>/mlruns/mlflow.db` (MLflow 3 keeps its plain file store in
    maintenance mode); runs' artifacts go to `mlruns/artifacts/` beside the database.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if uri:
        return uri
    store_dir = Path.cwd().resolve() / DEFAULT_STORE_DIR
    if create_dir:
        store_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store_dir / DEFAULT_DB_NAME}"


def uri_scheme(uri: str) -> str:
    """`postgresql+psycopg2://...` -> `postgresql`; a bare path -> `file`."""
    if "://" not in uri and not uri.startswith("sqlite:"):
        return "file"
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI (None for an in-memory database)."""
    rest = uri.split(":", 1)[1]
    rest = rest[3:] if rest.startswith("///") else rest.lstrip("/")
    rest = rest.split("?", 1)[0]
    if rest in ("", ":memory:"):
        return None
    return Path(rest)


def connect(uri: str | None = None, *, create: bool = True, timeout_s: float = 3.0) -> MlflowClient:
    """An MLflow client on the resolved store, after checking quickly that the store answers.

    An http(s) server must answer within `timeout_s` (MLflow's own client would retry for minutes).
    With `create=False` a sqlite database that does not exist yet is an error instead of being created,
    so reading commands never leave an empty store behind.
    """
    uri = resolve_tracking_uri(uri, create_dir=create)
    scheme = uri_scheme(uri)
    if scheme in HTTP_SCHEMES:
        _patiently(uri, lambda: _check_http(uri, timeout_s=timeout_s))
    elif scheme == "sqlite":
        _check_sqlite(uri, create=create)
    elif scheme in DATABASE_SCHEMES:
        _patiently(uri, lambda: _check_database(uri, timeout_s=timeout_s))
    from mlflow import MlflowClient

    from peppp.tracking._mlflow_private import quiet_store_logs, store_of

    quiet_store_logs()

    try:
        if scheme != "sqlite":
            return MlflowClient(tracking_uri=uri)
        # MLflow creates and migrates an empty database when its store is first opened; two processes
        # doing that at once break the database for good. One at a time, under a lock beside it.
        with _store_lock(sqlite_path(uri)):
            client = MlflowClient(tracking_uri=uri)
            store_of(client)
        return client
    except PepppError:
        raise
    except Exception as exc:  # MLflow, SQLAlchemy and database drivers share no narrower base
        raise PepppError(f"cannot open the tracking store {uri}: {first_line(exc)}") from exc


@contextlib.contextmanager
def _store_lock(path: Path | None):
    """An exclusive lock on `<database>.lock` (none for an in-memory database)."""
    if path is None:
        yield
        return
    import fcntl

    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = open(lock_path, "a")
    except OSError:
        yield  # a read-only folder: nobody can create the store there either
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


PATIENCE_ENV = "PEPPP_STORE_PATIENCE_S"
DEFAULT_PATIENCE_S = 90.0  # a server or database restart of a minute, with room to spare
_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # then every 8 s
_answered: set[str] = set()  # stores that answered in this process: an outage of theirs is waited out


def store_patience_s() -> float:
    """How long a store that answered before is waited for when it stops answering ($PEPPP_STORE_PATIENCE_S)."""
    try:
        value = float(os.environ.get(PATIENCE_ENV, DEFAULT_PATIENCE_S))
    except ValueError:
        return DEFAULT_PATIENCE_S
    return value if value >= 0 else DEFAULT_PATIENCE_S


def _patiently(uri: str, check, *, sleep=time.sleep, clock=time.monotonic) -> None:
    """`check()` the store; a store that answered earlier in this process (a sweep at work) and now
    does not is asked again with backoff for up to `store_patience_s()` (a server restarting); a store
    never reached fails at once, so a typo costs no minute."""
    if uri not in _answered:
        check()
        _answered.add(uri)
        return
    deadline = clock() + store_patience_s()
    for attempt in itertools.count():
        try:
            check()
            return
        except PepppError:
            pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            if clock() + pause > deadline:
                raise
            sleep(pause)


def _check_http(uri: str, *, timeout_s: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        urllib.request.urlopen(url, timeout=timeout_s).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # MLflow's server always serves /health: this is some other web server
            raise PepppError(
                f"{uri} answers but is no MLflow tracking server (no {url}); check MLFLOW_TRACKING_URI"
            ) from None
        return  # it answered; authentication is MLflow's business
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PepppError(
            f"tracking server {uri} is unreachable ({reason}); start it or set MLFLOW_TRACKING_URI"
        ) from exc


DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def _check_database(uri: str, *, timeout_s: float) -> None:
    """A database server must accept a TCP connection quickly (MLflow would retry for ~100 s)."""
    import socket

    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
    except Exception as exc:  # SQLAlchemy's ArgumentError and friends
        raise PepppError(f"tracking store URI {uri!r} is not a valid database URL: {first_line(exc)}") from None
    if not url.host:
        return  # a local socket: let the driver speak
    port = url.port or _DEFAULT_PORTS[uri_scheme(uri)]
    try:
        socket.create_connection((url.host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise PepppError(
            f"tracking database {url.host}:{port} is unreachable ({exc.strerror or exc}); start it or set MLFLOW_TRACKING_URI"
        ) from None


def _check_sqlite(uri: str, *, create: bool) -> None:
    path = sqlite_path(uri)
    if path is None:
        return
    if path.exists():
        if not path.is_file():
            raise PepppError(f"tracking store {uri} is not a file; point MLFLOW_TRACKING_URI at a sqlite file")
        return
    if not create:
        raise PepppError(
            f"no tracking store at {path}; set MLFLOW_TRACKING_URI or --tracking-uri to an existing store"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PepppError(f"cannot create the tracking store folder {path.parent}: {exc.strerror}") from exc


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside its database file; other stores use the server's root."""
    if uri_scheme(uri) != "sqlite":
        return None
    path = sqlite_path(uri)
    if path is None:
        return None
    return (path.resolve().parent / ARTIFACTS_DIR).as_uri()


@contextlib.contextmanager
def store_errors(what: str):
    """Turn the store's own failures (a database or server gone mid-process) into one-line PepppErrors."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except PepppError:
        raise
    except MlflowException as exc:
        raise PepppError(f"{what}: {first_line(exc)}") from exc
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("sqlalchemy", "psycopg", "psycopg2", "sqlite3"):
            raise PepppError(f"{what}: {first_line(exc)}") from exc
        raise


EXPERIMENT_DESCRIPTION = (
    "A peppp meta-dataset: one run per trained cell (a dataset trained under one precision configuration "
    "LOW/HIGH), with its test_error and memory_mb, nested under a parent run per meta-training sweep, "
    "active-search round or import. Sweeps hold the error and memory matrices they completed (CSV and a "
    "heatmap), rounds and frontier runs the estimated (memory, error) frontier."
)


def get_or_create_experiment(
    name: str, *, create: bool = True, tracking_uri: str | None = None, client: MlflowClient | None = None
) -> str:
    """The id of the experiment called `name`, created when missing and `create` is true.

    peppp's experiments are training experiments with a description (MLflow's UI then opens them on
    their runs, not on GenAI traces); one made elsewhere gets those tags when peppp first writes to it.
    """
    from mlflow.exceptions import MlflowException

    if not isinstance(name, str) or not name.strip():
        raise PepppError(f"experiment name {name!r} is empty; give a non-empty name")
    client = client or connect(tracking_uri, create=create)
    with store_errors(f"cannot look up experiment {name!r} in {client.tracking_uri}"):
        experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise PepppError(
                f"experiment {name!r} is deleted; restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or pick another name"
            )
        if create and TAG_EXPERIMENT_KIND not in (experiment.tags or {}):
            _describe_experiment(client, experiment.experiment_id)
        return experiment.experiment_id
    if not create:
        known = sorted(e.name for e in client.search_experiments(max_results=200))
        listed = ", ".join(repr(k) for k in known[:10]) + (", ..." if len(known) > 10 else "")
        raise PepppError(
            f"no experiment named {name!r} in {client.tracking_uri}; existing: {listed or 'none'}"
        )
    try:
        return client.create_experiment(
            name, artifact_location=default_artifact_location(client.tracking_uri), tags=_experiment_tags()
        )
    except MlflowException as exc:
        # Another process may have created it between our lookup and our create.
        experiment = client.get_experiment_by_name(name)
        if experiment is not None and experiment.lifecycle_stage == "active":
            return experiment.experiment_id
        raise PepppError(f"cannot create experiment {name!r}: {first_line(exc)}") from exc


def _experiment_tags() -> dict[str, str]:
    return {TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING, TAG_NOTE: EXPERIMENT_DESCRIPTION}


def _describe_experiment(client: MlflowClient, experiment_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        for key, value in _experiment_tags().items():
            client.set_experiment_tag(experiment_id, key, value)
    except MlflowException:
        pass  # a read-only store or a user without rights: the UI is less helpful, nothing is lost


_NOT_THE_CAUSE = ("(raised as a result of", "(Background on this error at")


def first_line(exc: BaseException) -> str:
    """The line of an exception's message that says what went wrong (SQLAlchemy puts a note about
    autoflush before the database's own words: "attempt to write a readonly database")."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(_NOT_THE_CAUSE)] or lines
    return lines[0][:500] if lines else type(exc).__name__


SEARCH_PAGE_SIZE = 50_000  # MLflow's largest page


def search_all_runs(client: MlflowClient, experiment_id: str, filter_string: str, view) -> list:
    """Every run of `search_runs` over all its pages (one page is at most SEARCH_PAGE_SIZE runs)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, run_view_type=view, max_results=SEARCH_PAGE_SIZE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def run_link(experiment: str, run_id: str, *, tracking_uri: str | None = None) -> str:
    """Where a person finds a run in MLflow's UI: its URL on a server, else how to open it."""
    client = connect(tracking_uri, create=False)
    found = client.get_experiment_by_name(experiment)
    # MLflow 3's UI opens on its GenAI views unless told: the query asks for the model-training pages
    # (description, parameters, metrics, artifacts)
    page = f"#/experiments/{found.experiment_id if found else '?'}/runs/{run_id}?workflowType=machine_learning"
    if uri_scheme(client.tracking_uri) in HTTP_SCHEMES:
        return f"{client.tracking_uri.rstrip('/')}/{page}"
    return (f"run `{run_id}` of experiment `{experiment}`: `mlflow ui --backend-store-uri {client.tracking_uri}`, "
            f"then `{page}`")
