"""fetch_frontier reads frontier.json and nothing else: a pickle and Python code planted beside it stay inert."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from peppp.frontier import Frontier, FrontierPoint
from peppp.registry import fetch_frontier, register_frontier
from peppp.tracking.store import get_or_create_experiment

FRONTIER = Frontier(
    dataset="untrusted",
    meta_experiment="meta-paper",
    method="ed",
    points=(
        FrontierPoint("e3m1/e6m7", 100.0, 0.40, 0.05, False, ("fit",)),
        FrontierPoint("e4m3/e8m7", 150.0, 0.30, 0.0, True, ("r1",)),
    ),
)
LOADER = "peppp_bait_loader"

# Python's audit hooks see every open(), import and unpickled global of this process; one hook,
# recording only while a list is set (hooks cannot be removed).
_seen: list[tuple[str, str]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _seen is None:
        return
    if event == "open" and isinstance(args[0], (str, bytes, Path)):
        _seen.append((event, str(args[0])))
    elif event == "pickle.find_class":
        _seen.append((event, f"{args[0]}.{args[1]}"))
    elif event == "import" and args[0] == LOADER:
        _seen.append((event, args[0]))


sys.addaudithook(_audit)


class _Bait:
    """Unpickling this writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


def _plant(folder: Path, marker: Path) -> None:
    """A pickle, a Python module and an MLmodel that would load both, as a pyfunc model folder has them."""
    folder.mkdir()
    (folder / "python_model.pkl").write_bytes(pickle.dumps(_Bait(marker)))
    (folder / f"{LOADER}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    (folder / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        f"    loader_module: {LOADER}\n"
        "    code: .\n"
        "    python_model: python_model.pkl\n"
        "    python_version: 3.11.0\n"
    )


def test_fetch_downloads_only_frontier_json_and_runs_nothing_planted_beside_it(store_uri, tmp_path):
    global _seen
    marker = tmp_path / "executed"
    client = MlflowClient(store_uri)
    run_id = client.create_run(get_or_create_experiment("frontiers", client=client)).info.run_id
    _plant(tmp_path / "bait", marker)
    client.log_artifacts(run_id, str(tmp_path / "bait"), "frontier")
    name, _ = register_frontier(FRONTIER, run_id=run_id, client=client)
    artifact_root = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    planted = {p.name for p in (artifact_root / "frontier").iterdir()}
    assert {"python_model.pkl", f"{LOADER}.py", "MLmodel", "frontier.json"} <= planted

    _seen = []
    try:
        fetched = fetch_frontier(name, tracking_uri=store_uri)
    finally:
        seen, _seen = _seen, None
    assert fetched == FRONTIER
    assert not marker.exists(), f"fetching ran planted code: {marker.read_text()}"
    assert [s for s in seen if s[0] == "pickle.find_class"] == []
    assert [s for s in seen if s[0] == "import"] == []
    read = {Path(path).name for event, path in seen if event == "open" and path.startswith(str(artifact_root))}
    assert read == {"frontier.json"}

    # The bait is live: a fetch that loaded the version as an MLflow pyfunc model would have run it.
    import mlflow.pyfunc

    with pytest.raises(AttributeError, match="_load_pyfunc"):  # the planted module ran, then had no loader
        mlflow.pyfunc.load_model(str(artifact_root / "frontier"))
    sys.modules.pop(LOADER, None)
    assert marker.read_text() == "imported"
    marker.unlink()
    pickle.loads((artifact_root / "frontier" / "python_model.pkl").read_bytes())
    assert marker.read_text() == "unpickled"
