"""The `peppp` command: parse arguments, call the library, print. No logic of its own.

Each subcommand lives in its own module under `peppp.commands` and defines `NAME`, `HELP`,
`add_arguments(parser)` and `run(args) -> int`. Heavy imports (torch, MLflow, Prefect) happen inside
`run`, so `peppp --help` and the light commands start fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from peppp.errors import PepppError


def _command_modules():
    import peppp.commands as package

    modules = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"peppp.commands.{info.name}"))
    return modules


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (and exit status 2), like every other peppp error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_printable(message)} (see {self.prog} --help)\n")


MAX_MESSAGE_CHARS = 1000


def _printable(text: str) -> str:
    """One line whatever the user typed: control characters escaped (a newline shows as \\n), cut at
    MAX_MESSAGE_CHARS."""
    text = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="peppp",
        description="Pick the low-precision training format: estimate the (memory, error) Pareto frontier.",
    )
    from peppp import __version__

    parser.add_argument("--version", action="version", version=f"peppp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# Failures of the services peppp talks to (the tracking store, its database, a Dask scheduler): the
# store is unusable, as for a PepppError, so one line and exit status 2.
_SERVICE_MODULES = ("mlflow", "sqlalchemy", "alembic", "sqlite3", "psycopg", "psycopg2", "requests", "urllib3",
                    "http", "urllib", "socket", "ssl", "distributed", "dask", "prefect", "httpx", "httpcore")
DEBUG_ENV = "PEPPP_DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2) and --help (0) return like any command
        return _flushed(int(exc.code or 0))
    name = f"peppp {args.command}"
    try:
        return _flushed(int(args._run(args) or 0))
    except PepppError as exc:
        return _fail(name, str(exc), 2)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as exc:  # noqa: BLE001 - the one place every other failure becomes one line
        if os.environ.get(DEBUG_ENV):
            raise
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return _fail(name, f"cannot write the output: {exc.strerror}", 2)
        text = _first_line(exc)
        if type(exc).__module__.split(".")[0] in _SERVICE_MODULES or isinstance(exc, (ConnectionError, TimeoutError)):
            return _fail(name, f"the tracking store or a service failed: {text}", 2)
        return _fail(name, f"unexpected {type(exc).__name__}: {text} (set {DEBUG_ENV}=1 for the traceback)", 1)


def _flushed(code: int) -> int:
    """Flush stdout here, so that a reader gone early (`peppp ... | head -1`) or a full disk is handled
    now, not reported by the interpreter at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    except OSError as exc:
        return _fail("peppp", f"cannot write the output: {exc.strerror or exc}", 2)
    return code


def _stdout_closed() -> int:
    """The reader of stdout went away: stop quietly, as `yes | head -1` does (128 + SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
    except (OSError, ValueError):
        pass
    return 141


def _fail(name: str, message: str, code: int) -> int:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    try:
        print(f"{name}: error: {_printable(' '.join(lines) if len(lines) < 4 else lines[0])}", file=sys.stderr)
    except OSError:
        pass  # stderr gone too: the status says it
    return code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
