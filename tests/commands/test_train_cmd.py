"""`peppp train`: JSON output and one-line errors with exit status 2."""

import json

import pytest

from peppp.cli import main


def test_json(capsys):
    assert main(["train", "--dataset", "digits[0-4]", "--config", "e5m2/e8m7", "--recipe", "tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"error", "memory_mb", "status", "seconds"} <= set(out)
    assert out["status"] == "ok" and 0 <= out["error"] <= 1 and out["memory_mb"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "nope", "--config", "fp32"], "unknown dataset"),
        (["--dataset", "digits", "--config", "e9m2/e8m7"], "e9m2"),
        (["--dataset", "digits", "--config", "fp32", "--net", "vgg"], "convnet4"),
        (["--dataset", "digits", "--config", "fp32", "--recipe", "huge"], "paper, cpu, tiny"),
        (["--dataset", "digits[3,11]", "--config", "fp32"], "11"),
        (["--dataset", "digits", "--config", "fp32", "--rounding", "up"], "stochastic, nearest"),
        (["--dataset", "digits", "--config", "fp32", "--device", "tpu"], "auto, cpu, cuda"),
    ],
)
def test_bad_input(capsys, args, message):
    assert main(["train", *args, "--recipe", "tiny"] if "--recipe" not in args else ["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error where torch sees no GPU")
@pytest.mark.parametrize("command", [
    ["train", "--dataset", "digits", "--config", "fp32", "--recipe", "tiny"],
    ["meta-train", "--experiment", "x", "--datasets", "digits", "--configs", "fp32", "--no-progress"],
    ["search", "--dataset", "digits", "--meta-experiment", "x", "--no-progress"],
])
def test_a_gpu_asked_for_and_absent_is_one_line_before_any_work(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sees no GPU" in err, err
    assert not (tmp_path / "mlruns").exists()  # nothing was started


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error where torch sees no GPU")
def test_cells_per_gpu_without_a_gpu_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["meta-train", "--experiment", "x", "--datasets", "digits", "--configs", "fp32", "--no-progress"]
    assert main([*args, "--cells-per-gpu", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--cells-per-gpu 4 trains on GPUs" in err, err


@pytest.mark.parametrize("config", ["mxfp4.e2m1/bf16", "fp8.e4m3/bf16", "mxint8/fp16"])
def test_hardware_formats_train(config, capsys):
    assert main(["train", "--dataset", "digits[0-4]", "--config", config, "--recipe", "tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["config"] == config and 0 <= out["error"] <= 1 and out["memory_mb"] > 0


@pytest.mark.parametrize("config, bad", [("mxfp5", "'mxfp5'"), ("fp8.e4m4", "'fp8.e4m4'"), ("mxfp4.e2m1/", "'mxfp4.e2m1/'")])
def test_bad_format_names_list_the_families(config, bad, capsys):
    assert main(["train", "--dataset", "digits", "--config", config, "--recipe", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and bad in err, err
    for family in ("eXmY", "fixedW.F", "blockW", "fp8.e4m3", "bf16", "fp16", "mxfp4.e2m1", "mxint8", "fp32"):
        assert family in err, err
