"""Scheduled notebook jobs: what is due, running a job (a chain of notebook steps) with retries, and
the scheduler loop. The jobs come from `jobs.yaml`, read and checked by jobsfile.py.

Due: a job is due when its latest cron time (<= now) is later than the `scheduled_for` of its latest
run in the history (a job that never ran is due at once, like an Airflow DAG without catch-up).
Missed times are not replayed one by one: one run covers them.
Catch-up (the `Scheduler` loop): a cron time that passed before the scheduler started (the hub's first
start, or a restart after downtime) is run at start only when `scheduler_catchup` is 'latest', it is
at most `scheduler_catchup_hours` old, and the job does not promote a model (a step with the parameter
`promote` true); otherwise the job waits for its next cron time (`workbench jobs run NAME` runs it now).
So a first start runs at most one run per job, and never a retrain that promotes without being asked.
Every step runs as its own `workbench run` process with WORKBENCH_JOB_IDENTITY=service, so a
crashing notebook, kernel or runner never takes the scheduler down. A job holds a lock file per
running instance (`max_concurrent` slots); another scheduler or `run-due` skips it while it runs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..config import Settings
from ..errors import JobsFileError, SetupError
from ..runs.history import load_runs
from ..runs.layout import runs_dir
from ..runs.record import FAILED, INTERRUPTED, SUCCEEDED, RunRecord, iso, new_run_id, parse_iso, utcnow
from .engine import settings_env
from .jobsfile import Job, Step, jobs_path, load_jobs
from .notebooks import notebook_key

__all__ = [
    "Job",
    "Step",
    "JobResult",
    "load_jobs",
    "due_jobs",
    "run_job",
    "run_due",
    "Scheduler",
    "next_fire",
    "job_slot",
    "jobs_path",
    "promotes",
    "catchup_refusal",
    "SERVICE_ENV",
]

log = logging.getLogger(__name__)
SERVICE_ENV = {"WORKBENCH_JOB_IDENTITY": "service"}
STATE_SUBDIR = ".scheduler"
STOP_GRACE_S = 60  # seconds a stopping run gets to shut its kernel down and record itself


@dataclass
class JobResult:
    job: str
    scheduled_for: str | None
    status: str  # succeeded | alert | failed | interrupted | skipped
    runs: list[RunRecord] = field(default_factory=list)
    reason: str = ""

    @property
    def exit_code(self) -> int:
        return {"succeeded": 0, "skipped": 0, "alert": 2, "interrupted": 130}.get(self.status, 1)


# ---- what is due -----------------------------------------------------------------------------
def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def previous_fire(schedule: str, now: datetime) -> datetime:
    """The latest cron time at or before `now` (UTC)."""
    from croniter import croniter

    return _utc(croniter(schedule, _utc(now) + timedelta(seconds=1)).get_prev(datetime))


def next_fire(schedule: str, now: datetime) -> datetime:
    from croniter import croniter

    return _utc(croniter(schedule, _utc(now)).get_next(datetime))


def last_scheduled(settings: Settings) -> dict[str, datetime]:
    """The latest `scheduled_for` of each job's runs, from the run history."""
    latest: dict[str, datetime] = {}
    for record in load_runs(settings):
        moment = parse_iso(record.scheduled_for) if record.job and record.scheduled_for else None
        if moment is not None:
            moment = _utc(moment)
            if record.job not in latest or moment > latest[record.job]:
                latest[record.job] = moment
    return latest


def due_jobs(
    jobs: list[Job], settings: Settings, now: datetime | None = None, handled: dict[str, datetime] | None = None
) -> list[tuple[Job, datetime]]:
    """(job, cron time it is due for) for every enabled job whose latest cron time has no run yet."""
    now = _utc(now or utcnow())
    history = last_scheduled(settings)
    due = []
    for job in jobs:
        if not job.enabled:
            continue
        fire = previous_fire(job.schedule, now)
        seen = [t for t in (history.get(job.name), (handled or {}).get(job.name)) if t is not None]
        if not seen or fire > max(seen):
            due.append((job, fire))
    return due


def promotes(job: Job) -> bool:
    """Whether a run of the job may promote a model (a step given `promote` true)."""
    return any(str(step.parameters.get("promote", "")).strip().lower() in ("true", "1", "yes") for step in job.steps)


def catchup_refusal(job: Job, fire: datetime, started: datetime, settings: Settings) -> str | None:
    """Why a cron time missed before the scheduler `started` is not caught up now, or None to run it.
    Cron times at or after the start are never refused: they were not missed."""
    if fire >= started:
        return None
    if settings.scheduler_catchup == "none":
        return "missed before the scheduler started and scheduler_catchup is 'none'"
    if promotes(job):
        return "missed before the scheduler started and the job promotes a model: it runs at its next cron time or with `workbench jobs run`"
    hours = settings.scheduler_catchup_hours
    if hours and started - fire > timedelta(hours=hours):
        return f"missed more than scheduler_catchup_hours ({hours}) before the scheduler started"
    return None


