"""Claims on cells in a sqlite store: one holder at a time, renewal, expiry, release, races between processes."""

from __future__ import annotations

import multiprocessing

import pytest

from peppp.errors import PepppError
from peppp.tracking import claim_cell, list_claims, release_claim


def test_one_holder_until_released(store_uri):
    assert claim_cell("exp", "digits|fp32|tiny", owner="sweep-a")
    assert not claim_cell("exp", "digits|fp32|tiny", owner="sweep-b")
    assert claim_cell("exp", "digits|fp32|tiny", owner="sweep-a")  # a retry of the holder renews it
    assert [(c.cell_key, c.owner) for c in list_claims("exp")] == [("digits|fp32|tiny", "sweep-a")]
    assert not release_claim("exp", "digits|fp32|tiny", owner="sweep-b")  # only the holder releases
    assert release_claim("exp", "digits|fp32|tiny", owner="sweep-a")
    assert list_claims("exp") == []
    assert claim_cell("exp", "digits|fp32|tiny", owner="sweep-b")


def test_claims_are_per_experiment_and_key(store_uri):
    assert claim_cell("exp", "k1", owner="a")
    assert claim_cell("exp", "k2", owner="b")
    assert claim_cell("other", "k1", owner="b")
    assert [(c.cell_key, c.owner) for c in list_claims("exp")] == [("k1", "a"), ("k2", "b")]


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, now: float = 1_900_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_expired_claim_is_taken_over(store_uri):
    clock = Clock()
    assert claim_cell("exp", "k", owner="dead", ttl_s=10, clock=clock)
    clock.now += 9.9
    assert not claim_cell("exp", "k", owner="alive", clock=clock)
    clock.now += 0.2
    assert claim_cell("exp", "k", owner="alive", ttl_s=60, clock=clock)
    (claim,) = list_claims("exp")
    assert claim.owner == "alive" and claim.expires_ms == int(clock.now * 1000) + 60_000


def test_renewal_moves_the_expiry_on(store_uri):
    clock = Clock()
    assert claim_cell("exp", "k", owner="a", ttl_s=1, clock=clock)
    assert claim_cell("exp", "k", owner="a", ttl_s=60, clock=clock)
    clock.now += 30
    assert not claim_cell("exp", "k", owner="b", clock=clock)
    clock.now += 31
    assert claim_cell("exp", "k", owner="b", clock=clock)


@pytest.mark.parametrize(
    ("owner", "ttl_s", "needle"), [("", 10.0, "owner"), ("a", 0.0, "ttl_s"), ("a", -1.0, "ttl_s")]
)
def test_bad_input_is_one_line(store_uri, owner, ttl_s, needle):
    with pytest.raises(PepppError, match=needle) as info:
        claim_cell("exp", "k", owner=owner, ttl_s=ttl_s)
    assert "\n" not in str(info.value)


def _race(uri: str, owner: str, start, out) -> None:
    start.wait()
    out.put((owner, [claim_cell("exp", f"k{i}", owner=owner, tracking_uri=uri) for i in range(5)]))


def test_processes_racing_for_the_same_cells_get_each_once(store_uri):
    claim_cell("exp", "warm-up", owner="x")  # the table exists before the race, as after any first claim
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_race, args=(store_uri, f"p{n}", start, out)) for n in range(4)]
    for w in workers:
        w.start()
    start.set()
    results = dict(out.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=30)
    for i in range(5):
        assert sum(won[i] for won in results.values()) == 1
    holders = {c.cell_key: c.owner for c in list_claims("exp")}
    assert all(results[holders[f"k{i}"]][i] for i in range(5))
