"""The register_frontier flow: re-estimate from the store as it is now, register a new version, train nothing."""

from __future__ import annotations

import shutil

import pytest

from flows.active_search import active_search
from flows.meta_train import meta_train
from flows.register_frontier import register_frontier_flow
from peppp.errors import PepppError
from peppp.registry import load_registered_frontier
from peppp.tracking import load_cells

HELD_OUT = "digits[3,5,8,9]"


@pytest.fixture
def store_uri(tmp_path, _migrated_db):
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_db, db)
    uri = f"sqlite:///{db}"
    meta_train("meta", ["digits", "digits[0-4]", "digits[5-9]"], ["e3m1/e6m7", "e5m3/e8m11", "fp32"],
               recipe="tiny", tracking_uri=uri)
    return uri


def test_reestimate_registers_a_new_version_from_the_same_measurements(store_uri):
    searched = active_search(HELD_OUT, "meta", n=2, rank=2, register_frontier=True, tracking_uri=store_uri)
    runs_before = len(load_cells("meta", tracking_uri=store_uri))

    summary = register_frontier_flow("digits[3,5,8,9]", "meta", rank=2, tracking_uri=store_uri)
    assert summary.registered == (searched.registered[0], searched.registered[1] + 1)
    assert set(summary.measured) == set(searched.measured) and summary.meta_datasets == 3
    assert len(load_cells("meta", tracking_uri=store_uri)) == runs_before  # nothing trained

    champion = load_registered_frontier(summary.registered[0], tracking_uri=store_uri)
    assert champion.version == summary.registered[1] and champion.aliases == ("champion",)
    frontier = champion.frontier
    assert frontier.method == searched.frontier.method == "adaptive"  # from the search's rounds
    old = {p.config: p for p in searched.frontier.points}
    for point in frontier.points:
        assert point.measured == old[point.config].measured
        assert point.error == pytest.approx(old[point.config].error, abs=1e-12)

    # More meta-training changes the embeddings, so the re-estimate moves; the probes stay measured.
    meta_train("meta", ["digits[1,4,7]"], ["e3m1/e6m7", "e5m3/e8m11", "fp32"], recipe="tiny", tracking_uri=store_uri)
    again = register_frontier_flow(HELD_OUT, "meta", rank=2, tracking_uri=store_uri)
    assert again.meta_datasets == 4 and again.registered[1] == summary.registered[1] + 1


def test_without_probe_runs_there_is_nothing_to_register(store_uri):
    with pytest.raises(PepppError, match=r"no finished probe runs of digits\[3,5,8,9\].*peppp search"):
        register_frontier_flow(HELD_OUT, "meta", rank=2, tracking_uri=store_uri)