# ---- running a job ---------------------------------------------------------------------------
@contextmanager
def job_slot(settings: Settings, job: Job) -> Iterator[bool]:
    """Hold one of the job's `max_concurrent` lock files; yields False when all are taken.
    The locks are released by the OS when the process dies, so a killed scheduler never blocks a job."""
    folder = settings.path("reports_dir") / STATE_SUBDIR / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(job.max_concurrent):
        handle = open(folder / f"{job.name}.{slot}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    yield False


def _launch(
    step: Step,
    job: Job,
    settings: Settings,
    scheduled_for: datetime,
    attempt: int,
    step_runs: dict[str, str],
    stop: threading.Event | None,
) -> RunRecord:
    """One `workbench run` process for a step; returns its record (a failed one if it never started)."""
    run_id = new_run_id()
    timeout = step.timeout or job.timeout or settings.cell_timeout
    command = [
        sys.executable,
        "-m",
        "workbench",
        "run",
        str(step.path),
        "--quiet",
        "--timeout",
        str(timeout),
        "--job",
        job.name,
        "--job-step",
        step.name,
        "--scheduled-for",
        iso(scheduled_for),
        "--attempt",
        str(attempt),
        "--run-id",
        run_id,
    ]
    if step.parameters:
        command += ["-y", json.dumps(step.parameters, default=str)]  # JSON is YAML
    for name, rid in step_runs.items():
        command += ["--step-run", f"{name}={rid}"]
    env = {**os.environ, **settings_env(settings), **SERVICE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")) if p
    )
    log.info("job %s: step %s attempt %d: run %s", job.name, step.name, attempt, run_id)
    tail: deque[str] = deque(maxlen=20)
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=str(settings.home)
    )

    def relay() -> None:
        for line in proc.stderr:
            tail.append(line.rstrip())
            sys.stderr.write(f"[{job.name}/{step.name}] {line}")

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    while True:
        try:
            code = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stop is not None and stop.is_set() and proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the runner records `interrupted` and stops its kernel
                try:
                    code = proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()  # history records it `interrupted` (its process is gone)
                    code = proc.wait()
                break
    reader.join(timeout=5)
    folder = runs_dir(settings) / notebook_key(step.path) / run_id
    if (folder / "run.json").is_file():
        from ..runs.history import reconcile

        return reconcile(RunRecord.load(folder))
    # The runner stopped before the run began (e.g. a referenced value was refused): record that.
    record = RunRecord(
        run_id=run_id,
        notebook=notebook_key(step.path),
        status=FAILED,
        started=iso(utcnow()),
        ended=iso(utcnow()),
        duration_s=0.0,
        job=job.name,
        step=step.name,
        scheduled_for=iso(scheduled_for),
        attempt=attempt,
        user=settings.service_user,
        identity="service",
        folder=folder,
        notebook_path=str(step.path),
        kernel=settings.kernel_name,
        error={
            "cell_index": None,
            "ename": "RunnerError",
            "evalue": "",
            "message": f"`workbench run` exited with status {code} before the notebook started: "
            + (" | ".join(list(tail)[-3:]) or "no message"),
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    record.save()
    return record


def run_job(
    job: Job, settings: Settings, scheduled_for: datetime | None = None, stop: threading.Event | None = None
) -> JobResult:
    """Run the job's steps in order with retries; stop the chain at the first step that does not succeed.
    Takes one of the job's lock slots first and returns status `skipped` when none is free."""
    scheduled_for = _utc(scheduled_for or utcnow())
    result = JobResult(job=job.name, scheduled_for=iso(scheduled_for), status="succeeded")
    with job_slot(settings, job) as acquired:
        if not acquired:
            result.status, result.reason = (
                "skipped",
                f"already running ({job.max_concurrent} of {job.max_concurrent} allowed)",
            )
            log.warning("job %s: %s", job.name, result.reason)
            return result
        done: dict[str, str] = {}
        for step in job.steps:
            record = None
            for attempt in range(1, job.retries + 2):
                record = _launch(step, job, settings, scheduled_for, attempt, done, stop)
                result.runs.append(record)
                if record.status == SUCCEEDED or (stop is not None and stop.is_set()):
                    break
                if attempt <= job.retries:
                    delay = job.retry_backoff * 2 ** (attempt - 1)
                    log.warning(
                        "job %s: step %s %s (run %s); retry %d of %d in %.0f s",
                        job.name,
                        step.name,
                        record.status,
                        record.run_id,
                        attempt,
                        job.retries,
                        delay,
                    )
                    if stop is not None and stop.wait(delay):
                        break
                    if stop is None and delay:
                        threading.Event().wait(delay)
            if record is None or record.status != SUCCEEDED:
                result.status = INTERRUPTED if record is not None and record.status == INTERRUPTED else FAILED
                result.reason = f"step {step.name} {record.status if record else 'did not run'}"
                if step is not job.steps[-1]:
                    result.reason += (
                        f"; later steps not run: {', '.join(s.name for s in job.steps[job.steps.index(step) + 1 :])}"
                    )
                break
            done[step.name] = record.run_id
        if result.status == "succeeded" and any(r.published_status == "alert" for r in result.runs):
            result.status = "alert"
    return result


def run_due(
    settings: Settings,
    now: datetime | None = None,
    path: str | Path | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
) -> list[JobResult]:
    """Run every job that is due at `now` (default: now), one after another, and return their results."""
    jobs = load_jobs(settings, path)
    if only:
        unknown = set(only) - {j.name for j in jobs}
        if unknown:
            raise JobsFileError(
                f"No job named {', '.join(sorted(unknown))} in {jobs_path(settings, path)}. Jobs: {', '.join(j.name for j in jobs)}."
            )
        jobs = [j for j in jobs if j.name in only]
    results = []
    for job, fire in due_jobs(jobs, settings, now):
        if dry_run:
            results.append(JobResult(job=job.name, scheduled_for=iso(fire), status="skipped", reason="dry run"))
            continue
        try:
            results.append(run_job(job, settings, fire))
        except (OSError, SetupError) as exc:  # survive one job's trouble; report it
            log.error("job %s could not run: %s", job.name, exc)
            results.append(JobResult(job=job.name, scheduled_for=iso(fire), status="failed", reason=str(exc)))
    return results


# ---- the loop --------------------------------------------------------------------------------
class Scheduler:
    """Runs due jobs in worker threads until `stop` is set. Re-reads jobs.yaml on every tick (a broken
    edit is logged and the last good version kept). Never starts a job while its slots are taken."""

    def __init__(
        self,
        settings: Settings,
        path: str | Path | None = None,
        max_parallel: int = 2,
        poll_seconds: float = 30.0,
        started: datetime | None = None,
    ):
        self.settings, self.path = settings, path
        self.started = _utc(started or utcnow())  # cron times before it are catch-up (see catchup_refusal)
        self.refused: dict[str, datetime] = {}
        self.poll_seconds = poll_seconds
        self.pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="workbench-job")
        self.running: dict[str, list[Future]] = {}
        self.handled: dict[str, datetime] = {}
        self.jobs: list[Job] = []
        self.stop = threading.Event()
        self.results: list[JobResult] = []

    def reload(self) -> list[Job]:
        try:
            self.jobs = load_jobs(self.settings, self.path)
        except JobsFileError as exc:
            log.error("%s%s", exc, " (keeping the previous jobs)" if self.jobs else "")
        return self.jobs

    def due(self, now: datetime | None = None) -> list[tuple[Job, datetime]]:
        """What tick() would start at `now`: due jobs whose missed cron time the catch-up rules allow."""
        now = _utc(now or utcnow())
        allowed = []
        for job, fire in due_jobs(self.reload(), self.settings, now, self.handled):
            reason = catchup_refusal(job, fire, self.started, self.settings)
            if reason is None:
                allowed.append((job, fire))
            elif self.refused.get(job.name) != fire:
                self.refused[job.name] = fire
                log.info("job %s: not catching up %s: %s", job.name, iso(fire), reason)
        return allowed

    def tick(self, now: datetime | None = None) -> list[Future]:
        now = _utc(now or utcnow())
        started = []
        for job, fire in self.due(now):
            active = [f for f in self.running.get(job.name, []) if not f.done()]
            self.running[job.name] = active
            if len(active) >= job.max_concurrent:
                continue  # still due after the running one ends: missed times coalesce into one run
            self.handled[job.name] = fire
            log.info("job %s due for %s", job.name, iso(fire))
            future = self.pool.submit(self._run, job, fire)
            active.append(future)
            started.append(future)
        return started

    def _run(self, job: Job, fire: datetime) -> JobResult:
        try:
            result = run_job(job, self.settings, fire, self.stop)
        except Exception as exc:  # a job's failure never ends the scheduler
            log.exception("job %s crashed the runner wrapper", job.name)
            result = JobResult(
                job=job.name, scheduled_for=iso(fire), status="failed", reason=f"{type(exc).__name__}: {exc}"
            )
        log.info(
            "job %s for %s: %s%s", job.name, iso(fire), result.status, f" ({result.reason})" if result.reason else ""
        )
        self.results.append(result)
        return result

    def seconds_to_next(self, now: datetime | None = None) -> float:
        now = _utc(now or utcnow())
        fires = [next_fire(j.schedule, now) for j in self.jobs if j.enabled]
        wait = min([(f - now).total_seconds() for f in fires] + [self.poll_seconds])
        return max(0.5, wait)

    def run_forever(self) -> None:
        log.info("scheduler started with %d job(s)", len(self.reload()))
        try:
            while not self.stop.is_set():
                self.tick()
                self.stop.wait(self.seconds_to_next())
        finally:
            self.pool.shutdown(wait=True)
            log.info("scheduler stopped")
