"""Where runs live: the runs folder, the name a notebook's runs are filed under, and the run's folder
as the kernel of a job run sees it.

    <reports_dir>/runs/<notebook key>/<run id>/run.json     one folder per run (runs_dir)
    $WORKBENCH_RUN_DIR                                      that folder, set in a job run's kernel (RUN_DIR_ENV)

A notebook's key is its file name without `.ipynb` (`04_drift_monitor`); its short name drops the
`NN_` prefix (`drift_monitor`). A notebook puts large artifacts (an Evidently report, explanations)
in `artifact_dir()`, so they sit next to report.html and travel with the run.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from ..config import Settings, load_settings

__all__ = [
    "RUNS_SUBDIR",
    "RUN_DIR_ENV",
    "NOTEBOOK_SUFFIX",
    "runs_dir",
    "notebook_key",
    "short_name",
    "artifact_dir",
]

RUNS_SUBDIR = "runs"
# Set in the kernel of a job run: the run's folder, where a notebook puts large artifacts.
RUN_DIR_ENV = "WORKBENCH_RUN_DIR"
NOTEBOOK_SUFFIX = ".ipynb"
_NUMBERED = re.compile(r"^\d+_")


def runs_dir(settings: Settings) -> Path:
    return settings.path("reports_dir") / RUNS_SUBDIR


def short_name(stem: str) -> str:
    """'04_drift_monitor' -> 'drift_monitor'."""
    return _NUMBERED.sub("", stem)


def notebook_key(path: Path) -> str:
    """The name a notebook's runs are filed under: its file name without extension."""
    return Path(path).name[: -len(NOTEBOOK_SUFFIX)] if str(path).endswith(NOTEBOOK_SUFFIX) else Path(path).stem


def artifact_dir(settings: Settings | None = None, name: str = "drift") -> Path:
    """Where a run's large artifacts go: the run's folder when the job runner names it in
    $WORKBENCH_RUN_DIR, else `<reports_dir>/<name>/<UTC time>` for an interactive session."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    settings = settings or load_settings()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.path("reports_dir") / name / stamp
