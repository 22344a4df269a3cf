"""`workbench config`: print the effective settings and where each value came from."""

from __future__ import annotations

import argparse
import json

from ..config import load_settings

EXAMPLES = [("workbench config", "show the effective settings and where each came from")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="show the effective settings and where each value came from",
        description="Print every setting, its value, and its source: an environment variable "
        "(WORKBENCH_<NAME>), workbench.toml, or the built-in default.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--help-all", action="store_true", help="also print what each setting means")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    rows = settings.public_items()
    if args.json:
        print(
            json.dumps(
                {name: {"value": value, "source": source} for name, value, source, _ in rows}, indent=2, default=list
            )
        )
        return 0
    width = max(len(r[0]) for r in rows)
    for name, value, source, help_text in rows:
        shown = ",".join(value) if isinstance(value, tuple) else value
        print(f"{name:<{width}}  {shown!s:<50}  [{source}]")
        if args.help_all:
            print(f"{'':<{width}}    {help_text}")
    return 0
