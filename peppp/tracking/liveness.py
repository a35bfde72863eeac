"""Which parent runs are still being worked on: heartbeats, and clean-up after those that are not.

A sweep, search round or import holds a parent run open while it works. The process holding it tags it
with who it is (`peppp.process`: host, pid, start tick) and beats a heartbeat into a tag
(`peppp.heartbeat_ms`) every `HEARTBEAT_INTERVAL_S`, as optuna's storages do for trials. A parent run
still RUNNING is taken for dead when its heartbeat is older than `STALE_AFTER_S` (on any host), or at
once when it names a process on this host that is gone (a SIGKILLed sweep rerun straight away).
Recovery closes dead parents as KILLED, deletes the cell runs they left half-written and frees the
claims they held.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from peppp.tracking.claims import list_claims, release_claim
from peppp.tracking.store import connect, search_all_runs
from peppp.tracking.tags import TAG_CELL_KEY, TAG_HEARTBEAT, TAG_KIND, TAG_PARENT, TAG_PROCESS

HEARTBEAT_INTERVAL_S = 30.0
# Ten missed beats: a loaded machine or a store restart of a minute does not make a live sweep dead.
STALE_AFTER_S = 300.0


def process_tag() -> str:
    """`host:pid:start` of this process; `start` tells a live process from a later one reusing its pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (start time since boot); the command name in field 2 may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def process_gone(tag: str | None) -> bool:
    """Whether the process a `process_tag` names is known to be gone: only for this host (a process on
    another host is judged by its heartbeat alone)."""
    if not tag:
        return False
    host, _, rest = tag.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if Path("/proc").is_dir():
        return not (Path(f"/proc/{pid}").exists() and _start_ticks(pid) == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def liveness_tags(*, clock: Callable[[], float] = time.time) -> dict[str, str]:
    """The tags a parent run starts with: this process and a first heartbeat."""
    return {TAG_PROCESS: process_tag(), TAG_HEARTBEAT: str(int(clock() * 1000))}


def is_dead(tags: dict[str, str], start_ms: int, *, now_ms: int, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether a RUNNING parent run with these tags is dead at `now_ms` (see the module doc). A run
    with no heartbeat (written by an older peppp) ages from its start."""
    if process_gone(tags.get(TAG_PROCESS)):
        return True
    try:
        beat_ms = int(tags.get(TAG_HEARTBEAT, start_ms))
    except ValueError:
        beat_ms = start_ms
    return now_ms - beat_ms > stale_after_s * 1000


class Heartbeat:
    """Beats `run_id`'s heartbeat tag every `interval_s` from a daemon thread until `stop()`.

    A failed beat (the store restarting, say) is skipped: the run only ages until the next one.
    """

    def __init__(self, run_id: str, *, tracking_uri: str | None, interval_s: float = HEARTBEAT_INTERVAL_S,
                 clock: Callable[[], float] = time.time):
        self.run_id, self.tracking_uri, self.interval_s, self.clock = run_id, tracking_uri, interval_s, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"peppp-heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def beat(self) -> None:
        try:
            connect(self.tracking_uri, create=False).set_tag(self.run_id, TAG_HEARTBEAT, str(int(self.clock() * 1000)))
        except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one catches up
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def recover_orphans(
    experiment: str,
    *,
    tracking_uri: str | None = None,
    stale_after_s: float = STALE_AFTER_S,
    clock: Callable[[], float] = time.time,
) -> tuple[int, int]:
    """Clean up after work that died mid-flow: returns (cell runs deleted, parent runs closed).

    A RUNNING parent run that is dead (`is_dead`) is closed as KILLED. A cell run still RUNNING was cut
    off between its creation and its completion (MLflow writes a run in several steps) unless its
    parent is alive and logging it right now; it is deleted, so it never counts as a finished cell.
    Claims held by parents that are no longer RUNNING are freed (`free_dead_claims`).
    """
    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return 0, 0
    now_ms = int(clock() * 1000)
    running = search_all_runs(client, found.experiment_id, "attributes.status = 'RUNNING'", ViewType.ACTIVE_ONLY)
    parents = {r.info.run_id: r for r in running if TAG_KIND in r.data.tags}
    alive, closed = set(), 0
    for run_id, run in parents.items():
        if is_dead(run.data.tags, run.info.start_time, now_ms=now_ms, stale_after_s=stale_after_s):
            client.set_terminated(run_id, status="KILLED")
            closed += 1
        else:
            alive.add(run_id)
    deleted = 0
    for run in running:
        tags = run.data.tags
        if TAG_CELL_KEY in tags and tags.get(TAG_PARENT) not in alive:
            client.delete_run(run.info.run_id)
            deleted += 1
    free_dead_claims(experiment, tracking_uri=client.tracking_uri, client=client)
    return deleted, closed


def free_dead_claims(experiment: str, *, tracking_uri: str | None = None, client: MlflowClient | None = None) -> int:
    """Release claims whose owner (a parent run) is no longer RUNNING, e.g. closed as KILLED by
    `recover_orphans`; returns how many."""
    client = client or connect(tracking_uri)
    freed = 0
    status: dict[str, str] = {}
    for claim in list_claims(experiment, tracking_uri=client.tracking_uri):
        if claim.owner not in status:
            try:
                status[claim.owner] = client.get_run(claim.owner).info.status
            except MlflowException:
                status[claim.owner] = "GONE"
        if status[claim.owner] != "RUNNING":
            freed += release_claim(experiment, claim.cell_key, owner=claim.owner, tracking_uri=client.tracking_uri)
    return freed
