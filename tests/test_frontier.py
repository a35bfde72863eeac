"""The Frontier value: JSON schema and its validation, best_for(budget) with its certainty, CSV, plot."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from peppp.errors import PepppError
from peppp.frontier import SCHEMA, SCHEMA_VERSION, Frontier, FrontierPoint


def point(config, memory_mb, error, error_std=0.01, measured=False, run_ids=("fit",)):
    return FrontierPoint(config, memory_mb, error, error_std, measured, tuple(run_ids))


@pytest.fixture
def frontier():
    return Frontier(
        dataset="fashion-mnist-0-2-4-6",
        meta_experiment="meta-paper",
        method="ed",
        recipe="resnet18-10ep",
        points=(
            point("e3m1/e6m7", 100.0, 0.40, 0.05),
            point("e4m3/e8m7", 150.0, 0.30, 0.0, measured=True, run_ids=("r1", "r2")),
            point("e5m2/e8m7", 160.0, 0.35, None, measured=True, run_ids=("r3",)),  # dominated
            point("e5m7/e8m23", 300.0, 0.10, 0.02),
            point("e8m23/e8m23", 500.0, 0.10, 0.02),  # dominated: same error, more memory
        ),
    )


# ----------------------------------------------------------------------------------------------------
# JSON


def test_json_round_trip_keeps_every_field(frontier):
    text = frontier.to_json()
    data = json.loads(text)
    assert data["schema"] == SCHEMA and data["schema_version"] == SCHEMA_VERSION
    assert data["points"][2]["error_std"] is None and data["points"][1]["run_ids"] == ["r1", "r2"]
    again = Frontier.from_json(text)
    assert again == frontier
    assert Frontier.from_json(text.encode()) == frontier


def test_write_and_read_json_file(frontier, tmp_path):
    path = frontier.write_json(tmp_path / "sub" / "frontier.json")
    assert Frontier.read_json(path) == frontier
    assert [p.name for p in path.parent.iterdir()] == ["frontier.json"]  # no temporary left behind


def test_a_version_1_file_is_still_read_and_judges_by_independent_normals(frontier):
    data = json.loads(frontier.to_json())
    data["schema_version"] = 1
    del data["budgets"]
    old = Frontier.from_dict(data)
    assert old.schema_version == 1 and old.budgets == ()
    assert json.loads(old.to_json()) == data  # written back as it was read
    assert old.best_for(320).probability_best == frontier.best_for(320).probability_best


def frontier_with_draws(seed=0, count=4000):
    rng = np.random.default_rng(seed)
    memory = np.array([100.0, 150.0, 150.0, 300.0, 500.0])
    error = np.array([0.40, 0.30, 0.31, 0.12, 0.10])
    measured = np.array([False, True, False, False, False])
    shared = rng.normal(0, 0.03, (count, 1))  # a shift of the whole row: errors move together
    draws = error + shared + rng.normal(0, 0.01, (count, 5))
    draws[:, measured] = error[measured]
    frontier = Frontier.from_estimates(
        dataset="d", meta_experiment="m", configs=[f"c{i}" for i in range(5)], memory_mb=memory, error=error,
        error_std=np.where(measured, 0.0, 0.032), measured=measured, method="adaptive", draws=draws)
    return frontier, draws


def test_budgets_from_joint_draws_answer_best_for_and_survive_json():
    frontier, draws = frontier_with_draws()
    assert [b.memory_mb for b in frontier.budgets] == [100.0, 150.0, 300.0, 500.0]
    for budget, pick, members in [(120, 0, [0]), (200, 1, [0, 1, 2]), (320, 3, [0, 1, 2, 3]), (900, 4, [0, 1, 2, 3, 4])]:
        rec = frontier.best_for(budget)
        assert rec.point.config == f"c{pick}"
        least = draws[:, members].min(axis=1)
        assert rec.probability_best == pytest.approx(np.mean(draws[:, pick] <= least), abs=1e-12)
        assert rec.expected_regret == pytest.approx(np.mean(draws[:, pick] - least), abs=1e-12)
    # 0.12 vs 0.10 with a shared shift: the order is surer than independent stds of 0.032 would say
    independent = Frontier.from_estimates(dataset="d", meta_experiment="m", configs=[f"c{i}" for i in range(5)],
                                          memory_mb=[p.memory_mb for p in frontier.points],
                                          error=[p.error for p in frontier.points],
                                          error_std=[p.error_std for p in frontier.points],
                                          measured=[p.measured for p in frontier.points])
    assert independent.budgets == () and frontier.best_for(900).probability_best > independent.best_for(900).probability_best + 0.2
    again = Frontier.from_json(frontier.to_json())
    assert again == frontier and again.budgets == frontier.budgets


def test_budgets_must_match_the_points_memories():
    frontier, _ = frontier_with_draws()
    data = json.loads(frontier.to_json())
    data["budgets"] = data["budgets"][:-1]
    with pytest.raises(PepppError, match="budgets must list each distinct memory of its points once"):
        Frontier.from_dict(data)
    data = json.loads(frontier.to_json())
    data["budgets"][0]["probability_best"] = 1.5
    with pytest.raises(PepppError, match=r"budgets\[0\].*probability_best=1.5 must be a number in \[0, 1\]"):
        Frontier.from_dict(data)


def _mutated(frontier, change):
    data = json.loads(frontier.to_json())
    change(data)
    return json.dumps(data)


CORRUPTIONS = {
    "truncated": (lambda text: text[: len(text) // 2], "corrupt"),
    "empty": (lambda text: "", "corrupt"),
    "not an object": (lambda text: "[1, 2]", "must be an object"),
    "nan": (lambda text: text.replace('"error": 0.4', '"error": NaN', 1), "NaN"),
    "infinity": (lambda text: text.replace('"memory_mb": 100.0', '"memory_mb": Infinity', 1), "Infinity"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_text_is_one_line_error(frontier, name):
    corrupt, words = CORRUPTIONS[name]
    text = corrupt(frontier.to_json())
    with pytest.raises(PepppError, match=words) as info:
        Frontier.from_json(text)
    assert "\n" not in str(info.value)


def _set(*path_and_value):
    *path, value = path_and_value

    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _delete(*path):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


SCHEMA_DEFECTS = {
    "unknown version": (_set("schema_version", 3), "schema_version 3 is unknown"),
    "version as text": (_set("schema_version", "1"), "schema_version '1' is unknown"),
    "version as bool": (_set("schema_version", True), "schema_version True is unknown"),
    "other schema": (_set("schema", "mlflow.model"), "not a frontier"),
    "missing field": (_delete("meta_experiment"), "lacks field.*meta_experiment"),
    "unknown field": (_set("extra", 1), "unknown field.*extra"),
    "dataset not text": (_set("dataset", 7), "dataset.*must be a string"),
    "bad time": (_set("created_at", "yesterday"), "ISO 8601"),
    "points not list": (_set("points", {}), "'points' must be a list"),
    "no points": (_set("points", []), "no configurations"),
    "point not object": (_set("points", 0, "x"), r"points\[0\] must be an object"),
    "memory text": (_set("points", 0, "memory_mb", "100"), r"points\[0\].memory_mb must be a number"),
    "memory negative": (_set("points", 0, "memory_mb", -1.0), "memory_mb=-1.0 must be a finite number > 0"),
    "error above one": (_set("points", 1, "error", 1.5), r"points\[1\].*error=1.5 must be .* \[0, 1\]"),
    "error bool": (_set("points", 1, "error", True), "must be a number"),
    "std negative": (_set("points", 0, "error_std", -0.1), "error_std=-0.1"),
    "measured text": (_set("points", 0, "measured", "yes"), "measured must be true or false"),
    "run ids text": (_set("points", 0, "run_ids", "r1"), "run_ids must be a list of strings"),
    "point field missing": (_delete("points", 3, "error_std"), r"points\[3\] lacks field.*error_std"),
    "duplicate config": (_set("points", 1, "config", "e3m1/e6m7"), "'e3m1/e6m7' appears twice"),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_DEFECTS))
def test_schema_defects_are_one_line_errors(frontier, name):
    change, words = SCHEMA_DEFECTS[name]
    with pytest.raises(PepppError, match=words) as info:
        Frontier.from_json(_mutated(frontier, change))
    assert "\n" not in str(info.value)


def test_values_json_cannot_carry_are_refused():
    # The value itself rejects what JSON could not carry, so to_json never writes NaN.
    with pytest.raises(PepppError, match="error=nan"):
        FrontierPoint("a", 1.0, math.nan, None, False, ())
    with pytest.raises(PepppError, match="error_std=inf"):
        FrontierPoint("a", 1.0, 0.5, math.inf, False, ())


# ----------------------------------------------------------------------------------------------------
# pareto and best_for


def test_pareto_is_the_staircase_and_keeps_exact_duplicates():
    f = Frontier(
        dataset="d",
        meta_experiment="m",
        points=(
            point("c", 300.0, 0.1),
            point("a", 100.0, 0.5),
            point("a2", 100.0, 0.5),  # exact duplicate of a: both stay
            point("b", 200.0, 0.5),  # dominated by a
            point("d", 250.0, 0.2),
        ),
    )
    assert [p.config for p in f.pareto()] == ["a", "a2", "d", "c"]
    assert f.pareto_mask().tolist() == [True, True, True, False, True]


def test_best_for_matches_brute_force():
    rng = np.random.default_rng(3)
    memory = rng.uniform(50, 500, size=40).round(1)
    error = rng.uniform(0, 1, size=40).round(3)
    f = Frontier.from_estimates(
        dataset="d", meta_experiment="m", configs=[f"c{i}" for i in range(40)], memory_mb=memory, error=error
    )
    for budget in np.linspace(memory.min(), 600, 25):
        fits = [i for i in range(40) if memory[i] <= budget]
        best = min(fits, key=lambda i: (error[i], memory[i], i))
        rec = f.best_for(float(budget))
        assert rec.point == f.points[best]
        assert rec.candidates == len(fits)
        rest = [i for i in fits if i != best]
        expected_runner = min(rest, key=lambda i: (error[i], memory[i], i)) if rest else None
        assert rec.runner_up == (None if expected_runner is None else f.points[expected_runner])
        assert rec.probability_best is None  # estimates without a std: no certainty to report


def test_best_for_budget_equal_to_memory_is_inside(frontier):
    assert frontier.best_for(150.0).point.config == "e4m3/e8m7"
    assert frontier.best_for(149.99).point.config == "e3m1/e6m7"


def test_best_for_tie_goes_to_less_memory(frontier):
    assert frontier.best_for(10_000).point.config == "e5m7/e8m23"


def test_budget_below_every_memory_names_the_cheapest(frontier):
    with pytest.raises(PepppError, match=r"budget 50 MB is below every .*e3m1/e6m7, needs 100.00 MB") as info:
        frontier.best_for(50)
    assert "\n" not in str(info.value)
    with pytest.raises(PepppError, match="must be a number"):
        frontier.best_for(float("nan"))


def test_probability_and_regret_of_two_normals_match_closed_form():
    f = Frontier(
        dataset="d",
        meta_experiment="m",
        points=(point("a", 100.0, 0.30, 0.03), point("b", 200.0, 0.34, 0.04)),
    )
    rec = f.best_for(500)
    assert rec.point.config == "a" and rec.runner_up.config == "b"
    # D = X_b - X_a ~ N(0.04, 0.05^2): P(a best) = P(D >= 0); regret = E[max(0, X_a - X_b)] = E[(-D)+].
    mu, sigma = 0.04, 0.05
    assert rec.probability_best == pytest.approx(norm.cdf(mu / sigma), abs=2e-4)
    regret = -mu * norm.cdf(-mu / sigma) + sigma * norm.pdf(mu / sigma)
    assert rec.expected_regret == pytest.approx(regret, abs=2e-4)


def test_exact_measured_pick_against_estimated_rival():
    f = Frontier(
        dataset="d",
        meta_experiment="m",
        points=(
            point("meas", 100.0, 0.20, None, measured=True),  # measured without std counts as exact
            point("est", 200.0, 0.25, 0.05),
        ),
    )
    rec = f.best_for(300)
    assert rec.point.config == "meas"
    assert rec.probability_best == pytest.approx(norm.sf(0.20, loc=0.25, scale=0.05), abs=1e-9)
    assert "truly best with probability 0.84" in str(rec)


def test_single_candidate_is_surely_best(frontier):
    rec = frontier.best_for(120)
    assert rec.candidates == 1 and rec.runner_up is None
    assert rec.probability_best == 1.0 and rec.expected_regret == 0.0


def test_probability_and_regret_agree_with_monte_carlo():
    rng = np.random.default_rng(11)
    n = 12
    mean = rng.uniform(0.2, 0.3, size=n)
    std = rng.uniform(0.005, 0.03, size=n)
    std[[2, 5]] = 0.0  # two measured, exact
    f = Frontier.from_estimates(
        dataset="d", meta_experiment="m", configs=[f"c{i}" for i in range(n)], memory_mb=np.arange(1.0, n + 1),
        error=mean, error_std=std, measured=std == 0,
    )
    rec = f.best_for(100)
    pick = int(np.argmin(mean))
    draws = rng.normal(mean, std, size=(200_000, n))
    assert rec.probability_best == pytest.approx(np.mean(draws.argmin(axis=1) == pick), abs=0.005)
    assert rec.expected_regret == pytest.approx(np.mean(draws[:, pick] - draws.min(axis=1)), abs=3e-4)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), min_size=1, max_size=25),
    st.integers(0, 25),
)
def test_the_pick_is_always_on_the_frontier(cells, budget):
    points = tuple(point(f"c{i}", float(m), e / 20, 0.01) for i, (m, e) in enumerate(cells))
    f = Frontier(dataset="d", meta_experiment="m", points=points)
    if budget < min(m for m, _ in cells):
        with pytest.raises(PepppError, match="below every"):
            f.best_for(budget)
        return
    rec = f.best_for(budget)
    assert rec.point in f.pareto()
    assert rec.point.error == min(e / 20 for m, e in cells if m <= budget)
    assert 0.0 <= rec.probability_best <= 1.0 and rec.expected_regret >= 0.0


def test_unknown_std_of_an_estimate_gives_no_probability():
    f = Frontier(dataset="d", meta_experiment="m", points=(point("a", 1.0, 0.2, None), point("b", 2.0, 0.3)))
    rec = f.best_for(5)
    assert rec.probability_best is None and rec.expected_regret is None
    assert rec.to_dict()["point"]["config"] == "a"


# ----------------------------------------------------------------------------------------------------
# building, tables, files


def test_from_estimates_clips_estimates_only_and_checks_lengths():
    f = Frontier.from_estimates(
        dataset="d",
        meta_experiment="m",
        configs=["a", "b", "c"],
        memory_mb=[1.0, 2.0, 3.0],
        error=[-0.02, 1.01, 0.5],
        error_std=[0.01, None, np.nan],
        measured=[False, False, True],
        run_ids=[["fit"], ["fit"], ["r1", "r2"]],
    )
    assert [p.error for p in f.points] == [0.0, 1.0, 0.5]
    assert [p.error_std for p in f.points] == [0.01, None, None]
    assert f.points[2].run_ids == ("r1", "r2") and f.n_measured == 1
    with pytest.raises(PepppError, match="error=1.2 must be a finite number in"):
        Frontier.from_estimates(dataset="d", meta_experiment="m", configs=["a"], memory_mb=[1.0], error=[1.2],
                                measured=[True])
    with pytest.raises(PepppError, match="2 configurations.*memory_mb has 1"):
        Frontier.from_estimates(dataset="d", meta_experiment="m", configs=["a", "b"], memory_mb=[1.0],
                                error=[0.1, 0.2])


def test_to_pandas_and_csv(frontier, tmp_path):
    table = frontier.to_pandas()
    assert table["config"].tolist() == ["e3m1/e6m7", "e4m3/e8m7", "e5m2/e8m7", "e5m7/e8m23", "e8m23/e8m23"]
    assert table["on_frontier"].tolist() == [True, True, False, True, False]
    row = table.iloc[0]
    assert row["error_low"] == pytest.approx(0.40 - 1.959964 * 0.05)
    assert math.isnan(table.iloc[2]["error_std"]) and math.isnan(table.iloc[2]["error_low"])

    path = frontier.to_csv(tmp_path / "frontier.csv")
    back = pd.read_csv(path, keep_default_na=False)
    assert list(back.columns) == [
        "config", "memory_mb", "error", "error_std", "error_low", "error_high", "measured", "on_frontier", "run_ids",
    ]
    assert back["run_ids"].tolist() == ["fit", "r1;r2", "r3", "fit", "fit"]
    assert back["error_std"].tolist()[:3] == ["0.05", "0", ""]  # empty means unknown
    assert back["measured"].tolist() == [False, True, True, False, False]


def test_plot_and_artifacts(frontier, tmp_path):
    files = frontier.write_artifacts(tmp_path / "frontier")
    assert [f.name for f in files] == ["frontier.json", "frontier.csv", "frontier.png"]
    png = files[2].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with_budget = frontier.plot(tmp_path / "budget.png", budget_mb=200)
    assert with_budget.read_bytes() != png
    assert sorted(p.name for p in (tmp_path / "frontier").iterdir()) == sorted(f.name for f in files)
    with pytest.raises(PepppError, match="below every configuration's memory"):
        frontier.plot(tmp_path / "never.png", budget_mb=10)
    assert not (tmp_path / "never.png").exists()


def test_module_imports_neither_mlflow_nor_matplotlib():
    code = "import sys, peppp.frontier; print(sorted({'mlflow', 'matplotlib', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("row", ["cifar10", "imagenet64-07", "deca-04"])
def test_the_plot_names_every_frontier_point_readably(row):
    """On the paper's real rows: one name per frontier point, inside the axes, no two names overlapping,
    none over a frontier marker, the legend beside the axes, the pick named."""
    from conftest import PAPER_DIR

    from peppp.frontier._plot import figure

    error = pd.read_csv(PAPER_DIR / "error.csv", index_col=0).loc[row]
    memory = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0).loc[row]
    measured = np.zeros(len(error), dtype=bool)
    measured[::17] = True
    frontier = Frontier.from_estimates(
        dataset=row, meta_experiment="paper", configs=list(error.index), memory_mb=memory.to_numpy(),
        error=error.to_numpy(), error_std=np.where(measured, 0.0, 0.02), measured=measured, method="adaptive",
    )
    budget = float(np.median(memory))
    fig = figure(frontier, budget_mb=budget)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    names = [t for t in ax.texts]
    front = frontier.pareto()
    assert sorted(t.get_text() for t in names) == sorted(p.config for p in front)
    from matplotlib.text import Text

    boxes = []
    for t in names:  # the name itself, not its leader line
        t.update_positions(renderer)
        boxes.append(Text.get_window_extent(t, renderer))
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:])
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= frame.x1  # beside the axes: it hides no point
    assert any(t.get_text() == f"pick: {frontier.best_for(budget).point.config}" for t in ax.get_legend().get_texts())
