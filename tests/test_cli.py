"""The `peppp` command itself: its version, its help, and the memory figures it prints."""

import pytest

from peppp import __version__
from peppp.cli import main
from peppp.frontier import mb_decimals


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"peppp {__version__}"


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "evaluate", "frontier", "meta-train", "search", "train", "memory"):
        assert command in out


@pytest.mark.parametrize(
    ("values", "decimals"),
    [([1.5, 2.0], 2), ([1.526, 1.529], 3), ([1.52501, 1.52502], 5), ([2.0, 2.0], 2), ([1.0, 1.0 + 1e-9], 6)],
)
def test_memory_is_printed_with_the_decimals_that_tell_values_apart(values, decimals):
    assert mb_decimals(values) == decimals
