"""The JIT build guard: a lock file left by a killed process never makes a load wait forever."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from peppp.training.quant._extension import build_guard


@pytest.fixture
def build_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    (tmp_path / "demo").mkdir()
    return tmp_path


def test_a_stale_torch_lock_is_removed(build_root):
    lock = build_root / "demo" / "lock"
    lock.touch()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="stale build lock"), build_guard("demo"):
        assert not lock.exists()
    assert time.monotonic() - start < 5


def test_a_fresh_torch_lock_is_waited_for_until_its_builder_is_done(build_root):
    lock = build_root / "demo" / "lock"
    lock.touch()
    threading.Timer(1.0, lock.unlink).start()  # another program's build finishing
    start = time.monotonic()
    with build_guard("demo"):
        waited = time.monotonic() - start
    assert 0.9 <= waited < 10


def test_a_fresh_lock_becomes_stale_and_is_removed(build_root):
    lock = build_root / "demo" / "lock"
    lock.touch()
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="stale build lock"), build_guard("demo", stale_after_s=1.0):
        assert not lock.exists()
    assert 0.9 <= time.monotonic() - start < 10


def test_a_guard_holder_killed_with_sigkill_releases_it(build_root):
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from peppp.training.quant._extension import build_guard\n"
            "with build_guard('demo'):\n"
            "    open(sys.argv[1], 'w').close(); time.sleep(600)\n"
        ), str(build_root / "held")],
        env={**os.environ, "TORCH_EXTENSIONS_DIR": str(build_root)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (build_root / "held").exists():
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never took the guard"
            time.sleep(0.1)
        waiter_entered = threading.Event()

        def wait_for_guard() -> None:
            with build_guard("demo"):
                waiter_entered.set()

        waiter = threading.Thread(target=wait_for_guard, daemon=True)
        waiter.start()
        assert not waiter_entered.wait(1.0), "the guard let a second holder in"
        holder.kill()
        holder.wait()
        assert waiter_entered.wait(10.0), "the guard of a killed holder was never released"
    finally:
        holder.kill()


def test_peppps_own_extension_never_waits_on_a_lock_left_by_a_killed_process(tmp_path):
    # A killed peppp process's lock is fresh; under the guard no live peppp process can own it.
    from peppp.training.quant._extension import (
        EXTENSION_NAME,
        default_extensions_dir,
        load_extension,
    )

    assert load_extension() is not None  # built (or found) in the shared cache
    cache = Path(os.environ.get("TORCH_EXTENSIONS_DIR", default_extensions_dir())) / EXTENSION_NAME
    shutil.copytree(cache, tmp_path / EXTENSION_NAME)  # up to date there too: no rebuild
    lock = tmp_path / EXTENSION_NAME / "lock"
    lock.touch()
    loader = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "from peppp.training.quant._extension import load_extension; assert load_extension() is not None"],
        env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=120, check=False,
    )
    assert loader.returncode == 0, loader.stderr[-2000:]
    assert "removed a stale build lock" in loader.stderr
    assert not lock.exists()
