"""Local PostgreSQL and MLflow tracking servers for tests, benchmarks and docs, bound to 127.0.0.1.

Each runs in its own process group (new session) so that stopping it ends every process it spawned.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from peppp.errors import PepppError

LOOPBACK = "127.0.0.1"
POSTGRES_SUPERUSER = "peppp"
# The Debian package's system user: postgres refuses to run as root, so root runs it as this user.
POSTGRES_SYSTEM_USER = "postgres"
POSTGRES_BIN_ENV = "PEPPP_POSTGRES_BIN"
INSTALL_HINT = "run scripts/install-postgres.sh (apt-get install postgresql)"
LOG_TAIL_CHARS = 1500
_POLL_S = 0.2


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the OS picks it; another process may take it before us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(eq=False)
class Service:
    """A server process started here, ready when returned by `start_postgres` or `start_mlflow_server`.

    Lifecycle: started and waited for by a `start_*` function; `restart()` stops it and starts the same
    command on the same port again; `stop()` (idempotent; also on leaving a `with` block) ends its whole
    process group. `uri` is what clients connect to; `start_seconds` is how long the last start took
    until the service answered.
    """

    name: str
    uri: str
    host: str
    port: int
    log_path: Path
    start_seconds: float = field(init=False, default=float("nan"))
    _command: Sequence[str] = field(repr=False, default=())
    _env: dict[str, str] | None = field(repr=False, default=None)
    _cwd: Path | None = field(repr=False, default=None)
    _user: str | None = field(repr=False, default=None)
    _ready: Callable[[], bool] | None = field(repr=False, default=None)
    _timeout_s: float = field(repr=False, default=60.0)
    _stop_signal: int = field(repr=False, default=signal.SIGTERM)
    _process: subprocess.Popen | None = field(repr=False, default=None)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Service:
        """Start the process and wait until it answers; a PepppError (with the log's tail) otherwise."""
        if self.running():
            return self
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                list(self._command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                **_as_user(self._user),
            )
        try:
            _wait_until_ready(self, timeout_s=self._timeout_s)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """End the process group: the stop signal first, SIGKILL for whatever is left after `timeout_s`."""
        process, self._process = self._process, None
        if process is None:
            return
        group = process.pid  # start_new_session made the process its group's leader
        _signal_group(group, self._stop_signal)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            process.wait()
        # Children (uvicorn workers, postgres backends) may outlive the leader by a moment.
        deadline = time.monotonic() + timeout_s
        while _group_alive(group):
            if time.monotonic() > deadline:
                _signal_group(group, signal.SIGKILL)
                deadline = time.monotonic() + timeout_s
            time.sleep(0.05)

    def restart(self) -> Service:
        """Stop, then start the same command on the same port (the data and the store stay)."""
        self.stop()
        return self.start()

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_until_ready(service: Service, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if service._process is not None and service._process.poll() is not None:
            raise PepppError(
                f"{service.name} exited with status {service._process.returncode} before answering on "
                f"{service.host}:{service.port}; its log {service.log_path} ends: {_one_line(service.log_tail())}"
            )
        if service._ready is not None and service._ready():
            return
        if time.monotonic() > deadline:
            raise PepppError(
                f"{service.name} did not answer on {service.host}:{service.port} within {timeout_s:g} s; "
                f"its log {service.log_path} ends: {_one_line(service.log_tail())}"
            )
        time.sleep(_POLL_S)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-4:]) if lines else "(empty)"


