"""Choosing the task runner: threads by default, a Dask scheduler by address or environment, a local
Dask cluster of one-thread processes; bad choices are one-line errors, also from `peppp meta-train`."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows._runner import DASK_ADDRESS_ENV, task_runner
from peppp.cli import main
from peppp.errors import PepppError


def test_threads_by_default(monkeypatch):
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    runner = task_runner(threads=3)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3


def test_a_scheduler_address_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://127.0.0.1:8786")
    from_env = task_runner()
    assert isinstance(from_env, DaskTaskRunner) and from_env.address == "tcp://127.0.0.1:8786"
    given = task_runner(dask_address="tcp://127.0.0.1:9999")
    assert given.address == "tcp://127.0.0.1:9999"


def test_a_local_cluster_of_one_thread_processes_on_loopback(monkeypatch):
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://127.0.0.1:8786")  # an explicit local cluster wins
    runner = task_runner(local_workers=3)
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    kwargs = runner.cluster_kwargs
    assert (kwargs["n_workers"], kwargs["threads_per_worker"], kwargs["processes"], kwargs["host"]) == (
        3, 1, True, "127.0.0.1"
    )
    assert kwargs["env"]["OMP_NUM_THREADS"] == "1"


def test_cells_per_gpu_on_a_local_cluster_are_threads_per_worker(monkeypatch):
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    kwargs = task_runner(local_workers=2, threads_per_worker=4).cluster_kwargs
    assert (kwargs["n_workers"], kwargs["threads_per_worker"]) == (2, 4)


def test_cells_per_gpu_choices():
    import torch

    from peppp.commands.meta_train import cells_per_gpu_threads

    with pytest.raises(PepppError, match="--nthreads K"):
        cells_per_gpu_threads(2, torch.device("cuda", 0), dask_address="tcp://127.0.0.1:8786", dask_local=None)
    assert cells_per_gpu_threads(3, torch.device("cuda", 0), dask_address=None, dask_local=None) == (3, 1)
    assert cells_per_gpu_threads(3, torch.device("cuda", 0), dask_address=None, dask_local=2) == (3, 3)
    with pytest.raises(PepppError, match="positive integer"):
        cells_per_gpu_threads(0, torch.device("cuda", 0), dask_address=None, dask_local=None)
    with pytest.raises(PepppError, match="trains on GPUs"):
        cells_per_gpu_threads(2, torch.device("cpu"), dask_address=None, dask_local=None)


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({"dask_address": "127.0.0.1:8786"}, "must start with tcp://"),
        ({"local_workers": 0}, "positive integer"),
        ({"dask_address": "tcp://127.0.0.1:8786", "local_workers": 2}, "not both"),
        ({"threads": 0}, "positive integer"),
        ({"local_workers": 2, "threads_per_worker": 0}, "threads per Dask worker"),
    ],
)
def test_bad_choices_are_one_line_errors(arguments, needle, monkeypatch):
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    with pytest.raises(PepppError, match=needle) as info:
        task_runner(**arguments)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [(["--dask-local", "0"], "--dask-local: 0 must be a positive integer"), (["--dask-address", "localhost:8786"], "must start with tcp://")],
)
def test_meta_train_rejects_a_bad_dask_choice_in_one_line(flags, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    args = ["meta-train", "--experiment", "x", "--datasets", "digits", "--configs", "fp32", "--no-progress"]
    assert main([*args, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("address", "local"),
    [(None, True), ("tcp://127.0.0.1:8786", True), ("tcp://localhost:8786", True), ("inproc://x", True),
     ("tcp://10.0.0.5:8786", False), ("tls://scheduler.example:8786", False)],
)
def test_which_schedulers_are_on_this_machine(address, local):
    from flows._dask import is_local

    assert is_local(address) is local


def test_local_dask_workers_are_handed_this_process_prefect_server(monkeypatch):
    # Without PREFECT_API_URL each worker would start a temporary server of its own on one database.
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert not PREFECT_API_URL.value()
    with task_runner(dask_address="tcp://127.0.0.1:8786"):  # connects lazily: no scheduler needed
        assert PREFECT_API_URL.value() == SubprocessASGIServer().api_url
    assert not PREFECT_API_URL.value()
    with task_runner(dask_address="tcp://10.0.0.5:8786"):  # a remote cluster needs a real server
        assert not PREFECT_API_URL.value()
