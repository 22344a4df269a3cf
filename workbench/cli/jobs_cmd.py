"""`workbench jobs`: check jobs.yaml, run what is due, run one job, export Airflow DAGs."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime

from ..config import load_settings
from ..errors import JobsFileError

EXAMPLES = [("workbench jobs list", "check jobs.yaml and list its jobs; `workbench scheduler` runs them")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "jobs",
        help="check jobs.yaml, run due jobs, export Airflow DAGs",
        description="Scheduled notebook jobs are declared in jobs.yaml (the jobs_file setting): notebook "
        "or chain of steps, parameters, cron schedule (UTC), timeout, retries, max concurrent runs.",
    )
    p.add_argument("--file", help="the jobs file (default: the jobs_file setting)")
    jobs = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)

    validate = jobs.add_parser(
        "validate",
        help="check jobs.yaml and list the jobs with their next run",
        description="Check every job: known notebooks, valid cron expressions, known parameters "
        "of the right type, step references to earlier steps. Lists all problems.",
    )
    validate.set_defaults(func=run_validate)
    listing = jobs.add_parser(
        "list",
        help="list the jobs with their schedule and next run (checks jobs.yaml first)",
        description="List every job in jobs.yaml with its schedule, next run, retries and steps. The file is "
        "checked as by `workbench jobs validate`; a broken file lists its problems instead.",
    )
    listing.set_defaults(func=run_validate)

    due = jobs.add_parser(
        "run-due",
        help="run the jobs that are due, once, and exit (for cron or CI)",
        description="Run every job whose latest cron time has no run yet, one after another, then exit. "
        "Put `workbench jobs run-due --now` in a crontab (every minute) instead of running "
        "`workbench scheduler`. Exit status: 0 all succeeded, 1 a job failed, 2 a job "
        "published an alert.",
    )
    when = due.add_mutually_exclusive_group()
    when.add_argument("--now", action="store_true", help="evaluate schedules at the current time (the default)")
    when.add_argument(
        "--at", metavar="ISO_TIME", help="evaluate schedules at this UTC time instead (e.g. 2025-01-06T06:00)"
    )
    due.add_argument("--job", action="append", help="only this job (repeatable)")
    due.add_argument("--dry-run", action="store_true", help="list what is due without running it")
    due.set_defaults(func=run_due_cmd)

    one = jobs.add_parser(
        "run",
        help="run one job now, whatever its schedule",
        description="Run a job's steps now with retries, as the scheduler would.",
    )
    one.add_argument("name", help="job name in jobs.yaml")
    one.set_defaults(func=run_one)

    export = jobs.add_parser(
        "export-airflow",
        help="write one Airflow DAG file per job",
        description="Write an Airflow DAG (BashOperator tasks calling `workbench run`, chained like the "
        "job's steps, with its schedule, retries and max active runs) for every job.",
    )
    export.add_argument("--out", help="folder for the DAG files (default: the airflow_dags_dir setting)")
    export.add_argument(
        "--command",
        help="the workbench command on the Airflow workers (default: the airflow_workbench_command setting)",
    )
    export.add_argument("--home", help="the project folder on the Airflow workers (default: this project's home)")
    export.set_defaults(func=run_export)


def _logging() -> None:
    from ..jobs.fastimport import skip_iri_grammar

    skip_iri_grammar()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("papermill").setLevel(logging.WARNING)


def run_validate(args: argparse.Namespace) -> int:
    from ..jobs.fastimport import skip_iri_grammar
    from ..jobs.scheduler import jobs_path, load_jobs, next_fire
    from ..runs.record import iso, utcnow

    skip_iri_grammar()
    settings = load_settings()
    jobs = load_jobs(settings, args.file)
    now = utcnow()
    print(f"{jobs_path(settings, args.file)}: {len(jobs)} job{'s' if len(jobs) != 1 else ''}, OK")
    for job in jobs:
        steps = " -> ".join(f"{s.name}" if s.name == s.path.stem else f"{s.name} ({s.path.stem})" for s in job.steps)
        nxt = iso(next_fire(job.schedule, now)) if job.enabled else "disabled"
        print(
            f"  {job.name:<20} {job.schedule:<16} next {nxt}  retries {job.retries}  max {job.max_concurrent}  {steps}"
        )
    return 0


def _print_results(results) -> int:
    """Print one line per job; exit 130 if one was interrupted, else 1 if one failed, else 2 on an alert, else 0."""
    for r in results:
        runs = ", ".join(f"{rec.step or rec.notebook}:{rec.run_id}:{rec.status}" for rec in r.runs)
        print(f"{r.job:<20} {r.status:<11} for {r.scheduled_for}  {runs}{'  (' + r.reason + ')' if r.reason else ''}")
    codes = {r.exit_code for r in results}
    return next((c for c in (130, 1, 2) if c in codes), 0)


def run_due_cmd(args: argparse.Namespace) -> int:
    from ..jobs.scheduler import run_due

    _logging()
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            raise JobsFileError(f"--at takes an ISO time such as 2025-01-06T06:00; found '{args.at}'.") from None
    results = run_due(load_settings(), now=at, path=args.file, only=args.job, dry_run=args.dry_run)
    if not results:
        print("Nothing is due.")
        return 0
    return _print_results(results)


def run_one(args: argparse.Namespace) -> int:
    from ..jobs.scheduler import load_jobs, run_job

    _logging()
    settings = load_settings()
    jobs = {j.name: j for j in load_jobs(settings, args.file)}
    if args.name not in jobs:
        raise JobsFileError(f"No job named '{args.name}'. Jobs: {', '.join(jobs) or 'none'}.")
    return _print_results([run_job(jobs[args.name], settings)])


def run_export(args: argparse.Namespace) -> int:
    from ..jobs.airflow import export_airflow

    for path in export_airflow(load_settings(), args.out, args.file, command=args.command, home=args.home):
        print(path)
    return 0
