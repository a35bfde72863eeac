"""Where a flow's tasks run: local threads (the default), a running Dask scheduler, or a local Dask
cluster of single-threaded worker processes."""

from __future__ import annotations

import os

from peppp.errors import PepppError

DASK_ADDRESS_ENV = "PEPPP_DASK_ADDRESS"
DEFAULT_THREADS = 2
LOOPBACK = "127.0.0.1"
DASK_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")
# A cell trains on one torch thread; more per worker process only contend for the cores.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def check_dask_scheduler(address: str, *, timeout_s: float = 3.0) -> None:
    """A tcp:// or tls:// scheduler must accept a connection within `timeout_s` (Dask itself would wait
    for 30 s and more, then fail with pages of tracebacks)."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith(("tcp://", "tls://")):
        return
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise PepppError(f"Dask scheduler address {address!r} needs a host and a port, e.g. tcp://127.0.0.1:8786")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise PepppError(f"Dask scheduler {address} is unreachable ({exc.strerror or exc}); start it "
                         "(dask scheduler) or leave --dask-address out to train here") from None


def task_runner(
    *,
    dask_address: str | None = None,
    local_workers: int | None = None,
    threads: int = DEFAULT_THREADS,
    threads_per_worker: int = 1,
):
    """The task runner for a flow: `local_workers` -> a `LocalCluster` of that many worker processes
    on 127.0.0.1 with `threads_per_worker` threads each (1 for CPU cells; K for K cells per GPU, worker
    i training on GPU i modulo the GPUs); else `dask_address` (or $PEPPP_DASK_ADDRESS) -> that
    scheduler; else a pool of `threads` threads in this process."""
    if local_workers is not None and dask_address:
        raise PepppError("give either a Dask scheduler address or a number of local Dask workers, not both")
    if local_workers is not None or dask_address or os.environ.get(DASK_ADDRESS_ENV, "").strip():
        # Dask reads its logging configuration at import; its INFO lines would bury the progress bar.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    if local_workers is not None:
        if isinstance(local_workers, bool) or not isinstance(local_workers, int) or local_workers < 1:
            raise PepppError(f"local Dask workers {local_workers!r} must be a positive integer")
        if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int) or threads_per_worker < 1:
            raise PepppError(f"threads per Dask worker {threads_per_worker!r} must be a positive integer")
        from flows._dask import SharedApiDaskTaskRunner

        return SharedApiDaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": local_workers,
                "threads_per_worker": threads_per_worker,
                "processes": True,
                "host": LOOPBACK,
                "dashboard_address": None,
                "env": dict(ONE_THREAD_ENV),
            },
        )
    address = dask_address or os.environ.get(DASK_ADDRESS_ENV, "").strip() or None
    if address is not None:
        if not address.startswith(DASK_SCHEMES):
            raise PepppError(
                f"Dask scheduler address {address!r} must start with {', '.join(DASK_SCHEMES)} (e.g. tcp://127.0.0.1:8786)"
            )
        from flows._dask import SharedApiDaskTaskRunner

        return SharedApiDaskTaskRunner(address=address)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise PepppError(f"threads {threads!r} must be a positive integer")
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=threads)
