"""jobs.yaml, what is due, retries, chains, locks and the Airflow export (real `workbench run` processes)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from workbench.errors import JobsFileError
from workbench.jobs.airflow import export_airflow
from workbench.jobs.scheduler import due_jobs, job_slot, load_jobs, run_due, run_job
from workbench.runs.record import RunRecord, iso

from .notebook_factory import cli, make_home, workbench


def write_jobs(home: Path, text: str) -> Path:
    path = home / "jobs.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def home(tmp_path) -> Path:
    make_home(tmp_path)
    return tmp_path


def settings_of(home: Path):
    return make_home(home)


def test_validation_lists_every_problem_with_what_to_do(home):
    write_jobs(
        home,
        """
jobs:
  bad-cron:
    notebook: check
    schedule: "61 * * * *"
  no-such-notebook:
    notebook: 99_missing
    schedule: "0 6 * * *"
  bad-params:
    notebook: check
    schedule: "0 6 * * *"
    parameters: {n: many, colour: red}
    retries: -1
    colour: blue
  bad-chain:
    schedule: "@daily"
    steps:
      - name: first
        notebook: check
        parameters: {label: "{{ steps.second.run_id }}"}
      - name: second
        notebook: check
        parameters: {label: "{{ step.first.run_id }}"}
""",
    )
    with pytest.raises(JobsFileError) as err:
        load_jobs(settings_of(home))
    message = str(err.value)
    assert "job 'bad-cron': schedule \"61 * * * *\" is not a valid cron expression" in message
    assert (
        "job 'no-such-notebook': unknown notebook: No notebook '99_missing'" in message
        and "Available notebooks: 10_check" in message
    )
    assert "'n' expects int" in message and "unknown parameter 'colour'" in message and "Accepted parameters" in message
    assert "`retries` must be an integer >= 0" in message and "unknown key(s) colour" in message
    assert "refers to step 'second', which is not an earlier step" in message
    assert "is not a step reference" in message
    out = workbench(home, "jobs", "validate")
    assert out.returncode == 78 and "7 problems" in out.stderr


def test_a_valid_file_loads_with_defaults(home, monkeypatch, capsys):
    write_jobs(
        home,
        """
defaults: {retries: 2, retry_backoff: 5}
jobs:
  explore:
    notebook: check
    schedule: "0 6 * * *"
    parameters: {n: 2}
  chain:
    schedule: "30 2 * * 1"
    max_concurrent: 2
    steps:
      - {notebook: 10_check}
      - {name: again, notebook: check, parameters: {label: "{{ steps.check.run_id }}", ratio: "{{ steps.check.metrics.n_squared }}"}}
""",
    )
    jobs = {j.name: j for j in load_jobs(settings_of(home))}
    assert jobs["explore"].retries == 2 and jobs["explore"].retry_backoff == 5 and jobs["explore"].max_concurrent == 1
    assert [s.name for s in jobs["chain"].steps] == ["check", "again"] and jobs["chain"].max_concurrent == 2
    code, out, _ = cli(home, "jobs", "validate", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and "2 jobs, OK" in out


def _ran(settings, job: str, scheduled_for: datetime) -> None:
    folder = settings.path("reports_dir") / "runs" / "10_check" / f"x-{job}-{scheduled_for:%H%M}"
    folder.mkdir(parents=True)
    RunRecord(
        run_id=folder.name,
        notebook="10_check",
        status="succeeded",
        started=iso(scheduled_for),
        job=job,
        scheduled_for=iso(scheduled_for),
        folder=folder,
    ).save()


def test_a_job_is_due_once_per_cron_time(home):
    write_jobs(home, 'jobs:\n  daily:\n    notebook: check\n    schedule: "0 6 * * *"\n')
    settings = settings_of(home)
    jobs = load_jobs(settings)
    morning = datetime(2025, 1, 6, 7, 30, tzinfo=UTC)
    assert [(j.name, t.hour) for j, t in due_jobs(jobs, settings, morning)] == [("daily", 6)]  # never ran: due
    _ran(settings, "daily", datetime(2025, 1, 6, 6, 0, tzinfo=UTC))
    assert due_jobs(jobs, settings, morning) == []
    assert due_jobs(jobs, settings, datetime(2025, 1, 7, 5, 59, tzinfo=UTC)) == []
    assert [t.day for _, t in due_jobs(jobs, settings, datetime(2025, 1, 7, 6, 0, tzinfo=UTC))] == [7]
    assert [t.day for _, t in due_jobs(jobs, settings, datetime(2025, 1, 9, 12, 0, tzinfo=UTC))] == [
        9
    ]  # missed days: one run


def test_a_job_that_is_already_running_is_skipped(home):
    write_jobs(home, 'jobs:\n  solo:\n    notebook: check\n    schedule: "* * * * *"\n')
    settings = settings_of(home)
    job = load_jobs(settings)[0]
    with job_slot(settings, job) as held:  # as another scheduler process would hold it
        assert held
        result = run_job(job, settings)
    assert result.status == "skipped" and not result.runs
    assert not (home / "reports" / "runs").exists()


def test_run_due_runs_chains_as_the_service_and_retries_failures(home):
    write_jobs(
        home,
        """
