"""Test-wide settings: offline, quiet, and caches that survive between runs."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_DIR = ROOT.parent / "shared" / "meta" / "paper88x99"

# Quiet and offline: no telemetry, no analytics, a project-local Prefect home.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
# qtorch and our kernels JIT-compile once; keep the build between test runs.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "peppp" / "torch_extensions"))

# The machine has 2 cores shared by test processes; 2 torch threads on small tensors only contend.
import torch  # noqa: E402

torch.set_num_threads(1)

# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors (test_quant_triton.py);
# it must be chosen before the kernels are first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Prefect: quiet logs (and no "Logging error" at interpreter exit from its handlers).
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The ephemeral Prefect server's 20 s start-up limit is too tight when the 2 cores are busy.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


import shutil  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory):
    """An MLflow sqlite store migrated once per test session (migrations take seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def store_uri(tmp_path, monkeypatch, _migrated_db) -> str:
    """MLFLOW_TRACKING_URI pointing at an empty store in this test's tmp_path."""
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(_migrated_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def flag_only_store(tmp_path, monkeypatch, _migrated_db) -> str:
    """An empty store passed by --tracking-uri only (MLFLOW_TRACKING_URI unset, so a command that
    ignored the flag would not find it); the command tests' store."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(_migrated_db, db)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{db}"
