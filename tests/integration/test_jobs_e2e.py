"""End to end: the explore notebook on the sample lake through `workbench run`, and `workbench scheduler`."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from workbench.runs.record import RunRecord

from ..notebook_factory import REPO, make_home, start_workbench, workbench

pytestmark = pytest.mark.integration


def test_explore_runs_on_the_lake_and_lands_on_the_reports_site(repo_settings, tmp_path):
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "01_explore.ipynb", tmp_path / "notebooks")
    env = dict(
        WORKBENCH_LAKE_ROOT=str(REPO / "lake"),
        WORKBENCH_CATALOG_PATH=str(REPO / "hub_config" / "catalog.yaml"),
        WORKBENCH_AUDIT_DIR=str(tmp_path / "audit"),
        WORKBENCH_SPARK_MASTER="local[2]",
        WORKBENCH_SPARK_SHUFFLE_PARTITIONS="4",
    )
    out = workbench(
        tmp_path,
        "run",
        "explore",
        "-p",
        "dataset",
        "weather",
        "-p",
        "sample_rows",
        "300",
        "-p",
        "columns",
        "origin,temp,humid,wind_speed,wind_gust",
        "--quiet",
        timeout=600,
        **env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    record = RunRecord.load(tmp_path / "reports" / "runs" / "01_explore" / out.stdout.strip())
    assert record.status == "succeeded" and record.parameters["columns"] == [
        "origin",
        "temp",
        "humid",
        "wind_speed",
        "wind_gust",
    ]
    metrics = record.published["metrics"]
    assert metrics["rows"] > 20_000 and 0.5 < metrics["max_null_share"] < 1  # wind_gust is mostly empty
    assert record.published["status"] == "warn"  # ... which the notebook flags
    assert {f["name"] for f in record.published["figures"]} == {"distributions", "top_values", "correlations"}
    assert all((record.folder / f["file"]).stat().st_size > 1000 for f in record.published["figures"])
    html = record.report_path.read_text()
    assert "Explore a dataset" in html and "<img" in html and "wind_gust" in html
    index = (tmp_path / "reports" / "index.html").read_text()
    # one card for the ad-hoc (notebook, dataset) with the latest figures; a trend needs a second run of the card
    assert "01_explore" in index and "figures/distributions.png" in index and index.count("<svg") == 0
    listing = workbench(tmp_path, "runs", "list", "explore")
    assert record.run_id in listing.stdout and "warn" in listing.stdout


def test_the_scheduler_runs_a_due_job_and_stops_cleanly(tmp_path):
    make_home(tmp_path)
    (tmp_path / "jobs.yaml").write_text(
        'jobs:\n  every-minute:\n    notebook: check\n    schedule: "* * * * *"\n    parameters: {n: 7}\n'
    )
    proc = start_workbench(tmp_path, "scheduler", "--poll", "1")
    runs = tmp_path / "reports" / "runs" / "10_check"
    try:
        deadline, done = time.monotonic() + 180, []
        while time.monotonic() < deadline and not done:
            assert proc.poll() is None, proc.communicate()
            done = [json.loads(p.read_text()) for p in runs.glob("*/run.json")] if runs.is_dir() else []
            done = [r for r in done if r["status"] != "running"]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert done and done[0]["status"] == "succeeded" and done[0]["job"] == "every-minute"
    assert done[0]["identity"] == "service" and done[0]["parameters"] == {"n": 7}
    assert proc.returncode == 0, stderr[-2000:]
    assert "scheduler stopped" in stderr


def test_a_drifted_month_exits_2_and_the_index_flags_the_alert(tmp_path):
    """What `make demo` shows stakeholders: January against July on the real lake is an alert run."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "04_drift_monitor.ipynb", tmp_path / "notebooks")
    env = dict(
        WORKBENCH_LAKE_ROOT=str(REPO / "lake"),
        WORKBENCH_CATALOG_PATH=str(REPO / "hub_config" / "catalog.yaml"),
        WORKBENCH_AUDIT_DIR=str(tmp_path / "audit"),
        WORKBENCH_SPARK_MASTER="local[2]",
        WORKBENCH_SPARK_SHUFFLE_PARTITIONS="4",
    )
    out = workbench(
        tmp_path,
        "run",
        "04_drift_monitor",
        "-p",
        "reference_where",
        "month IN (1)",
        "-p",
        "current_where",
        "month IN (7)",
        "-p",
        "features",
        '["dep_delay", "arr_delay", "hour", "carrier"]',
        "-p",
        "thresholds",
        '{"share_warn": 0.1, "share_alert": 0.25}',
        "-p",
        "sample_rows",
        "2000",
        "--quiet",
        timeout=900,
        **env,
    )
    assert out.returncode == 2, out.stderr[-3000:]  # succeeded, but the notebook published an alert
    record = RunRecord.load(tmp_path / "reports" / "runs" / "04_drift_monitor" / out.stdout.strip())
    assert record.status == "succeeded" and record.published["status"] == "alert"
    assert record.published["metrics"]["drift.share_drifted"] >= 0.25
    assert any(p.name.endswith(".html") and p.stat().st_size > 100_000 for p in record.folder.rglob("*evidently*"))
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "04_drift_monitor" in index and "badge alert" in index
