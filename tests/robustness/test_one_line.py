"""Every failure one line on stderr, never a traceback (issue 15, probes 6 and 7)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from peppp.cli import main
from tests.robustness.helpers import cli_env


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_an_unexpected_error_is_one_line_with_status_1(monkeypatch, capsys):
    import peppp.commands.matrix as matrix

    def boom(args):
        raise RuntimeError("something peppp did not foresee\nsecond line")

    monkeypatch.setattr(matrix, "run", boom)
    assert main(["matrix", "--experiment", "x", "--out", "o"]) == 1
    err = _err(capsys)
    assert "unexpected RuntimeError: something peppp did not foresee" in err and "PEPPP_DEBUG" in err
    monkeypatch.setenv("PEPPP_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["matrix", "--experiment", "x", "--out", "o"])


def test_a_store_failure_is_one_line_with_status_2(monkeypatch, capsys):
    import sqlalchemy.exc

    import peppp.commands.matrix as matrix

    def gone(args):
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(matrix, "run", gone)
    assert main(["matrix", "--experiment", "x", "--out", "o"]) == 2
    assert "database is locked" in _err(capsys)


def test_the_cause_of_a_read_only_store_is_the_line_shown():
    import sqlite3

    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    from peppp.tracking.store import first_line

    inner = sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database"))
    inner.args = ("(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block if "
                  "this flush is occurring prematurely)\n(sqlite3.OperationalError) attempt to write a readonly database",)
    assert "attempt to write a readonly database" in first_line(MlflowException(str(inner)))


def test_a_web_server_that_is_not_mlflow_is_one_line(tmp_path, capsys):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        error = tmp_path / "e.csv"
        error.write_text("dataset,e3m1/e7m9\na,0.5\n")
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["import-matrix", "--error", str(error), "--memory", str(error), "--experiment", "x",
                     "--tracking-uri", uri]) == 2
        assert "no MLflow tracking server" in _err(capsys)
    finally:
        server.shutdown()


def test_a_dead_dask_scheduler_is_one_line_and_quick(store_uri, capsys):
    start = time.perf_counter()
    assert main(["meta-train", "--experiment", "x", "--datasets", "digits", "--configs", "fp32",
                 "--dask-address", "tcp://127.0.0.1:9", "--no-progress"]) == 2
    assert "Dask scheduler tcp://127.0.0.1:9 is unreachable" in _err(capsys)
    assert time.perf_counter() - start < 20


# A command that prints: `peppp matrix` with its work replaced by output (the CLI's handling is under test).
_PRINTING = ("import sys\nimport peppp.commands.matrix as m\n"
             "m.run = lambda args: print('x' * 100000) or 0\n"
             "from peppp.cli import main\nsys.exit(main(['matrix', '--experiment', 'x', '--out', 'o']))\n")


def test_a_reader_that_goes_away_early_stops_the_command_quietly():
    for argv in (["-m", "peppp.cli", "--help"], ["-c", _PRINTING]):
        proc = subprocess.Popen([sys.executable, *argv], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()  # as `peppp ... | head -0`: the reader is gone before anything is written
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
        assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
        assert code == (0 if argv[1] == "peppp.cli" else 141), (argv, code)  # argparse's --help ignores it


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_output_is_one_line_with_status_2():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", _PRINTING], env=cli_env(), stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert done.returncode == 2 and "No space left" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
