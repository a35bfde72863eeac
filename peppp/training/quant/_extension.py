"""Builds (once, cached under TORCH_EXTENSIONS_DIR) and loads the C++ float-quantization kernels.

The build needs a C++ compiler and ninja; without them `load_extension()` warns once and returns None,
and callers use the pure-torch kernels instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

EXTENSION_NAME = "peppp_quant_v1"
_SOURCE = Path(__file__).with_name("float_kernel.cpp")
_CFLAGS = ["-O3", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]

# torch's build lock (a plain file) outlives a process killed while holding it, and torch then waits
# for it forever. A lock of a build that programs other than peppp may run too (qtorch's) is taken for a
# dead builder's once this old: a build here takes under a minute.
STALE_BUILD_LOCK_S = 300.0

_lock = threading.Lock()
_state: dict[str, ModuleType | None] = {}


def default_extensions_dir() -> str:
    """Where JIT builds are kept when TORCH_EXTENSIONS_DIR is unset."""
    return str(Path.home() / ".cache" / "peppp" / "torch_extensions")


def _prepare_environment() -> None:
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", default_extensions_dir())
    # torch looks ninja up on PATH; a venv used without activating it still has ninja next to python.
    if shutil.which("ninja") is None:
        bin_dir = os.path.dirname(sys.executable)
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def load_extension() -> ModuleType | None:
    """The compiled kernels, or None (with one warning per process) when they cannot be built."""
    with _lock:
        if "module" in _state:
            return _state["module"]
        if os.environ.get("PEPPP_QUANT_DISABLE_EXTENSION") == "1":
            _state["module"] = None
            return None
        _prepare_environment()
        try:
            from torch.utils.cpp_extension import load

            with build_guard(EXTENSION_NAME, stale_after_s=0.0):  # only peppp builds this one
                module = load(
                    name=EXTENSION_NAME,
                    sources=[str(_SOURCE)],
                    extra_cflags=_CFLAGS,
                    extra_ldflags=_LDFLAGS,
                    verbose=False,
                )
        except Exception as exc:  # no compiler, no ninja, a broken toolchain: all mean "use torch"
            warnings.warn(
                f"peppp: could not build the C++ quantization kernels ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}); "
                "using the slower pure-torch kernels",
                RuntimeWarning,
                stacklevel=2,
            )
            module = None
        _state["module"] = module
        return module


@contextlib.contextmanager
def build_guard(name: str, *, stale_after_s: float = STALE_BUILD_LOCK_S) -> Iterator[None]:
    """Around torch's JIT build or load of extension `name`: one peppp process at a time, and no
    endless wait on a lock left by a killed process.

    torch guards a build directory with a `lock` file that it deletes when done; a process killed in
    between (a SIGKILLed Dask worker, a timeout) leaves it, and every later load waits forever. Here
    the processes first queue on a kernel lock (flock, released when its holder dies, however it
    dies); the one holding it knows no other peppp process is building, so a torch lock it finds was
    left by a dead process, or belongs to a program other than peppp building the same extension. It
    is removed once older than `stale_after_s`: 0 for an extension only peppp builds.
    """
    from torch.utils.cpp_extension import _get_build_directory

    build_dir = Path(_get_build_directory(name, verbose=False))
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f".{name}.peppp-lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            torch_lock = build_dir / "lock"
            while torch_lock.exists():
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - torch_lock.stat().st_mtime >= stale_after_s:
                        torch_lock.unlink()
                        warnings.warn(f"peppp: removed a stale build lock {torch_lock}", RuntimeWarning, stacklevel=3)
                        break
                time.sleep(0.5)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def extension_available() -> bool:
    """Whether the compiled kernels are in use (building them on first call)."""
    return load_extension() is not None
