"""Prefect flows: orchestration only, over the library's calls.

- `meta_train`: datasets x configurations -> training tasks -> cell runs (resumable).
- `active_search`: a new dataset -> rounds of design, training, logging, re-estimation -> frontier.
- `register_frontier_flow`: rebuild from the store, complete, frontier, register (no training).
- `format_report_flow`: which formats are on an experiment's frontiers, best pick per budget (no training).
- `demo`: the main job on embedded defaults (a small meta-dataset, a search, a registered frontier).

The flows are imported lazily, so that `prepare_cli_environment` can set Prefect's environment before
Prefect is first imported.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request

from peppp.errors import PepppError

_FLOWS = {
    "meta_train": "flows.meta_train",
    "active_search": "flows.active_search",
    "register_frontier_flow": "flows.register_frontier",
    "demo": "flows.demo",
    "format_report_flow": "flows.format_report",
}
__all__ = ["active_search", "check_prefect_api", "demo", "format_report_flow", "meta_train", "prepare_cli_environment",
           "register_frontier_flow"]


def __getattr__(name: str):
    if name in _FLOWS:
        import importlib

        return getattr(importlib.import_module(_FLOWS[name]), name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")


def prepare_cli_environment() -> None:
    """Settings for running a flow from the `peppp` command: no analytics, run logs to the Prefect server
    but only warnings on the terminal (a progress bar shows the work), and no traceback for bad input
    (the command prints it in one line).

    Explicit environment settings win. Call before the first import of prefect for the environment to
    take effect.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The run loggers' INFO lines (planned, skipped, trained, registered) go to the Prefect server, where
    # a run's page shows them; the terminal gets warnings and errors only (a progress bar shows the work).
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL", "WARNING")
    # The ephemeral server's 20 s start-up limit is too tight on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # The flow and task run loggers report the exception that ended a run, traceback included.
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropBadInput) for f in logger.filters):
            logger.addFilter(_DropBadInput())


class _DropBadInput(logging.Filter):
    """Drops Prefect's report of a flow that stopped on a PepppError: the command reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PepppError):
            return False
        message = record.getMessage()
        # a flow's own report ("... PepppError(...)") and a task's ("... exception PepppError: ...")
        return "PepppError(" not in message and "exception PepppError:" not in message


def check_prefect_api(timeout_s: float = 3.0) -> None:
    """With PREFECT_API_URL set, check that the server answers; without it, Prefect runs a local
    temporary server and there is nothing to check."""
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if not url:
        return
    try:
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PepppError(
            f"Prefect server {url} is unreachable ({reason}); start it (prefect server start) or unset PREFECT_API_URL"
        ) from None
