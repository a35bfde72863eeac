"""Races between real `peppp` processes (issue 15, probes 1 and 2)."""

from __future__ import annotations

from pathlib import Path

from tests.robustness.helpers import peppp, peppp_at_once

PAPER = Path(__file__).resolve().parents[2].parent / "shared" / "meta" / "paper88x99"


def _slice(tmp_path: Path, rows: int, tag: str, scale: float = 1.0) -> tuple[Path, Path]:
    paths = []
    for name in ("error.csv", "memory_mb.csv"):
        lines = (PAPER / name).read_text().splitlines()[: rows + 1]
        if name == "error.csv" and scale != 1.0:
            head, body = lines[0], lines[1:]
            body = [",".join([row.split(",")[0]] + [f"{float(v) * scale:.6f}" for v in row.split(",")[1:]])
                    for row in body]
            lines = [head, *body]
        path = tmp_path / f"{tag}_{name}"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def test_two_imports_at_once_one_wins_the_other_names_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    first = _slice(tmp_path, 3, "a")
    second = _slice(tmp_path, 3, "b", scale=0.5)  # conflicting values: averaging them would go unnoticed
    peppp(["import-matrix", "--error", str(first[0]), "--memory", str(first[1]), "--experiment", "warm",
           "--tracking-uri", uri], cwd=tmp_path)  # the store exists: this test is about the experiment
    done = peppp_at_once([
        ["import-matrix", "--error", str(e), "--memory", str(m), "--experiment", "x", "--tracking-uri", uri]
        for e, m in (first, second)
    ], cwd=tmp_path)
    codes = sorted(d.returncode for d in done)
    assert codes == [0, 2], [(d.returncode, d.stderr[-2000:]) for d in done]
    loser = next(d for d in done if d.returncode == 2)
    assert "Traceback" not in loser.stderr and len(loser.stderr.strip().splitlines()) == 1, loser.stderr
    assert "import" in loser.stderr and "x" in loser.stderr
    out = tmp_path / "out"
    exported = peppp(["matrix", "--experiment", "x", "--out", str(out), "--tracking-uri", uri], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    # The store holds exactly one of the two matrices (the winner's), never their mean.
    from peppp.matrices import read_matrix_csv

    stored = read_matrix_csv(out / "error.csv")
    winner = first if "a_error" in next(d for d in done if d.returncode == 0).args[2] else second
    assert stored.equals(read_matrix_csv(winner[0])), (stored, winner)


def test_four_commands_on_a_brand_new_sqlite_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    slices = [_slice(tmp_path, 2, f"s{i}") for i in range(4)]
    done = peppp_at_once([
        ["import-matrix", "--error", str(e), "--memory", str(m), "--experiment", f"e{i}", "--tracking-uri", uri]
        for i, (e, m) in enumerate(slices)
    ], cwd=tmp_path)
    assert [d.returncode for d in done] == [0, 0, 0, 0], [d.stderr[-1500:] for d in done]
    again = peppp(["matrix", "--experiment", "e3", "--out", str(tmp_path / "o"), "--tracking-uri", uri], cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_an_import_killed_mid_way_is_closed_killed_and_frees_the_experiment(tmp_path):
    """Probe 10: kill -9 while an import holds its parent run and its claim; the next import recovers."""
    import subprocess
    import sys

    from tests.robustness.helpers import cli_env

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    error_csv, memory_csv = _slice(tmp_path, 2, "k")
    dying = (
        "import os\n"
        "from peppp.tracking import parent_run\n"
        "from peppp.tracking.transfer import _claim_experiment\n"
        "from peppp.tracking.store import connect\n"
        f"client = connect({uri!r})\n"
        f"with parent_run('x', kind='import', name='import k_error.csv', tracking_uri={uri!r}, delete_on_error=True) as p:\n"
        "    _claim_experiment(client, 'x', p)\n"
        "    print(p, flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", dying], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    orphan = killed.stdout.strip()
    done = peppp(["import-matrix", "--error", str(error_csv), "--memory", str(memory_csv), "--experiment", "x",
                  "--tracking-uri", uri], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from mlflow import MlflowClient

    assert MlflowClient(uri).get_run(orphan).info.status == "KILLED"
