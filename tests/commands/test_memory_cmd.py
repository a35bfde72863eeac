"""`peppp memory`: the MB of one configuration, JSON, and one-line errors with exit status 2."""

import json

import pandas as pd
import pytest

from conftest import PAPER_DIR
from peppp.cli import main


def test_reproduces_a_cell_of_the_papers_matrix(capsys):
    expected = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0).loc["cifar10", "e4m3/e7m9"]
    assert main(["memory", "--net", "resnet18", "--classes", "10", "--image", "32", "--batch", "32", "--config", "e4m3/e7m9"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    number, unit, *rest = out.split()
    assert float(number) == pytest.approx(expected, rel=1e-6) and unit == "MB"
    assert "e4m3/e7m9" in out and "resnet18" in out


def test_json(capsys):
    assert main(["memory", "--config", "e5m2/e8m7", "--classes", "102", "--image", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = pd.read_csv(PAPER_DIR / "memory_mb.csv", index_col=0).loc["deca-14", "e5m2/e8m7"]
    assert out["memory_mb"] == pytest.approx(expected, rel=1e-6)
    assert out["params"] == 11_168_832 + 513 * 102
    assert out["activations"] == 32 * (3_574_784 * 4 + 512 + 2 * 102)
    assert (out["config"], out["network"], out["input_shape"], out["batch"]) == ("e5m2/e8m7", "resnet18", [3, 64, 64], 32)


def test_small_network_with_one_channel(capsys):
    assert main(["memory", "--net", "convnet4", "--channels", "1", "--image", "28", "--batch", "128", "--config", "fp32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 61_050 and out["config"] == "fp32" and out["memory_mb"] > 0
    assert main(["memory", "--net", "convnet4", "--width", "32", "--batch", "128", "--config", "fp32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 242_474


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--net", "vgg16", "--config", "e4m3/e7m9"], ["vgg16", "convnet4, resnet8, resnet18, resnet20"]),
        (["--config", "e9m3/e7m9"], ["e9m3", "1..8"]),
        (["--config", "e4m3"], ["e4m3", "LOW/HIGH"]),
        (["--config", "e4m3/e7m9", "--classes", "0"], ["classes", ">= 1"]),
        (["--config", "e4m3/e7m9", "--image", "4"], ["image sides", ">= 8", "4"]),
        (["--config", "e4m3/e7m9", "--net", "resnet8", "--width", "0"], ["width", ">= 1"]),
        (["--config", "e4m3/e7m9", "--batch", "0"], ["batch", ">= 1"]),
        (["--config", "e4m3/e7m9", "--classes", "ten"], ["--classes", "ten"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, words):
    assert exit_code(["memory", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for word in words:
        assert word in err


def exit_code(argv):
    """main's return value, or the status of argparse's exit for a usage error."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code
