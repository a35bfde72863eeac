"""Builds (once, cached under TORCH_EXTENSIONS_DIR) and loads the C++ float-quantization kernels.

The build needs a C++ compiler and ninja; without them `load_extension()` warns once and returns None,
and callers use the pure-torch kernels instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

EXTENSION_NAME = "peppp_quant_v1"
_SOURCE = Path(__file__).with_name("float_kernel.cpp")
_CFLAGS = ["-O3", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]

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


def extension_available() -> bool:
    """Whether the compiled kernels are in use (building them on first call)."""
    return load_extension() is not None
