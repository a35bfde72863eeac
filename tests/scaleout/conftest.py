"""One PostgreSQL and one MLflow tracking server on it (with its artifact store) for the scale-out tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from peppp.errors import PepppError
from devtools.services import (
    Service,
    postgres_bin_dir,
    start_mlflow_server,
    start_postgres,
)


@pytest.fixture(scope="package")
def service_folder():
    """A folder for the databases, artifacts and logs. As root PostgreSQL runs as `postgres`, which
    cannot enter pytest's 0700 tmp folders, so this one is made under /tmp with mode 0711."""
    try:
        postgres_bin_dir()
    except PepppError as exc:
        pytest.skip(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="peppp-scaleout-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def postgres(service_folder) -> Service:
    with start_postgres(service_folder / "postgres", durable=False) as service:
        yield service


@pytest.fixture(scope="package")
def server(postgres, service_folder) -> Service:
    """`mlflow server` over the PostgreSQL database, serving artifacts from service_folder/artifacts."""
    log_path = service_folder / "mlflow.log"
    with start_mlflow_server(postgres.uri, service_folder / "artifacts", log_path=log_path) as service:
        yield service
