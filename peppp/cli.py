"""The `peppp` command: parse arguments, call the library, print. No logic of its own.

Each subcommand lives in its own module under `peppp.commands` and defines `NAME`, `HELP`,
`add_arguments(parser)` and `run(args) -> int`. Heavy imports (torch, MLflow, Prefect) happen inside
`run`, so `peppp --help` and the light commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
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
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2) and --help (0) return like any command
        return int(exc.code or 0)
    try:
        return int(args._run(args) or 0)
    except PepppError as exc:
        print(f"peppp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"peppp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