def _as_user(user: str | None) -> dict:
    """Popen arguments that drop root to `user` (its own group, no supplementary groups)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


# ----------------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path:
    """Where `initdb` and `postgres` live: $PEPPP_POSTGRES_BIN, else Debian's newest
    /usr/lib/postgresql/<version>/bin, else the folder of `postgres` on PATH."""
    configured = os.environ.get(POSTGRES_BIN_ENV)
    if configured:
        path = Path(configured)
        if not (path / "postgres").is_file():
            raise PepppError(
                f"{POSTGRES_BIN_ENV}={configured} holds no postgres program; point it at PostgreSQL's bin folder"
            )
        return path
    versions = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "postgres").is_file() and candidate.parent.name.isdigit():
            versions.append((int(candidate.parent.name), candidate))
    if versions:
        return max(versions)[1]
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise PepppError(f"PostgreSQL is not installed (no postgres program found); {INSTALL_HINT}")


def _postgres_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        raise PepppError(
            f"PostgreSQL cannot run as root and there is no {POSTGRES_SYSTEM_USER!r} user; {INSTALL_HINT}"
        ) from None
    return POSTGRES_SYSTEM_USER


def _check_reachable(path: Path, user: str) -> None:
    """`user` must be able to enter every folder above `path` (pytest's tmp folders are root-only)."""
    entry = pwd.getpwnam(user)
    for folder in path.parents:
        st = folder.stat()
        if st.st_uid == entry.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == entry.pw_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            raise PepppError(
                f"PostgreSQL runs as user {user!r}, which cannot enter {folder}; put the data folder "
                f"{path} somewhere {user!r} can reach (e.g. a folder under /tmp with mode 0711)"
            )


def start_postgres(
    data_dir: str | os.PathLike,
    *,
    port: int | None = None,
    database: str = "mlflow",
    durable: bool = True,
    timeout_s: float = 60.0,
) -> Service:
    """A PostgreSQL server on 127.0.0.1:`port` (a free one if None) over `data_dir`, with `database`.

    A new cluster is made (`initdb`, superuser `peppp` with a generated password, scram-sha-256
    authentication on loopback only: another local user cannot connect) when `data_dir` holds none; the
    password is kept in `data_dir/peppp.password` (mode 0600). An existing cluster is started as it is.
    As root the server runs as the Debian `postgres` user. `durable=False` turns off fsync for throwaway
    test databases. The service's `uri` is `postgresql://peppp:<password>@127.0.0.1:<port>/<database>`,
    which MLflow (SQLAlchemy 2.1) opens with the psycopg 3 driver. The log is `data_dir/postgres.log`.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
        raise PepppError(f"database name {database!r} must be lower-case letters, digits and '_'")
    port = free_port() if port is None else _check_port(port)
    bin_dir = postgres_bin_dir()
    data_dir = Path(data_dir).resolve()
    user = _postgres_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _check_reachable(data_dir, user)
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bin_dir, data_dir, user)
    password = _password(data_dir)
    log_path = data_dir / "postgres.log"
    settings = {
        "listen_addresses": LOOPBACK,
        "port": str(port),
        "unix_socket_directories": "",  # TCP on loopback only: no socket file in a shared folder
    }
    if not durable:
        settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
    command = [str(bin_dir / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    service = Service(
        name="postgres",
        uri=f"postgresql://{POSTGRES_SUPERUSER}{':' + password if password else ''}@{LOOPBACK}:{port}/{database}",
        host=LOOPBACK,
        port=port,
        log_path=log_path,
        _command=command,
        _env=_clean_env(),
        _cwd=data_dir,
        _user=user,
        _ready=lambda: _pg_isready(bin_dir, port),
        _timeout_s=timeout_s,
        _stop_signal=signal.SIGINT,  # postgres's "fast" shutdown: ends sessions, then a clean checkpoint
    )
    service.start()
    try:
        _ensure_database(bin_dir, port, database, password)
    except BaseException:
        service.stop()
        raise
    return service


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise PepppError(f"port {port!r} must be an integer in 1..65535")
    return port


def _clean_env() -> dict[str, str]:
    # libpq reads PG* variables; a caller's PGHOST or PGDATABASE must not redirect our commands.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


PASSWORD_FILE = "peppp.password"


def _initdb(bin_dir: Path, data_dir: Path, user: str | None) -> None:
    """A new cluster whose superuser has a generated password (no trust: any local user could connect)."""
    import secrets

    password = secrets.token_urlsafe(24)  # URL-safe: it goes into the service's URI as it is
    with tempfile.TemporaryDirectory(prefix="peppp-initdb-") as tmp:
        pwfile = Path(tmp) / "pw"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if user is not None:  # initdb runs as the postgres user and must read it
            entry = pwd.getpwnam(user)
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        command = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", POSTGRES_SUPERUSER,
                   "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        command += ["--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, env=_clean_env(), cwd=data_dir, **_as_user(user)
        )
    if done.returncode != 0:
        raise PepppError(f"initdb failed in {data_dir}: {_one_line(done.stderr or done.stdout)}")
    path = data_dir / PASSWORD_FILE
    path.write_text(password + "\n")
    os.chmod(path, 0o600)


def _password(data_dir: Path) -> str | None:
    """The superuser's password of a cluster made here (None for a cluster made before passwords)."""
    try:
        return (data_dir / PASSWORD_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def _pg_isready(bin_dir: Path, port: int) -> bool:
    command = [str(bin_dir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-U", POSTGRES_SUPERUSER]
    return subprocess.run(command, check=False, env=_clean_env(), timeout=30).returncode == 0


def _psql(bin_dir: Path, port: int, sql: str, password: str | None) -> str:
    command = [str(bin_dir / "psql"), "-h", LOOPBACK, "-p", str(port), "-U", POSTGRES_SUPERUSER, "-d", "postgres"]
    command += ["-v", "ON_ERROR_STOP=1", "-tAc", sql]
    env = _clean_env() | ({"PGPASSWORD": password} if password else {})
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise PepppError(f"psql on port {port} failed for {sql!r}: {_one_line(done.stderr)}")
    return done.stdout.strip()


def _ensure_database(bin_dir: Path, port: int, database: str, password: str | None) -> None:
    # `database` is checked against a strict pattern above, so it is safe inside the SQL text.
    if _psql(bin_dir, port, f"SELECT 1 FROM pg_database WHERE datname = '{database}'", password) != "1":
        _psql(bin_dir, port, f'CREATE DATABASE "{database}"', password)


# ----------------------------------------------------------------------------------------------------
# MLflow tracking server


def start_mlflow_server(
    backend_uri: str,
    artifacts_dir: str | os.PathLike,
    *,
    port: int | None = None,
    host: str = LOOPBACK,
    log_path: str | os.PathLike | None = None,
    timeout_s: float = 180.0,
) -> Service:
    """`mlflow server --workers 1` on `host`:`port` (a free port if None) over `backend_uri`.

    Artifacts are served by the server itself (`--serve-artifacts`) from `artifacts_dir`, so clients
    need no access to that folder. Job execution is off. The log goes to `log_path` (default: a new
    file in the temporary folder). `uri` is `http://<host>:<port>`.
    """
    if not isinstance(backend_uri, str) or ("://" not in backend_uri and not backend_uri.startswith("sqlite:")):
        raise PepppError(
            f"backend URI {backend_uri!r} must be a database URI such as postgresql://... or sqlite:///..."
        )
    port = free_port(host) if port is None else _check_port(port)
    artifacts = Path(artifacts_dir).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix=f"peppp-mlflow-server-{port}-", suffix=".log")
        os.close(handle)
        log_path = name
    # The backend URI (with the database's password) goes by environment, not on a command line `ps` shows.
    command = [sys.executable, "-m", "mlflow", "server"]
    command += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    env = dict(os.environ)
    env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1",
               MLFLOW_BACKEND_STORE_URI=backend_uri)
    uri = f"http://{host}:{port}"
    service = Service(
        name="mlflow server",
        uri=uri,
        host=host,
        port=port,
        log_path=Path(log_path),
        _command=command,
        _env=env,
        _ready=lambda: _http_ok(f"{uri}/health"),
        _timeout_s=timeout_s,
    )
    return service.start()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
