"""`workbench scheduler`: run due jobs from jobs.yaml until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from ..config import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scheduler",
        help="run the jobs in jobs.yaml on their schedules until stopped",
        description="Run due jobs (cron schedules in UTC) with retries and backoff, each step in its own "
        "`workbench run` process as the service identity. A job never runs twice at once "
        "(max_concurrent), a failing job never stops the scheduler, jobs.yaml is re-read on "
        "every tick. Ctrl-C or SIGTERM stops running jobs cleanly (recorded as interrupted). "
        "For cron or CI use `workbench jobs run-due --now` instead.",
    )
    p.add_argument("--file", help="the jobs file (default: the jobs_file setting)")
    p.add_argument("--max-parallel", type=int, default=2, help="jobs running at the same time (default 2)")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between checks of jobs.yaml at most (default 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.scheduler import Scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    scheduler = Scheduler(load_settings(), args.file, max_parallel=args.max_parallel, poll_seconds=args.poll)
    stopped = []

    def stop(signum, frame):
        stopped.append(signum)
        scheduler.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.run_forever()
    return 130 if signal.SIGINT in stopped else 0
