"""Where a cell trains: the `--device` choice, and several cells sharing the GPUs of one process.

On a GPU one cell leaves most of it idle (a ResNet-18 step at batch 32 is a few milliseconds of small
kernels), so `peppp meta-train --cells-per-gpu K` trains K cells at once per GPU, each in a thread of
its own with its own CUDA stream (measured in BENCHMARKS.md: threads beat processes, which time-slice
the GPU instead of overlapping on it). `GpuSlots` hands each starting cell the GPU with the fewest
cells on it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from peppp.errors import PepppError

DEVICES = ("auto", "cpu", "cuda")


def default_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`auto`/None -> CUDA where torch sees a GPU, else the CPU; `cpu`; `cuda` or `cuda:N` (a clear
    error where torch sees no such GPU)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise PepppError(f"device {device!r} is not one of {', '.join(DEVICES)} (or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise PepppError(f"device {device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise PepppError(
                f"device {device!r} was asked for but torch ({torch.__version__}, {build}) sees no GPU; use --device cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PepppError(f"device {device!r}: torch sees only {torch.cuda.device_count()} GPU(s)")
    return dev


class GpuSlots:
    """Cells in flight per GPU of this process; `acquire` gives a starting cell the least-used GPU.

    `count` is the number of GPUs (default: what torch sees). Thread-safe.
    """

    def __init__(self, count: int | None = None):
        self.count = torch.cuda.device_count() if count is None else count
        self._busy = [0] * self.count
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def acquire(self) -> Iterator[torch.device]:
        if self.count < 1:
            raise PepppError("no GPU to train on: torch sees none")
        with self._lock:
            index = min(range(self.count), key=lambda i: (self._busy[i], i))
            self._busy[index] += 1
        try:
            yield torch.device("cuda", index)
        finally:
            with self._lock:
                self._busy[index] -= 1

    def in_use(self) -> list[int]:
        """Cells in flight per GPU."""
        with self._lock:
            return list(self._busy)


_slots: GpuSlots | None = None
_slots_lock = threading.Lock()


def process_gpu_slots() -> GpuSlots:
    """The process-wide `GpuSlots` (made on first use)."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = GpuSlots()
        return _slots


@contextlib.contextmanager
def cell_device(device: str | torch.device | None, *, worker_index: int | None = None) -> Iterator[torch.device]:
    """The device one cell trains on: `device` resolved; a bare `cuda` (or `auto` on a GPU machine)
    with several GPUs becomes one of them: GPU `worker_index % count` for a worker process with an
    index (a local Dask worker), else the least-used GPU of this process."""
    dev = resolve_device(device)
    if dev.type != "cuda" or dev.index is not None or torch.cuda.device_count() < 2:
        yield dev
        return
    if worker_index is not None:
        yield torch.device("cuda", worker_index % torch.cuda.device_count())
        return
    with process_gpu_slots().acquire() as chosen:
        yield chosen
