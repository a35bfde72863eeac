"""Where cells train: the device choice and GPUs shared by cells trained at once."""

import threading

import pytest
import torch

from peppp.errors import PepppError
from peppp.training.devices import GpuSlots, cell_device, resolve_device


def test_auto_is_the_cpu_without_a_gpu_and_cpu_is_always_there():
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where torch sees no GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_one_clear_line(device):
    with pytest.raises(PepppError, match="sees no GPU; use --device cpu or auto") as info:
        resolve_device(device)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", "", "mps"])
def test_unknown_devices_name_the_choices(device):
    with pytest.raises(PepppError, match="auto, cpu, cuda"):
        resolve_device(device)


def test_gpu_slots_give_each_starting_cell_the_least_used_gpu():
    slots = GpuSlots(count=3)
    with slots.acquire() as a, slots.acquire() as b, slots.acquire() as c:
        assert [a.index, b.index, c.index] == [0, 1, 2]
        with slots.acquire() as d:
            assert d.index == 0 and slots.in_use() == [2, 1, 1]
        with slots.acquire() as e:  # 0 was released: the least used is 0 again (lowest index on ties)
            assert e.index == 0
    assert slots.in_use() == [0, 0, 0]


def test_gpu_slots_are_balanced_under_threads():
    slots, seen, lock = GpuSlots(count=2), [], threading.Lock()
    barrier = threading.Barrier(6)

    def cell():
        with slots.acquire() as dev:
            with lock:
                seen.append(dev.index)
            barrier.wait()  # all six hold a slot at once

    threads = [threading.Thread(target=cell) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [0, 0, 0, 1, 1, 1]


def test_no_gpu_no_slot():
    with pytest.raises(PepppError, match="no GPU"):
        with GpuSlots(count=0).acquire():
            pass


def test_a_cell_on_the_cpu_stays_there():
    with cell_device("cpu", worker_index=5) as dev:
        assert dev == torch.device("cpu")
