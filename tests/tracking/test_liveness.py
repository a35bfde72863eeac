"""Parent runs' heartbeats and recovery after dead work, with a clock the tests move by hand."""

from __future__ import annotations

import socket

import pytest
from mlflow import MlflowClient

from peppp.tracking import claim_cell, list_claims, parent_run, recover_orphans, start_parent_run
from peppp.tracking.liveness import STALE_AFTER_S, Heartbeat, is_dead, process_gone, process_tag
from peppp.tracking.tags import TAG_CELL_KEY, TAG_HEARTBEAT, TAG_PARENT, TAG_PROCESS

ELSEWHERE = "another-host.example:4242:77"  # a process on another machine: only its heartbeat tells


class Clock:
    def __init__(self, now: float = 1_900_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _parent(name: str, *, process: str, beat_s: float, uri: str) -> str:
    return start_parent_run(name, kind="sweep", tags={TAG_PROCESS: process, TAG_HEARTBEAT: str(int(beat_s * 1000))},
                            tracking_uri=uri)


def test_a_sweep_on_another_host_is_alive_while_it_beats_and_dead_once_it_stops(store_uri):
    clock = Clock()
    parent = _parent("remote", process=ELSEWHERE, beat_s=clock.now, uri=store_uri)
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("remote").experiment_id
    half = client.create_run(experiment_id, tags={TAG_CELL_KEY: "digits|fp32|tiny", TAG_PARENT: parent}).info.run_id
    assert claim_cell("remote", "meta/digits|fp32|tiny/seed=0", owner=parent, clock=clock)

    clock.now += STALE_AFTER_S - 1  # still within the grace period: its half-written cell is its own business
    assert recover_orphans("remote", tracking_uri=store_uri, clock=clock) == (0, 0)
    assert client.get_run(parent).info.status == "RUNNING"

    clock.now += 2  # no beat for longer than the grace period: dead, whatever host it ran on
    assert recover_orphans("remote", tracking_uri=store_uri, clock=clock) == (1, 1)
    assert client.get_run(parent).info.status == "KILLED"
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    assert list_claims("remote") == []  # its claims are freed with it


def test_a_process_of_this_host_that_is_gone_is_dead_at_once():
    here = socket.gethostname()
    assert not process_gone(process_tag())
    assert process_gone(f"{here}:999999999:0")
    assert not process_gone(ELSEWHERE) and not process_gone("") and not process_gone(None)
    now_ms = 1_900_000_000_000
    fresh = {TAG_PROCESS: f"{here}:999999999:0", TAG_HEARTBEAT: str(now_ms)}
    assert is_dead(fresh, now_ms, now_ms=now_ms)
    assert not is_dead({TAG_PROCESS: ELSEWHERE, TAG_HEARTBEAT: str(now_ms)}, now_ms, now_ms=now_ms + 1000)
    # a parent run written before heartbeats existed ages from its start
    assert is_dead({TAG_PROCESS: ELSEWHERE}, now_ms, now_ms=now_ms + int(STALE_AFTER_S * 1000) + 1)


def test_a_heartbeat_writes_the_clock_into_the_run(store_uri):
    run_id = start_parent_run("beats", kind="sweep", tracking_uri=store_uri)
    Heartbeat(run_id, tracking_uri=store_uri, clock=lambda: 1_234.5678).beat()
    assert MlflowClient(store_uri).get_run(run_id).data.tags[TAG_HEARTBEAT] == "1234567"


def test_parent_run_tags_its_process_and_ends_by_how_the_block_ends(store_uri):
    client = MlflowClient(store_uri)
    with parent_run("ends", kind="sweep", tracking_uri=store_uri) as finished:
        tags = client.get_run(finished).data.tags
        assert tags[TAG_PROCESS] == process_tag() and int(tags[TAG_HEARTBEAT]) > 0
    with pytest.raises(ValueError), parent_run("ends", kind="sweep", tracking_uri=store_uri) as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), parent_run("ends", kind="sweep", tracking_uri=store_uri) as killed:
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError), parent_run("ends", kind="import", tracking_uri=store_uri,
                                                 delete_on_error=True) as discarded:
        raise RuntimeError("half an import")
    statuses = {run_id: client.get_run(run_id).info.status for run_id in (finished, failed, killed, discarded)}
    assert statuses == {finished: "FINISHED", failed: "FAILED", killed: "KILLED", discarded: "FAILED"}
    assert client.get_run(discarded).info.lifecycle_stage == "deleted"
    assert client.get_run(failed).info.lifecycle_stage == "active"
