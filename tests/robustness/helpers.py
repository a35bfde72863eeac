"""Running `peppp` as real processes, several at once, for the races of issue 15."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    """This checkout first on the path of a child process (the venv's editable install may point elsewhere)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


def peppp_at_once(commands: list[list[str]], *, cwd: Path, timeout_s: float = 180, env=None) -> list[subprocess.CompletedProcess]:
    """Start every `peppp` command at the same moment (each waits for a go file), wait for all."""
    go = cwd / ".go"
    waiter = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "from peppp.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    # Each child imports peppp before the go file appears, so they all reach the store together.
    preload = "import peppp.cli, peppp.tracking.store, mlflow\n"
    procs = [
        subprocess.Popen([sys.executable, "-c", preload + waiter, *args], cwd=cwd, env=env or cli_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in commands
    ]
    import time

    time.sleep(4.0)  # let every child finish its imports
    go.touch()
    done = []
    for proc, args in zip(procs, commands):
        out, err = proc.communicate(timeout=timeout_s)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    go.unlink()
    return done


def peppp(args: list[str], *, cwd: Path, timeout_s: float = 180, env=None, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peppp.cli", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout_s, stdin=stdin)
