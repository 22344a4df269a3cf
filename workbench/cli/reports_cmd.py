"""`workbench reports`: rebuild the static reports site, or serve it on 127.0.0.1."""

from __future__ import annotations

import argparse

from ..config import load_settings

EXAMPLES = [("workbench reports serve", "look at the reports site (reports/index.html)")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reports",
        help="rebuild or serve the static reports site (reports/index.html)",
        description="The reports site is one static page, reports/index.html, listing notebooks, their "
        "latest status, trend charts of published metrics and every run. It needs no server "
        "and no network; copy the reports folder anywhere to publish it.",
    )
    reports = p.add_subparsers(dest="reports_command", metavar="ACTION", required=True)
    build = reports.add_parser(
        "build",
        help="rebuild reports/index.html from the run records",
        description="Rebuild reports/index.html from reports/runs/*/*/run.json. Runs rebuild it "
        "themselves; use this after copying or deleting run folders.",
    )
    build.set_defaults(func=run_build)
    serve = reports.add_parser(
        "serve",
        help="serve the reports folder on 127.0.0.1 for a quick look",
        description="Rebuild the index, then serve the reports folder over HTTP on 127.0.0.1 "
        "until Ctrl-C. For access by others, put it behind the hub (login).",
    )
    serve.add_argument("--port", type=int, help="port (default: the reports_serve_port setting)")
    serve.set_defaults(func=run_serve)


def run_build(args: argparse.Namespace) -> int:
    from ..reports.site import build_index

    print(build_index(load_settings()))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from ..reports.serve import make_server

    server = make_server(load_settings(), port=args.port)
    host, port = server.server_address[:2]
    print(f"Serving reports on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
