"""prefect-dask's task runner, made to share this process's Prefect API with its local workers."""

from __future__ import annotations

from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_EPHEMERAL_ENABLED,
    temporary_settings,
)
from prefect_dask import DaskTaskRunner

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class SharedApiDaskTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner whose local workers report to the flow's own Prefect server.

    With no PREFECT_API_URL, Prefect runs a temporary server in each process that needs one, so every
    Dask worker would start its own, all on one sqlite database: on a busy machine they lock each other
    and leave task runs hanging, and a killed worker orphans its server. Instead the flow's temporary
    server is handed to the workers in the settings that travel with each task. Workers on other
    machines cannot reach a loopback server: for them, set PREFECT_API_URL to a real Prefect server
    (docs/scaleout.md), as a production cluster has.
    """

    def __enter__(self):
        super().__enter__()
        if is_local(self.address):
            url = ephemeral_api_url()
            if url is not None:
                self._exit_stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
        return self


def is_local(address: str | None) -> bool:
    """True for a cluster the runner starts itself, or a scheduler on this machine's loopback."""
    if address is None or address.startswith("inproc://"):
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in LOCAL_HOSTS


def ephemeral_api_url() -> str | None:
    """The URL of this process's temporary Prefect server (started if need be); None when a Prefect
    server is configured or temporary servers are off."""
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    return server.api_url
