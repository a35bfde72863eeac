"""The `peppp` command under any arguments and any CSV: exit 0 or 2 with one line, never a traceback
(issue 15's property test). Commands that train or reach a service get their arguments parsed only;
the ones that read CSVs or the store run in full on a store in the test's folder."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from peppp.cli import build_parser, main
from properties.support import budget, csv_bytes, event, paper_slice

ERROR = paper_slice("error.csv", rows=4, columns=5)
MEMORY = paper_slice("memory_mb.csv", rows=4, columns=5)

# Values that have gone wrong somewhere: not numbers, numbers Python reads too kindly, out of range,
# huge, over-long, control characters, other scripts' digits.
NASTY = st.sampled_from([
    "", " ", "0", "-1", "-5", "1", "3", "1000", "nan", "NaN", "inf", "-inf", "1e999", "1_0", "1_0e-1", "0x10",
    "３", "e４m3", "٣", "1.5", "-0", "+2", "4294967296", "9" * 50, "a" * 9000, "\x00", "x\ny", "E3M1/E7M9", "fp32",
    "e3m1/e7m9", "random", "adaptive", "ed,random", "3,5", "3,,5", ",", "none", "median", "uniform:0.2",
    "uniform:2", "nonuniform:nan", "tcp://127.0.0.1:9", "http://127.0.0.1:9", "digits", "paper", "--json",
])
VALUES = st.one_of(NASTY, st.text(max_size=12), st.integers(-2**40, 2**40).map(str), st.floats().map(repr))


def _options(command: str) -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return sorted(o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help")


@st.composite
def argv(draw, command: str, fixed: tuple[str, ...] = ()):
    options = _options(command)
    args = list(fixed)
    for _ in range(draw(st.integers(0, 4))):
        args += [draw(st.sampled_from(options)), draw(VALUES)]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(options)))  # a flag, or an option missing its value
    return [command, *args]


def _run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def _one_line_or_nothing(code: int, err: str, args) -> None:
    assert "Traceback" not in err, (args, err)
    assert code in (0, 2), (args, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (args, err)


# Each command's required arguments, so that most examples reach the values drawn after them.
REQUIRED = {
    "demo": (), "meta-train": ("--experiment", "x", "--datasets", "digits", "--configs", "fp32"),
    "search": ("--dataset", "d", "--meta-experiment", "m"), "register": ("--dataset", "d", "--meta-experiment", "m"),
    "train": ("--dataset", "digits", "--config", "fp32"), "memory": ("--config", "fp32"),
    "evaluate": ("--error", "e.csv", "--memory", "m.csv"), "import-matrix": ("--error", "e", "--memory", "m",
                                                                             "--experiment", "x"),
    "matrix": ("--experiment", "x", "--out", "o"), "frontier": ("--name", "n"),
}


@budget(120)
@given(st.sampled_from(sorted(REQUIRED)).flatmap(lambda c: argv(c, REQUIRED[c])))
def test_any_arguments_parse_or_are_one_usage_line(args):
    """Parsing alone (the commands that train are not run): accepted, or refused with exit 2 in one line."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(args)
            event("parsed")
        except SystemExit as exc:
            event(f"exit {exc.code}")
            assert exc.code in (0, 2) and len(err.getvalue().strip().splitlines()) <= 1, (args, err.getvalue())


@pytest.fixture
def folder(tmp_path, store_uri) -> tuple[Path, str]:
    return tmp_path, store_uri


_counter = iter(range(10**9))


@budget(40)
@given(csv_bytes(ERROR), csv_bytes(MEMORY), st.data())
@example(ERROR, MEMORY, None)
@example(ERROR.replace(b"e3m1/e6m7", b"E3M1/E6M7", 1).replace(b"e3m1/e6m8", b"e3m1/e6m7", 1), MEMORY, None)
@example(ERROR.replace(b"0.8549", b"nan", 1), MEMORY, None)
@example(ERROR.replace(b"0.8549", b"1_0e-1", 1), MEMORY, None)
def test_any_csv_through_evaluate_and_import_is_exit_0_or_one_line(folder, error_bytes, memory_bytes, data):
    tmp, uri = folder
    i = next(_counter)
    error, memory = tmp / f"e{i}.csv", tmp / f"m{i}.csv"
    error.write_bytes(error_bytes)
    memory.write_bytes(memory_bytes)
    extra = [] if data is None else data.draw(st.lists(st.sampled_from(["--n", "--rank", "--seed", "--cap",
                                                                        "--exclude", "--meta-sample"]), max_size=2))
    extra_args = [a for flag in extra for a in (flag, data.draw(VALUES))]
    for args in (
        ["evaluate", "--error", str(error), "--memory", str(memory), "--method", "random", "--n", "1", "--rank", "1",
         "--no-progress", *extra_args],
        ["import-matrix", "--error", str(error), "--memory", str(memory), "--experiment", f"x{i}",
         "--tracking-uri", uri],
        ["matrix", "--experiment", f"x{i}", "--out", str(tmp / f"out{i}"), "--tracking-uri", uri],
    ):
        code, _, err = _run(args)
        event(f"{args[0]} exit {code}")
        _one_line_or_nothing(code, err, args)
