"""The record of one notebook run: `run.json` in the run's folder, the source of truth for history.

A record is written when the run starts (status `running`) and rewritten, atomically, when it ends.
A run whose process died without rewriting it (SIGKILL, power loss) still says `running`; history
notices the process is gone and reports it `interrupted` (see history.reconcile).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import NotebookExecutionError
from ..storage import atomic_write_text

__all__ = [
    "RunRecord",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "INTERRUPTED",
    "STATUSES",
    "RECORD_FILE",
    "REPORT_FILE",
    "new_run_id",
    "utcnow",
    "iso",
    "process_start",
    "process_alive",
]

RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
STATUSES = (RUNNING, SUCCEEDED, FAILED, INTERRUPTED)
PUBLISHED_STATUSES = ("ok", "warn", "alert")
RECORD_FILE = "run.json"
REPORT_FILE = "report.html"
EXIT_OK, EXIT_FAILED, EXIT_ALERT, EXIT_INTERRUPTED = 0, 1, 2, 130


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_run_id(moment: datetime | None = None) -> str:
    """Sortable by start time and unique across concurrent runs: 20251122T073339Z-3f2a1c."""
    return f"{(moment or utcnow()).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def empty_published() -> dict[str, Any]:
    return {"status": None, "metrics": {}, "metric_status": {}, "figures": [], "values": {}}


@dataclass
class RunRecord:
    """One run of a notebook. `status` is how execution ended; `published['status']` is what the
    notebook itself reported (ok/warn/alert) through workbench.reports.publish."""

    run_id: str
    notebook: str  # file name without .ipynb, e.g. 01_explore
    status: str = RUNNING
    parameters: dict[str, Any] = field(default_factory=dict)
    started: str | None = None  # ISO 8601, UTC
    ended: str | None = None
    duration_s: float | None = None
    notebook_path: str = ""  # relative to the project home when inside it
    kernel: str = ""
    cell_timeout_s: int | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    pid_start: str | None = None
    user: str = ""
    identity: str = ""  # where the user came from: hub, service, local-unverified
    job: str | None = None
    step: str | None = None
    scheduled_for: str | None = None
    attempt: int | None = None
    error: dict[str, Any] | None = None
    published: dict[str, Any] = field(default_factory=empty_published)
    alert: dict[str, Any] | None = None  # delivery of the alert webhook: delivered, status_code, attempts, error
    files: dict[str, str | None] = field(default_factory=dict)
    workbench_version: str = ""
    folder: Path | None = field(default=None, compare=False)

    # ---- derived -----------------------------------------------------------------------------
    @property
    def published_status(self) -> str | None:
        return (self.published or {}).get("status")

    @property
    def exit_code(self) -> int:
        """0 ok, 1 failed, 2 succeeded but the notebook published status 'alert', 130 interrupted."""
        if self.status == SUCCEEDED:
            return EXIT_ALERT if self.published_status == "alert" else EXIT_OK
        return EXIT_INTERRUPTED if self.status == INTERRUPTED else EXIT_FAILED

    @property
    def report_path(self) -> Path | None:
        name = self.files.get("report")
        return self.folder / name if self.folder and name else None

    @property
    def executed_notebook(self) -> Path | None:
        name = self.files.get("notebook")
        return self.folder / name if self.folder and name else None

    @property
    def metrics(self) -> dict[str, float]:
        return dict((self.published or {}).get("metrics") or {})

    def raise_for_status(self) -> RunRecord:
        """Raise NotebookExecutionError unless the run succeeded; return self otherwise."""
        if self.status == SUCCEEDED:
            return self
        err = self.error or {}
        where = f" at cell {err['cell_index']}" if err.get("cell_index") is not None else ""
        report = f" Rendered traceback: {self.report_path}." if self.report_path else ""
        raise NotebookExecutionError(
            f"Run {self.run_id} of {self.notebook} {self.status}{where}: {err.get('ename') or 'error'}: "
            f"{err.get('message') or err.get('evalue') or 'no detail'}.{report}",
            cell_index=err.get("cell_index"),
            ename=err.get("ename", ""),
            evalue=err.get("evalue", ""),
            record=self,
        )

    # ---- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("folder")
        return data

    def save(self) -> Path:
        assert self.folder is not None, "a record needs its folder to be saved"
        path = self.folder / RECORD_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: Path | None = None) -> RunRecord:
        known = {f.name for f in fields(cls)} - {"folder"}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.folder = folder
        record.published = {**empty_published(), **(record.published or {})}
        return record

    @classmethod
    def load(cls, folder: Path) -> RunRecord:
        folder = Path(folder)
        return cls.from_dict(json.loads((folder / RECORD_FILE).read_text()), folder)


# ---- is the process that owns a running record still there? -------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_start(pid: int | None = None) -> str | None:
    """The start time of a process (clock ticks since boot, Linux), to tell a reused pid apart."""
    stat = _proc_stat(pid or os.getpid())
    return stat[19] if stat else None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether the process that wrote a record still runs (same pid and same start time; not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if Path("/proc").is_dir():
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            return False
        return start is None or stat[19] == start
    return True