jobs:
  chain:
    schedule: "0 * * * *"
    steps:
      - {name: first, notebook: check, parameters: {n: 3, label: upstream}}
      - name: second
        notebook: check
        parameters: {label: "from {{ steps.first.run_id }}", ratio: "{{ steps.first.metrics.n_squared }}", items: ["{{ steps.first.values.label }}"]}
  flaky:
    schedule: "0 * * * *"
    retries: 1
    retry_backoff: 0
    steps:
      - {name: boom, notebook: check, parameters: {label: boom}}
      - {name: never, notebook: check}
""",
    )
    settings = settings_of(home)
    results = {r.job: r for r in run_due(settings, now=datetime(2025, 1, 6, 6, 20, tzinfo=UTC))}
    chain, flaky = results["chain"], results["flaky"]
    assert chain.status == "succeeded", chain.reason
    first, second = chain.runs
    # A step gets what the previous one produced: its run id, a metric, a published value.
    assert second.parameters == {"label": f"from {first.run_id}", "ratio": 9.0, "items": ["upstream"]}
    assert second.published["values"]["label"] == f"from {first.run_id}"
    assert first.identity == "service" and first.user == settings.service_user
    assert first.published["values"]["kernel_identity"] == "service"  # the kernel ran as the service too
    assert (first.job, first.step, first.scheduled_for) == ("chain", "first", "2025-01-06T06:00:00.000Z")
    assert flaky.status == "failed"
    assert [(r.step, r.attempt, r.status) for r in flaky.runs] == [("boom", 1, "failed"), ("boom", 2, "failed")]
    assert "later steps not run: never" in flaky.reason
    # Both ran for 06:00; nothing is due again until 07:00.
    assert run_due(settings, now=datetime(2025, 1, 6, 6, 50, tzinfo=UTC)) == []


def test_airflow_export_writes_a_dag_per_job(home, tmp_path_factory):
    write_jobs(
        home,
        """
jobs:
  explore-daily:
    notebook: check
    schedule: "0 6 * * *"
    retries: 2
  chain:
    schedule: "0 3 * * 1"
    steps:
      - {name: first, notebook: check}
      - {name: second, notebook: check, parameters: {label: "{{ steps.first.run_id }}"}}
