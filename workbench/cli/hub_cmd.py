"""`workbench hub`: start the shared hub; `workbench hub user NAME`: set a local account's password."""

from __future__ import annotations

import argparse
import getpass
import sys

from ..config import load_settings

EXAMPLES = [("workbench hub", "start the shared hub (notebooks, reports, MLflow UI)")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hub",
        help="start the shared JupyterHub (reports, MLflow UI, scheduler, idle culler)",
        description="Start JupyterHub with its proxy and services on the hub settings (hub_ip:hub_port), creating the "
        "first admin (hub_admin_user) from hub_admin_password or a prompt. Prints the URL; Ctrl-C stops "
        "the hub, every user server and the services.",
    )
    p.set_defaults(func=run_start)
    actions = p.add_subparsers(dest="hub_command", metavar="ACTION")
    user = actions.add_parser(
        "user",
        help="create a local account, or reset its password (local profile)",
        description="Create an account in the hub's password file, or reset its password. Groups still come from "
        "the users file (hub_users_file). Works while the hub runs.",
    )
    user.add_argument("name", help="user name (lowercase)")
    user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input instead of a prompt"
    )
    user.set_defaults(func=run_user)


def _prompt():
    return getpass.getpass if sys.stdin.isatty() else None


def run_start(args: argparse.Namespace) -> int:
    from ..hub.launcher import serve

    return serve(load_settings(), prompt=_prompt())


def run_user(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..hub import accounts

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for '{args.name}': ")
        if getpass.getpass("Repeat it: ") != password:
            raise ConfigError("The two passwords differ.")
    created = accounts.set_password(load_settings(), args.name, password)
    print(f"{'Created' if created else 'Updated'} the account '{args.name.lower()}'.")
    return 0
