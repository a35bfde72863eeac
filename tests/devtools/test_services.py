"""Local PostgreSQL and MLflow servers: loopback only, ready when returned, stopped with every process they spawned."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import urllib.request
from pathlib import Path

import pytest

from peppp.errors import PepppError
from devtools.services import LOOPBACK, free_port, postgres_bin_dir, start_mlflow_server, start_postgres


def _postgres_installed() -> bool:
    try:
        postgres_bin_dir()
    except PepppError:
        return False
    return True


needs_postgres = pytest.mark.skipif(
    not _postgres_installed(), reason="PostgreSQL is not installed (scripts/install-postgres.sh installs it)"
)


@pytest.fixture
def pg_folder(tmp_path):
    """A folder the server can reach: as root it runs as `postgres`, which cannot enter pytest's tmp folders."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="peppp-test-pg-"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _processes() -> dict[int, tuple[int, int]]:
    """Live processes from /proc: pid -> (parent pid, process group)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, parent, group = text[text.rindex(")") + 2 :].split()[:3]
        if state != "Z":
            table[int(stat.parent.name)] = (int(parent), int(group))
    return table


def _group_members(group: int) -> set[int]:
    return {pid for pid, (_, g) in _processes().items() if g == group}


def _family(pid: int) -> set[int]:
    """`pid` and its live descendants (postgres' children leave its process group with setsid)."""
    table = _processes()
    family, grown = {pid} & set(table), True
    while grown:
        children = {p for p, (parent, _) in table.items() if parent in family} - family
        family |= children
        grown = bool(children)
    return family


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _nobody_listens(port: int) -> bool:
    # Not a bind test: connections we closed leave the port in TIME_WAIT for a minute.
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) != 0


def _query(uri: str, sql: str):
    """Rows of `sql` (None for a statement without rows), committed; psycopg is MLflow's driver here."""
    import psycopg

    with psycopg.connect(uri, connect_timeout=10) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description is not None else None


def test_free_port_can_be_bound_on_loopback():
    port = free_port()
    assert 1024 <= port <= 65535 and _port_is_free(port)


@needs_postgres
def test_postgres_answers_on_loopback_only_and_stops_with_all_its_processes(pg_folder):
    with start_postgres(pg_folder / "data", durable=False) as pg:
        password = (pg_folder / "data" / "peppp.password").read_text().strip()
        assert len(password) >= 24 and pg.uri == f"postgresql://peppp:{password}@127.0.0.1:{pg.port}/mlflow"
        assert (pg_folder / "data" / "peppp.password").stat().st_mode & 0o077 == 0
        # Issue 15, probe 12: no trust. Without the password (or with a wrong one) loopback is refused too.
        import psycopg

        for uri in (pg.uri.replace(f":{password}@", "@"), pg.uri.replace(password, "wrong")):
            with pytest.raises(psycopg.OperationalError, match="password"):
                _query(uri, "SELECT 1")
        assert 0 < pg.start_seconds < 60
        assert _query(pg.uri, "SELECT current_database()") == [("mlflow",)]
        assert _query(pg.uri, "SHOW listen_addresses") == [("127.0.0.1",)]
        assert _query(pg.uri, "SHOW unix_socket_directories") == [("",)]
        family = _family(pg.pid)
        assert len(family) > 1  # the postmaster and its background workers
    assert not pg.running() and not family & set(_processes())
    assert _nobody_listens(pg.port)
    pg.stop()  # idempotent


@needs_postgres
def test_postgres_keeps_its_data_across_restart_and_a_new_start_on_the_same_folder(pg_folder):
    data = pg_folder / "data"
    pg = start_postgres(data, durable=False)
    try:
        _query(pg.uri, "CREATE TABLE t (x int)")
        _query(pg.uri, "INSERT INTO t VALUES (7)")
        pg.restart()
        assert _query(pg.uri, "SELECT x FROM t") == [(7,)]
    finally:
        pg.stop()
    with start_postgres(data, port=pg.port) as again:  # an existing cluster starts as it is
        assert _query(again.uri, "SELECT x FROM t") == [(7,)]


@needs_postgres
def test_a_busy_port_is_one_pepppError_quoting_the_server_log(pg_folder):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PepppError, match=r"postgres exited with status \d+ before answering .* ends: .*"):
            start_postgres(pg_folder / "data", port=port, durable=False)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"database": "Bad-Name"}, "database name 'Bad-Name'"),
        ({"port": 70000}, "port 70000 must be an integer in 1..65535"),
        ({"port": True}, "port True"),
    ],
)
def test_bad_postgres_arguments_are_one_pepppError(tmp_path, arguments, message):
    with pytest.raises(PepppError, match=message):
        start_postgres(tmp_path / "data", **arguments)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
@needs_postgres
def test_as_root_a_folder_the_postgres_user_cannot_enter_is_one_pepppError(tmp_path):
    # pytest's tmp folders are 0700 root: the postgres user cannot reach a data folder there.
    with pytest.raises(PepppError, match="cannot enter"):
        start_postgres(tmp_path / "data")


def test_a_bin_folder_without_postgres_is_one_pepppError(tmp_path, monkeypatch):
    monkeypatch.setenv("PEPPP_POSTGRES_BIN", str(tmp_path))
    with pytest.raises(PepppError, match="PEPPP_POSTGRES_BIN=.* holds no postgres program"):
        postgres_bin_dir()


@pytest.mark.slow  # an MLflow server takes 10-40 s to start
def test_mlflow_server_serves_restarts_on_its_port_and_stops_its_process_group(tmp_path):
    from mlflow import MlflowClient

    server = start_mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts",
                                 log_path=tmp_path / "server.log")
    try:
        assert server.uri == f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{server.uri}/health", timeout=10) as response:
            assert response.read() == b"OK"
        experiment_id = MlflowClient(server.uri).create_experiment("kept")
        group = server.pid
        server.restart()
        assert server.pid != group and _group_members(group) == set()
        assert MlflowClient(server.uri).get_experiment(experiment_id).name == "kept"
        group = server.pid
    finally:
        server.stop()
    assert _group_members(group) == set() and _nobody_listens(server.port)
    assert "Uvicorn running on http://127.0.0.1:" in (tmp_path / "server.log").read_text()


@pytest.mark.slow
def test_an_mlflow_server_that_exits_at_start_is_one_pepppError_quoting_its_log(tmp_path):
    # An unknown scheme fails at once; an unreachable PostgreSQL would be retried by MLflow for ~100 s.
    with pytest.raises(PepppError, match=r"mlflow server exited with status \d+ before answering .*unsupported URI"):
        start_mlflow_server("nosuchdb://x/y", tmp_path / "artifacts", log_path=tmp_path / "server.log")


def test_a_backend_that_is_not_a_database_uri_is_one_pepppError(tmp_path):
    with pytest.raises(PepppError, match="backend URI '/some/folder' must be a database URI"):
        start_mlflow_server("/some/folder", tmp_path / "artifacts")