""",
    )
    out = tmp_path_factory.mktemp("dags")
    files = export_airflow(settings_of(home), out)
    assert sorted(f.name for f in files) == ["workbench_chain.py", "workbench_explore_daily.py"]
    for path in files:
        source = path.read_text()
        compile(source, str(path), "exec")  # valid Python
        tree = ast.parse(source)
        dags = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DAG"]
        assert len(dags) == 1
        kwargs = {k.arg: k.value for k in dags[0].keywords}
        assert kwargs["dag_id"].value == path.stem and kwargs["catchup"].value is False
        tasks = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BashOperator"]
        commands = [next(k.value.value for k in t.keywords if k.arg == "bash_command") for t in tasks]
        assert all("workbench run 10_check.ipynb --quiet" in c for c in commands)
        if path.stem == "workbench_chain":
            assert kwargs["schedule"].value == "0 3 * * 1" and len(tasks) == 2
            assert "first >> second" in source
            assert "--step-run first={{ ti.xcom_pull(task_ids='first') }}" in commands[1]
            assert (
                """-y {% raw %}'{"label": "{{ steps.first.run_id }}"}'{% endraw %}""" in commands[1]
            )  # not Airflow's Jinja
        else:
            assert 'retries": 2' in source and len(tasks) == 1
    # The command the workers run is a setting (a virtual environment's workbench, say); --command overrides it.
    custom = export_airflow(settings_of(home).with_overrides(airflow_workbench_command="/opt/wb/bin/workbench"), out)
    assert all("/opt/wb/bin/workbench run 10_check.ipynb --quiet" in p.read_text() for p in custom)
    given = export_airflow(settings_of(home), out, command="/srv/venv/bin/workbench")
    assert all("'/srv/venv/bin/workbench run 10_check.ipynb --quiet" in p.read_text() for p in given)


# ---- catch-up at the first start ------------------------------------------------------------------
def test_first_start_of_the_repository_jobs_catches_up_at_most_one_run_per_job_and_never_a_promotion(home):
    from workbench.jobs.scheduler import Scheduler, promotes

    repo = Path(__file__).resolve().parent.parent
    repo_jobs = repo / "jobs.yaml"
    settings = settings_of(home).with_overrides(notebooks_dir=str(repo / "notebooks"))
    jobs = load_jobs(settings, repo_jobs)
    assert any(promotes(j) for j in jobs)  # the repository's retrain promotes
    start = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)  # a Wednesday evening: explore was due 06:00, retrain Monday
    scheduler = Scheduler(settings, repo_jobs, started=start)
    due = scheduler.due(start)
    names = [j.name for j, _ in due]
    assert len(names) == len(set(names)) and len(names) <= len(jobs)
    assert names == ["explore-flights"]  # the monthly drift jobs' times are months old; retrain promotes
    assert not any(promotes(j) for j, _ in due)
    # Once running, a promoting job's next cron time is not a catch-up: it runs as scheduled.
    monday = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert "retrain" in [j.name for j, _ in scheduler.due(monday)]
    # Catch-up off: nothing at start; no limit on age: every non-promoting job once.
    off = Scheduler(settings.with_overrides(scheduler_catchup="none"), repo_jobs, started=start)
    assert off.due(start) == []
    unlimited = Scheduler(settings.with_overrides(scheduler_catchup_hours=0), repo_jobs, started=start)
    names = [j.name for j, _ in unlimited.due(start)]
    assert "retrain" not in names and len(names) == len(set(names)) == len(jobs) - 1


def test_a_first_tick_starts_one_run_per_allowed_job_and_the_next_tick_none(home):
    from workbench.jobs.scheduler import Scheduler

    from .notebook_factory import write_notebook

    write_notebook(home, "12_promote", "promote = False  # move the champion alias", ["x = 1"])
    write_jobs(
        home,
        "jobs:\n"
        '  daily:\n    notebook: check\n    schedule: "0 0 * * *"\n'
        '  yearly:\n    notebook: check\n    schedule: "0 0 1 1 *"\n'
        '  promoting:\n    notebook: 12_promote\n    schedule: "0 0 * * *"\n    parameters: {promote: true}\n',
    )
    scheduler = Scheduler(settings_of(home), home / "jobs.yaml")
    now = scheduler.started
    try:
        if now.month == 1 and now.day == 1:
            pytest.skip("on 1 January the yearly job's time is not older than a day")
        first = scheduler.tick(now)
        assert len(first) == 1
        [result] = [f.result(timeout=300) for f in first]
        assert result.job == "daily" and result.status == "succeeded", result.reason
        assert scheduler.tick(now) == []
    finally:
        scheduler.stop.set()
        scheduler.pool.shutdown(wait=True)
