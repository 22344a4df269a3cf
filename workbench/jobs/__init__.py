"""Notebook jobs: run a notebook headlessly with parameters, its history, and the scheduler.

run_notebook(notebook, parameters, settings=None, ...) -> RunRecord   (runner.py)
load_runs(settings, notebook=None) / find_run(settings, run_id)      (workbench.runs, re-exported)
load_jobs (jobs.yaml, jobsfile.py) / run_due / Scheduler              (scheduler.py)
"""

from ..runs.history import find_run, load_runs
from ..runs.record import RunRecord
from .notebooks import Parameter, check_parameters, inspect_parameters, resolve_notebook
from .runner import run_notebook

__all__ = [
    "run_notebook",
    "RunRecord",
    "load_runs",
    "find_run",
    "resolve_notebook",
    "inspect_parameters",
    "check_parameters",
    "Parameter",
]
