"""Run records and history: the layer below jobs (which writes runs) and reports (which shows them).

RunRecord, the run.json of one run                         (record.py)
load_runs(settings, notebook=None) / find_run(settings, id) (history.py)
runs_dir, RUN_DIR_ENV, notebook_key, artifact_dir          (layout.py: where runs and their artifacts live)
git_state(home)                                            (provenance.py: the commit a run or a model came from)

It imports nothing from workbench.jobs or workbench.reports.
"""

from .history import find_run, load_runs
from .layout import RUN_DIR_ENV, artifact_dir, notebook_key, runs_dir
from .provenance import git_state
from .record import RunRecord

__all__ = [
    "RunRecord",
    "load_runs",
    "find_run",
    "runs_dir",
    "notebook_key",
    "RUN_DIR_ENV",
    "artifact_dir",
    "git_state",
]
