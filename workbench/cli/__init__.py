"""The `workbench` command: parses arguments and calls the package; nothing else.

Each command group lives in its own module here with a `register(subparsers)` function that adds
its parser and sets `func` (called with the parsed args and returning an exit code).

Verbs follow one rule in every group: `GROUP list` lists, `GROUP show NAME` shows one (`models list`,
`data list`, `runs list [NOTEBOOK]`, `runs show RUN_ID`, `lake list`, `jobs list`). A group keeps an old
spelling for one release by naming it on its parser, and `main` rewrites it with a one-line note on stderr:
    p.set_defaults(deprecated_verbs={"catalog": "list"})   # `data catalog` -> `data list`
    p.set_defaults(implied_verb="list")                    # `runs [NOTEBOOK]` -> `runs list [NOTEBOOK]`
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import WorkbenchError

__all__ = ["main", "build_parser"]

# Command groups are the modules `*_cmd.py` in this package, discovered so that adding a group is
# adding a file. These come first in `workbench --help`, the rest alphabetically after them.
COMMAND_ORDER = (
    "lake_cmd",
    "config_cmd",
    "data_cmd",
    "run_cmd",
    "runs_cmd",
    "reports_cmd",
    "jobs_cmd",
    "scheduler_cmd",
    "models_cmd",
    "serve_cmd",
    "hub_cmd",
)

DESCRIPTION = """\
A notebook-first machine-learning workbench.

Typical flow:
{examples}
Every command has --help. Settings: `workbench config` (env WORKBENCH_<NAME> or workbench.toml).
"""


def command_modules() -> list[str]:
    found = {m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd")}
    return [m for m in COMMAND_ORDER if m in found] + sorted(found - set(COMMAND_ORDER))


def build_parser() -> argparse.ArgumentParser:
    modules = [importlib.import_module(f"{__name__}.{name}") for name in command_modules()]
    examples = "".join(f"  {cmd:<46} {text}\n" for m in modules for cmd, text in getattr(m, "EXAMPLES", ()))
    parser = argparse.ArgumentParser(
        prog="workbench",
        description=DESCRIPTION.format(examples=examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in modules:
        module.register(sub)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def upgrade_argv(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`argv` with an old spelling of a verb replaced by the current one, noted on stderr."""
    group = _subcommands(parser).get(argv[0]) if argv else None
    if group is None:
        return argv
    name, rest = argv[0], argv[1:]
    renamed = group.get_default("deprecated_verbs") or {}
    implied = group.get_default("implied_verb")
    if rest and rest[0] in renamed:
        old, new = f"{name} {rest[0]}", f"{name} {renamed[rest[0]]}"
        argv = [name, renamed[rest[0]], *rest[1:]]
    elif implied and (not rest or (rest[0] not in _subcommands(group) and rest[0] not in ("-h", "--help"))):
        old, new = f"{name} {' '.join(rest[:1]) or ''}".rstrip(), f"{name} {implied} {' '.join(rest[:1])}".rstrip()
        argv = [name, implied, *rest]
    else:
        return argv
    print(
        f"note: `workbench {old}` is deprecated and goes in the next release; use `workbench {new}`.",
        file=sys.stderr,
    )
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(upgrade_argv(parser, list(sys.argv[1:] if argv is None else argv)))
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
