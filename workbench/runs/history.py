"""Run history, read from the run folders themselves.

Each run's `run.json` is the source of truth; there is no second store to drift from it, and the
reports folder stays self-contained when it is copied to object storage. Listing scans
`<reports>/runs/*/*/run.json` (a few ms per hundred runs). A record left `running` by a process that
no longer exists on this host (killed, machine rebooted) is rewritten as `interrupted` on read.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

from ..config import Settings
from ..errors import NotebookError
from .layout import NOTEBOOK_SUFFIX, runs_dir, short_name
from .record import INTERRUPTED, RECORD_FILE, RUNNING, RunRecord, iso, parse_iso, process_alive, utcnow

__all__ = ["runs_dir", "load_runs", "find_run", "reconcile", "latest_by_notebook"]

log = logging.getLogger(__name__)


def _matches(notebook_key: str, wanted: str | None) -> bool:
    if not wanted:
        return True
    name = Path(wanted).name
    name = name[: -len(NOTEBOOK_SUFFIX)] if name.endswith(NOTEBOOK_SUFFIX) else name
    return notebook_key == name or short_name(notebook_key) == name


def reconcile(record: RunRecord) -> RunRecord:
    """A `running` record whose process is gone becomes `interrupted` (rewritten atomically)."""
    if record.status != RUNNING or record.host != socket.gethostname() or process_alive(record.pid, record.pid_start):
        return record
    record.status = INTERRUPTED
    record.error = record.error or {
        "ename": "RunnerDied",
        "evalue": "",
        "cell_index": None,
        "message": "The runner process ended without recording a result (killed, or the machine stopped).",
    }
    if record.ended is None:
        record.ended = iso(utcnow())
        started = parse_iso(record.started)
        record.duration_s = round((utcnow() - started).total_seconds(), 3) if started else None
    if record.folder is not None:
        for leftover in record.folder.glob(".*.tmp"):  # temp files of writes the kill cut short
            leftover.unlink(missing_ok=True)
        try:
            record.save()
        except OSError as exc:  # read-only copy of the reports: report it, don't rewrite
            log.warning("could not mark run %s interrupted: %s", record.run_id, exc)
    return record


def load_runs(
    settings: Settings, notebook: str | None = None, job: str | None = None, fix: bool = True
) -> list[RunRecord]:
    """Every run (optionally of one notebook or job), newest first."""
    root = runs_dir(settings)
    records = []
    if not root.is_dir():
        return records
    for nb_dir in root.iterdir():
        if not nb_dir.is_dir() or not _matches(nb_dir.name, notebook):
            continue
        for run_dir in nb_dir.iterdir():
            path = run_dir / RECORD_FILE
            if not path.is_file():
                continue
            try:
                record = RunRecord.load(run_dir)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable run record %s: %s", path, exc)
                continue
            if job is not None and record.job != job:
                continue
            records.append(reconcile(record) if fix else record)
    records.sort(key=lambda r: (r.started or "", r.run_id), reverse=True)
    return records


def find_run(settings: Settings, run_id: str) -> RunRecord:
    """A run by id, or by a unique prefix of its id."""
    runs = load_runs(settings)
    matches = [r for r in runs if r.run_id == run_id] or [r for r in runs if r.run_id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotebookError(f"No run '{run_id}' under {runs_dir(settings)}. `workbench runs list` lists the runs.")
    raise NotebookError(
        f"Run id prefix '{run_id}' matches {len(matches)} runs ({', '.join(r.run_id for r in matches[:5])}); give more of it."
    )


def latest_by_notebook(records: list[RunRecord]) -> dict[str, RunRecord]:
    latest: dict[str, RunRecord] = {}
    for record in records:  # newest first
        latest.setdefault(record.notebook, record)
    return latest


def record_json(record: RunRecord) -> str:
    return json.dumps(record.to_dict(), indent=2, default=str)
