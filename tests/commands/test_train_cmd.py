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
    ],
)
def test_bad_input(capsys, args, message):
    assert main(["train", *args, "--recipe", "tiny"] if "--recipe" not in args else ["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
