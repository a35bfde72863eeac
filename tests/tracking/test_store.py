"""Which store, whether it answers, experiments by name."""

from __future__ import annotations

import socket
import time

import pytest

from peppp.errors import PepppError
from peppp.tracking import connect, get_or_create_experiment, resolve_tracking_uri
from peppp.tracking.store import sqlite_path, uri_scheme


def test_default_store_is_sqlite_under_cwd_mlruns(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(create_dir=False) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert not (tmp_path / "mlruns").exists()
    resolve_tracking_uri()
    assert (tmp_path / "mlruns").is_dir()


def test_environment_and_argument_override_the_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/db.sqlite")
    assert resolve_tracking_uri() == "sqlite:////elsewhere/db.sqlite"
    assert resolve_tracking_uri("http://tracking:5000") == "http://tracking:5000"


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("sqlite:////a/b.db", "sqlite"),
        ("postgresql+psycopg2://u@h/db", "postgresql"),
        ("http://h:5000", "http"),
        ("/some/path", "file"),
    ],
)
def test_uri_scheme(uri, scheme):
    assert uri_scheme(uri) == scheme


def test_sqlite_path_absolute_relative_and_memory():
    assert str(sqlite_path("sqlite:////abs/mlflow.db")) == "/abs/mlflow.db"
    assert str(sqlite_path("sqlite:///rel/mlflow.db")) == "rel/mlflow.db"
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_one_line_and_quick():
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(PepppError, match="unreachable") as info:
        connect(uri)
    assert time.monotonic() - started < 5
    assert "\n" not in str(info.value) and uri in str(info.value)


def test_reading_a_missing_sqlite_store_does_not_create_it(tmp_path):
    db = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(PepppError, match="no tracking store"):
        connect(f"sqlite:///{db}", create=False)
    assert not db.parent.exists()


def test_experiment_created_once_with_artifacts_beside_the_database(store_uri, tmp_path):
    experiment_id = get_or_create_experiment("meta")
    assert get_or_create_experiment("meta") == experiment_id
    location = connect().get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "mlruns" / "artifacts").resolve().as_uri()


def test_missing_experiment_without_create_names_what_exists(store_uri):
    get_or_create_experiment("present")
    with pytest.raises(PepppError, match=r"no experiment named 'absent'.*'present'"):
        get_or_create_experiment("absent", create=False)


def test_deleted_experiment_is_refused(store_uri):
    client = connect()
    client.delete_experiment(get_or_create_experiment("gone"))
    with pytest.raises(PepppError, match="deleted"):
        get_or_create_experiment("gone")


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_experiment_name(store_uri, name):
    with pytest.raises(PepppError, match="empty"):
        get_or_create_experiment(name)
