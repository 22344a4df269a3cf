"""The DAG files `workbench jobs export-airflow` writes, loaded by a real Airflow and one task run by it.

Airflow lives in its own virtual environment (`make airflow` creates `.airflow-venv`; Airflow pins its own
dependencies), so everything Airflow does runs in subprocesses of that environment's python, with
AIRFLOW_HOME in a temporary folder on SQLite. The DAGs are exported from the repository's `jobs.yaml`
with `airflow_workbench_command` set to this checkout's `.venv/bin/workbench`, and compared with what
`load_jobs` reads from the same file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.jobs.airflow import dag_id
from workbench.jobs.jobsfile import load_jobs
from workbench.runs.record import RunRecord

from ..notebook_factory import REPO, workbench

pytestmark = pytest.mark.integration

AIRFLOW_VENV = Path(os.environ.get("AIRFLOW_VENV") or REPO / ".airflow-venv")
AIRFLOW_PYTHON = AIRFLOW_VENV / "bin" / "python"
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
WORKBENCH = Path(sys.executable).parent / "workbench"  # this checkout's .venv/bin/workbench
PROBE = Path(__file__).with_name("airflow_probe.py")

if not AIRFLOW.exists():
    pytest.skip(
        f"no Airflow environment at {AIRFLOW_VENV}: run `make airflow` to create it (make test does)",
        allow_module_level=True,
    )


def _airflow_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of Airflow's processes: none of the workbench's python paths, a throw-away home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKBENCH_", "AIRFLOW", "PYTHON")) and k not in ("VIRTUAL_ENV",)
    }
    env.update(
        AIRFLOW_HOME=str(folder / "airflow-home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(folder / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{folder / 'airflow-home' / 'airflow.db'}",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(folder / "airflow-home" / "logs"),
        PATH=f"{AIRFLOW_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["AIRFLOW_HOME"])


@pytest.fixture(scope="module")
def exported(repo_settings, tmp_path_factory) -> Path:
    """The repository's jobs.yaml exported into a DAG folder, for a project home in a temporary folder."""
    folder = tmp_path_factory.mktemp("airflow")
    project = folder / "project"
    (project / "notebooks").mkdir(parents=True)
    (folder / "airflow-home").mkdir()
    shutil.copy(REPO / "notebooks" / "01_explore.ipynb", project / "notebooks")
    out = workbench(
        REPO,
        "jobs",
        "export-airflow",
        "--out",
        str(folder / "dags"),
        "--home",
        str(project),
        WORKBENCH_AIRFLOW_WORKBENCH_COMMAND=str(WORKBENCH),
    )
    assert out.returncode == 0, out.stderr
    return folder


def test_the_exported_dags_load_in_a_real_dagbag_as_jobs_yaml_declares_them(repo_settings, exported):
    jobs = load_jobs(repo_settings, REPO / "jobs.yaml")
    # A deployment whose default time zone is not UTC must still run jobs.yaml's UTC cron times.
    env = _airflow_env(exported, AIRFLOW__CORE__DEFAULT_TIMEZONE="America/New_York")
    out = _run([str(AIRFLOW_PYTHON), str(PROBE), str(exported / "dags")], env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    bag = json.loads(out.stdout.strip().splitlines()[-1])
    assert bag["import_errors"] == {}
    assert bag["warnings"] == {}  # no deprecated imports or arguments either
    assert sorted(bag["dags"]) == sorted(dag_id(job) for job in jobs)  # one DAG per job
    for job in jobs:
        dag = bag["dags"][dag_id(job)]
        assert Path(dag["fileloc"]).name == f"{dag_id(job)}.py"
        assert dag["schedule"] == job.schedule and dag["timetable"]["expression"] == job.schedule
        assert dag["timetable"]["timezone"] in ("UTC", "Timezone('UTC')")  # jobs.yaml's cron times are UTC
        assert dag["catchup"] is False and dag["max_active_runs"] == job.max_concurrent
        names = [step.name.replace("-", "_") for step in job.steps]
        assert dag["order"] == names  # the chain's order
        for index, (name, step) in enumerate(zip(names, job.steps, strict=True)):
            task = dag["tasks"][name]
            assert task["operator"] == "airflow.providers.standard.operators.bash.BashOperator"
            assert task["upstream"] == names[index - 1 : index] if index else task["upstream"] == []
            assert task["retries"] == job.retries and task["retry_delay"] == job.retry_backoff
            assert task["retry_exponential_backoff"] in (True, 2.0)  # doubled for each retry
            assert task["bash_command"].startswith(f"{WORKBENCH} run {step.path.name} --quiet")
            assert f"--job {job.name} --job-step {step.name}" in task["bash_command"]
            assert task["cwd"] == str(exported / "project")
            assert task["env"]["WORKBENCH_HOME"] == str(exported / "project")
    chain = next(job for job in jobs if len(job.steps) > 1)  # retrain: train >> evaluate
    evaluate = bag["dags"][dag_id(chain)]["tasks"][chain.steps[1].name]
    assert "--step-run train={{ ti.xcom_pull(task_ids='train') }}" in evaluate["bash_command"]


def test_airflow_tasks_test_runs_a_real_workbench_run(repo_settings, exported):
    """`airflow tasks test` on the daily profile (the cheapest job): Airflow's BashOperator calls this checkout's
    workbench, which runs the notebook on the sample lake and records the run as the job's, for the date given."""
    job = next(job for job in load_jobs(repo_settings, REPO / "jobs.yaml") if job.name == "explore-flights")
    env = _airflow_env(
        exported,
        # passed through to the task (the DAG sets WORKBENCH_HOME and appends the worker's environment)
        WORKBENCH_LAKE_ROOT=str(REPO / "lake"),
        WORKBENCH_CATALOG_PATH=str(REPO / "hub_config" / "catalog.yaml"),
        WORKBENCH_AUDIT_DIR=str(exported / "audit"),
        WORKBENCH_SPARK_MASTER="local[2]",
        WORKBENCH_SPARK_SHUFFLE_PARTITIONS="4",
    )
    migrate = _run([str(AIRFLOW), "db", "migrate"], env, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    task = job.steps[0].name.replace("-", "_")
    out = _run([str(AIRFLOW), "tasks", "test", dag_id(job), task, "2026-01-05"], env, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    runs = list((exported / "project" / "reports" / "runs" / "01_explore").glob("*/run.json"))
    assert len(runs) == 1, log[-5000:]
    record = RunRecord.load(runs[0].parent)
    assert record.status in ("succeeded", "warn", "alert"), record.error
    assert (record.job, record.step) == (job.name, job.steps[0].name)
    assert record.attempt in (0, 1)  # {{ ti.try_number }}: `tasks test` runs outside the scheduler (Airflow 3.3: 0)
    assert record.scheduled_for.startswith("2026-01-05T00:00:00")
    assert record.parameters["sample_rows"] == 5000  # jobs.yaml's parameters (the dataset is the catalog's default)
    assert "dataset" not in record.parameters
    assert record.published["metrics"]["rows"] > 0
    assert record.run_id in log  # the last line `workbench run --quiet` printed: the task's XCom
