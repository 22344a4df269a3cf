"""`workbench runs`: list notebook runs (`runs list [NOTEBOOK]`), or show one (`runs show RUN_ID`)."""

from __future__ import annotations

import argparse
import json

from ..config import load_settings

EXAMPLES = [("workbench runs list", "list notebook runs; `workbench runs show RUN_ID` for one")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="list notebook runs (workbench runs list [NOTEBOOK]) or show one (workbench runs show RUN_ID)",
        description="Notebook runs, from the run.json files under reports/runs/. "
        "A run whose process died without finishing is shown as interrupted.",
        epilog="examples:\n  workbench runs list\n  workbench runs list explore --limit 5\n"
        "  workbench runs show 20251122T0733",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # `workbench runs [NOTEBOOK]` (before the list/show rule) still lists, with a note, for one release
    p.set_defaults(implied_verb="list")
    actions = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    ls = actions.add_parser(
        "list",
        help="runs newest first, of every notebook or of one",
        description="List runs newest first. NOTEBOOK is a file name or a short name (explore for 01_explore).",
    )
    ls.add_argument("notebook", nargs="?", metavar="NOTEBOOK", help="only runs of this notebook")
    ls.add_argument("--job", help="only runs of this scheduled job")
    ls.add_argument("-n", "--limit", type=int, default=20, help="how many runs to list (default 20; 0 for all)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    show = actions.add_parser(
        "show",
        help="one run's record: status, parameters, published values, error, files",
        description="Print one run's record; a unique prefix of the run id is enough.",
    )
    show.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    show.add_argument("--json", action="store_true", help="print the run.json record")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from ..runs.history import find_run

    record = find_run(load_settings(), args.run_id)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2, default=str))
        return 0
    _show(record)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..runs.history import load_runs

    records = load_runs(load_settings(), notebook=args.notebook, job=args.job)
    shown = records[: args.limit] if args.limit > 0 else records
    if args.json:
        print(json.dumps([r.to_dict() for r in shown], indent=2, default=str))
        return 0
    if not records:
        print("No runs yet. Run a notebook with `workbench run NOTEBOOK`.")
        return 0
    print(
        f"{'run id':<24} {'notebook':<20} {'status':<12} {'publ.':<6} {'started (UTC)':<20} {'duration':>9}  parameters"
    )
    for r in shown:
        params = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in r.parameters.items())
        duration = f"{r.duration_s:.1f} s" if r.duration_s is not None else ""
        print(
            f"{r.run_id:<24} {r.notebook:<20} {r.status:<12} {r.published_status or '':<6} "
            f"{(r.started or '')[:19].replace('T', ' '):<20} {duration:>9}  {params}"
        )
    if len(shown) < len(records):
        print(f"... {len(records) - len(shown)} older runs (--limit 0 lists all)")
    return 0


def _show(r) -> None:
    rows = [
        ("run", r.run_id),
        ("notebook", f"{r.notebook} ({r.notebook_path})"),
        ("status", r.status),
        ("published", r.published_status or "-"),
        ("started", r.started),
        ("ended", r.ended or "-"),
        ("duration", f"{r.duration_s:.1f} s" if r.duration_s is not None else "-"),
        ("user", f"{r.user} ({r.identity})"),
        ("host", f"{r.host} pid {r.pid}"),
        ("git", f"{r.git_commit or '-'}{' (modified)' if r.git_dirty else ''}"),
        ("kernel", r.kernel),
        ("cell timeout", f"{r.cell_timeout_s} s" if r.cell_timeout_s else "none"),
    ]
    if r.job:
        rows.append(
            (
                "job",
                f"{r.job}{'/' + r.step if r.step else ''} scheduled for {r.scheduled_for or '-'}, attempt {r.attempt or 1}",
            )
        )
    rows += [("folder", str(r.folder)), ("report", str(r.report_path) if r.report_path else "(none)")]
    if r.alert:
        rows.append(("alert", describe_alert(r.alert)))
    for name, value in rows:
        print(f"{name:<13} {value}")
    print("parameters")
    for k, v in r.parameters.items() or []:
        print(f"  {k} = {json.dumps(v, default=str)}")
    if not r.parameters:
        print("  (notebook defaults)")
    published = r.published or {}
    if published.get("metrics") or published.get("values") or published.get("figures"):
        print("published")
        for k, v in (published.get("metrics") or {}).items():
            status = (published.get("metric_status") or {}).get(k)
            print(f"  metric {k} = {v:g}" + (f" ({status})" if status else ""))
        for k, v in (published.get("values") or {}).items():
            print(f"  value  {k} = {json.dumps(v, default=str)}")
        for fig in published.get("figures") or []:
            print(f"  figure {fig['name']} -> {fig['file']}")
    if r.error:
        err = r.error
        where = (
            f" at cell {err.get('execution_count') or err.get('cell_index')}"
            if err.get("cell_index") is not None
            else ""
        )
        print(f"error{where}: {err.get('ename')}: {err.get('evalue') or err.get('message') or ''}")


def describe_alert(alert: dict) -> str:
    """One line on the delivery of a run's alert webhook (the `alert` field of run.json)."""
    tries = alert.get("attempts") or 0
    tried = f"{tries} attempt{'s' if tries != 1 else ''}"
    if alert.get("delivered"):
        return f"sent to the webhook (HTTP {alert.get('status_code')}, {tried})"
    return f"NOT delivered: {alert.get('error') or 'unknown error'} ({tried}); check the webhook_url setting"
