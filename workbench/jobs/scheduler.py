"""Scheduled notebook jobs: `jobs.yaml`, what is due, running a job (a chain of notebook steps) with
retries, and the scheduler loop.

    jobs:
      explore-flights:
        notebook: 01_explore
        parameters: {dataset: flights}
        schedule: "0 6 * * *"          # cron, evaluated in UTC
        timeout: 900                   # seconds per cell (default: the cell_timeout setting)
        retries: 2                     # extra attempts after a failed run (default 0)
        retry_backoff: 60              # seconds before the first retry, doubled for each next one
        max_concurrent: 1              # runs of this job at the same time (default 1)
      retrain:
        schedule: "0 3 * * 1"
        steps:                         # a chain: a step runs only if the previous one succeeded
          - {name: train, notebook: 02_train}
          - {name: evaluate, notebook: 05_evaluate, parameters: {model_run: "{{ steps.train.run_id }}"}}

Due: a job is due when its latest cron time (<= now) is later than the `scheduled_for` of its latest
run in the history (a job that never ran is due at once, like an Airflow DAG without catch-up).
Missed times are not replayed one by one: one run covers them.
Every step runs as its own `workbench run` process with WORKBENCH_JOB_IDENTITY=service, so a
crashing notebook, kernel or runner never takes the scheduler down. A job holds a lock file per
running instance (`max_concurrent` slots); another scheduler or `run-due` skips it while it runs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
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
from typing import Any

import yaml

from ..config import Settings
from ..errors import JobsFileError, NotebookError, ParameterError, SetupError
from .engine import settings_env
from .history import load_runs, runs_dir
from .notebooks import check_parameters, inspect_parameters, notebook_key, resolve_notebook, short_name
from .record import FAILED, INTERRUPTED, SUCCEEDED, RunRecord, iso, new_run_id, parse_iso, utcnow
from .refs import find_refs

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
    "SERVICE_ENV",
]

log = logging.getLogger(__name__)
SERVICE_ENV = {"WORKBENCH_JOB_IDENTITY": "service"}
STATE_SUBDIR = ".scheduler"
STOP_GRACE_S = 60  # seconds a stopping run gets to shut its kernel down and record itself
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_JOB_KEYS = {
    "notebook",
    "parameters",
    "steps",
    "schedule",
    "timeout",
    "retries",
    "retry_backoff",
    "max_concurrent",
    "enabled",
    "description",
}
_STEP_KEYS = {"name", "notebook", "parameters", "timeout"}
_DEFAULT_KEYS = {"timeout", "retries", "retry_backoff", "max_concurrent"}
DEFAULTS = {"retries": 0, "retry_backoff": 60.0, "max_concurrent": 1, "timeout": None}


@dataclass(frozen=True)
class Step:
    name: str
    notebook: str  # as written in jobs.yaml
    path: Path  # the resolved notebook
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout: int | None = None


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str
    steps: tuple[Step, ...]
    retries: int = 0
    retry_backoff: float = 60.0
    max_concurrent: int = 1
    timeout: int | None = None
    enabled: bool = True
    description: str = ""


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


# ---- jobs.yaml -------------------------------------------------------------------------------
def jobs_path(settings: Settings, path: str | Path | None = None) -> Path:
    return Path(path) if path else settings.path("jobs_file")


def load_jobs(settings: Settings, path: str | Path | None = None) -> list[Job]:
    """Read and check jobs.yaml; JobsFileError lists every problem (file, job, step, what to do)."""
    file = jobs_path(settings, path)
    if not file.is_file():
        raise JobsFileError(
            f"No jobs file at {file}. Create it (see docs/how-to/jobs-and-reports.md, 'Schedule jobs') or set WORKBENCH_JOBS_FILE."
        )
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise JobsFileError(f"{file} is not valid YAML: {exc}") from exc
    problems: list[str] = []
    jobs: list[Job] = []
    if not isinstance(raw, dict):
        raise JobsFileError(
            f"{file}: the top level must be a mapping with a `jobs:` key; found a {type(raw).__name__}."
        )
    unknown = set(raw) - {"jobs", "defaults"}
    if unknown:
        problems.append(f"unknown top-level key(s) {', '.join(sorted(unknown))}; allowed: jobs, defaults")
    defaults = dict(DEFAULTS)
    given_defaults = raw.get("defaults") or {}
    if not isinstance(given_defaults, dict):
        problems.append("`defaults` must be a mapping")
    else:
        bad = set(given_defaults) - _DEFAULT_KEYS
        if bad:
            problems.append(
                f"defaults: unknown key(s) {', '.join(sorted(bad))}; allowed: {', '.join(sorted(_DEFAULT_KEYS))}"
            )
        defaults.update({k: v for k, v in given_defaults.items() if k in _DEFAULT_KEYS})
    entries = raw.get("jobs")
    if not isinstance(entries, dict):
        problems.append("`jobs` must be a mapping of job name to job")
        entries = {}
    for name, spec in entries.items():
        job = _job(str(name), spec, defaults, settings, problems)
        if job is not None:
            jobs.append(job)
    if problems:
        listing = "\n  - ".join(problems)
        raise JobsFileError(f"{file} has {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n  - {listing}")
    return jobs


def _job(name: str, spec: Any, defaults: dict, settings: Settings, problems: list[str]) -> Job | None:
    where = f"job '{name}'"
    before = len(problems)
    if not _JOB_NAME.match(name):
        problems.append(f"{where}: a job name takes letters, digits, '-' and '_' (it names files and Airflow DAGs)")
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be a mapping with notebook (or steps) and schedule")
        return None
    unknown = set(spec) - _JOB_KEYS
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_JOB_KEYS))}"
        )
    schedule = spec.get("schedule")
    if not isinstance(schedule, str) or not schedule.strip():
        problems.append(
            f'{where}: needs `schedule`, a cron expression such as "0 6 * * *" (minute hour day month weekday, UTC)'
        )
    else:
        from croniter import croniter

        if not croniter.is_valid(schedule):
            problems.append(
                f'{where}: schedule "{schedule}" is not a valid cron expression; write five fields '
                f'(minute hour day-of-month month day-of-week), e.g. "0 6 * * *" for 06:00 UTC daily'
            )
    settings_ = {k: spec.get(k, defaults.get(k)) for k in ("retries", "retry_backoff", "max_concurrent", "timeout")}
    for key, minimum, kinds in (
        ("retries", 0, (int,)),
        ("max_concurrent", 1, (int,)),
        ("retry_backoff", 0, (int, float)),
        ("timeout", 1, (int,)),
    ):
        value = settings_[key]
        if value is None and key == "timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
            problems.append(f"{where}: `{key}` must be {'an integer' if kinds == (int,) else 'a number'} >= {minimum}")
    if ("notebook" in spec) == ("steps" in spec):
        problems.append(
            f"{where}: give either `notebook` (one notebook) or `steps` (a chain), not {'both' if 'notebook' in spec else 'neither'}"
        )
        return None
    raw_steps = (
        [{"name": None, "notebook": spec["notebook"], "parameters": spec.get("parameters")}]
        if "notebook" in spec
        else spec["steps"]
    )
    if "steps" in spec and "parameters" in spec:
        problems.append(f"{where}: `parameters` belongs to each step when the job has `steps`")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(f"{where}: `steps` must be a non-empty list of {{name, notebook, parameters}}")
        return None
    steps: list[Step] = []
    for index, raw_step in enumerate(raw_steps):
        step = _step(where, index, raw_step, steps, settings, problems)
        if step is not None:
            steps.append(step)
    if len(problems) > before:
        return None
    return Job(
        name=name,
        schedule=schedule.strip(),
        steps=tuple(steps),
        retries=int(settings_["retries"]),
        retry_backoff=float(settings_["retry_backoff"]),
        max_concurrent=int(settings_["max_concurrent"]),
        timeout=settings_["timeout"],
        enabled=bool(spec.get("enabled", True)),
        description=str(spec.get("description", "")),
    )


def _step(
    where: str, index: int, raw: Any, earlier: list[Step], settings: Settings, problems: list[str]
) -> Step | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}, step {index + 1}: must be a mapping with name, notebook and parameters")
        return None
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        problems.append(
            f"{where}, step {index + 1}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_STEP_KEYS))}"
        )
    notebook = raw.get("notebook")
    if not isinstance(notebook, str) or not notebook:
        problems.append(f"{where}, step {index + 1}: needs `notebook`, a notebook name such as 01_explore")
        return None
    try:
        path = resolve_notebook(notebook, settings)
    except NotebookError as exc:
        problems.append(f"{where}: unknown notebook: {exc}")
        return None
    name = str(raw.get("name") or short_name(notebook_key(path)))
    here = f"{where}, step '{name}'" if len(earlier) or raw.get("name") else where
    if any(s.name == name for s in earlier):
        problems.append(f"{here}: a step of that name comes earlier; give each step a unique `name`")
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        problems.append(f"{here}: `parameters` must be a mapping of name to value")
        return None
    try:
        declared = inspect_parameters(path)
    except (ParameterError, NotebookError) as exc:
        if params:
            problems.append(f"{here}: {exc}")
        declared = None
    if declared is not None:
        to_check: dict[str, Any] = {}
        for key, value in params.items():
            try:
                refs = find_refs(value)
            except ParameterError as exc:
                problems.append(f"{here}: parameter '{key}': {exc}")
                continue
            for step_name, _ in refs:
                if not any(s.name == step_name for s in earlier):
                    problems.append(
                        f"{here}: parameter '{key}' refers to step '{step_name}', which is not an earlier step "
                        f"of this job (earlier steps: {', '.join(s.name for s in earlier) or 'none'})"
                    )
            if not refs or key not in declared:  # a referenced value is type-checked when the step runs
                to_check[key] = value
        try:
            check_parameters(notebook_key(path), declared, to_check)
        except ParameterError as exc:
            problems.append(f"{here}: {exc}")
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
        problems.append(f"{here}: `timeout` must be an integer >= 1 (seconds per cell)")
    return Step(name=name, notebook=notebook, path=path, parameters=dict(params), timeout=timeout)


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
        from .history import reconcile

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
        self, settings: Settings, path: str | Path | None = None, max_parallel: int = 2, poll_seconds: float = 30.0
    ):
        self.settings, self.path = settings, path
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

    def tick(self, now: datetime | None = None) -> list[Future]:
        now = _utc(now or utcnow())
        started = []
        for job, fire in due_jobs(self.reload(), self.settings, now, self.handled):
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
