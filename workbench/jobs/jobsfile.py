"""`jobs.yaml`: reading and checking the declaration of scheduled notebook jobs.

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

`load_jobs` checks everything it can without a kernel (known notebooks, cron expressions, parameter
names and types, step references to earlier steps) and raises one JobsFileError listing every problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings
from ..errors import JobsFileError, NotebookError, ParameterError
from .notebooks import check_parameters, inspect_parameters, notebook_key, resolve_notebook, short_name
from .refs import find_refs

__all__ = ["Job", "Step", "load_jobs", "jobs_path", "DEFAULTS"]

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
