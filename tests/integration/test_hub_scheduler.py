"""The scheduler as a hub service: the hub starts `workbench scheduler`, which runs a due job under the
service identity; the report appears on the reports site behind the hub's login. A hub of its own:
the scheduler rewrites the reports index, which the other hub tests check against a fixed site."""

from __future__ import annotations

import json
import time

import nbformat
import pytest

from tests.integration.hubtools import hub_settings, login, running_hub

pytestmark = pytest.mark.integration

USERS = """
groups:
  data-scientists: {server: true, services: [reports]}
  data-stewards: {server: true, services: [reports]}
  stakeholders: {server: false, services: [reports]}
  admins: {admin: true, server: true, services: [reports]}
users:
  sam: [stakeholders]
"""
JOBS = """
jobs:
  hello:
    notebook: 00_hello
    schedule: "0 0 * * *"   # never ran, so due at once
"""
RUN_TIMEOUT = 300.0


def write_notebook(folder) -> None:
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("Says who ran it: a scheduled job runs as the service identity."),
        nbformat.v4.new_code_cell('greeting = "hello"  # what to print', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from workbench.identity import current_identity"),
        nbformat.v4.new_code_cell("who = current_identity()\nprint(greeting, who.user, who.source)"),
    ]
    nbformat.write(nb, folder / "00_hello.ipynb")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-scheduler")
    write_notebook(root / "notebooks")
    (root / "jobs.yaml").write_text(JOBS)
    settings = hub_settings(
        root,
        USERS,
        hub_services=("reports", "scheduler"),
        notebooks_dir=str(root / "notebooks"),
        jobs_file=str(root / "jobs.yaml"),
    )
    with running_hub(settings, root, ["sam"]) as hub:
        yield hub


def test_the_scheduler_service_runs_a_due_job_and_the_report_appears(hub):
    runs = hub.root / "reports" / "runs"
    end = time.monotonic() + RUN_TIMEOUT
    record = None
    while time.monotonic() < end:
        records = [json.loads(p.read_text()) for p in runs.glob("*/*/run.json")]
        record = next((r for r in records if r.get("status") not in ("running", None)), None)
        if record:
            break
        time.sleep(2)
    assert record is not None, f"no finished run after {RUN_TIMEOUT:.0f} s (see {hub.root / 'hub.log'})"
    assert record["status"] == "succeeded", record.get("error")
    assert record["job"] == "hello"
    assert (record["user"], record["identity"]) == (hub.settings.service_user, "service")

    sam = login(hub, "sam")
    folder = next(runs.glob("*/*/run.json")).parent.relative_to(hub.root / "reports")
    r = sam.get(f"/services/reports/{folder}/report.html")
    assert r.status_code == 200 and f"hello {hub.settings.service_user} service" in r.text
    assert sam.get("/services/reports/").status_code == 200  # the index the runner rebuilt
