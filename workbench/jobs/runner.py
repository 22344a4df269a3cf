"""Run a notebook headlessly: check parameters, execute with papermill, render, record.

The steps follow papermill's split, each in its own place:
  find + check parameters   notebooks.py  (before any kernel starts; one ParameterError lists all problems)
  parameterize              papermill.parameterize_notebook (an `injected-parameters` cell)
  execute                   engine.py     (papermill's nbclient engine, with the kernel's env and cwd)
  render                    workbench.reports.render (nbconvert, in-process)
  record                    workbench.runs.record (run.json, written at start and rewritten atomically at the end)
  alert                     workbench.alerts (the webhook, when the notebook published `alert`; outcome in run.json)

Files in a run folder only ever appear complete (temp file + rename). While the notebook runs,
papermill saves its progress to `<notebook>.partial.ipynb`; it is replaced by `<notebook>.ipynb`
when the run ends. `run.json` is written last, so `succeeded` implies every file is there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Settings, load_settings
from ..errors import SetupError
from ..identity import Identity, current_identity
from ..runs.history import find_run
from ..runs.layout import RUN_DIR_ENV, notebook_key, runs_dir
from ..runs.provenance import git_state
from ..runs.record import (
    FAILED,
    INTERRUPTED,
    REPORT_FILE,
    SUCCEEDED,
    RunRecord,
    iso,
    new_run_id,
    process_start,
    utcnow,
)
from ..storage import atomic_write_bytes, atomic_write_text
from . import engine as _engine
from .notebooks import check_parameters, inspect_parameters, resolve_notebook
from .refs import find_refs, resolve_refs

__all__ = ["run_notebook", "check_kernel", "PARTIAL_SUFFIX"]

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial.ipynb"
KERNEL_START_TIMEOUT_S = 60


def run_notebook(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    *,
    kernel: str | None = None,
    timeout: int | None = None,
    progress: bool = False,
    log_output: bool = False,
    step_runs: Mapping[str, str] | None = None,
    job: str | None = None,
    step: str | None = None,
    scheduled_for: str | None = None,
    attempt: int | None = None,
    run_id: str | None = None,
    env: Mapping[str, str] | None = None,
    build_index: bool = True,
) -> RunRecord:
    """Run `notebook` with `parameters` in a new kernel and return its RunRecord.

    The record's status is `succeeded`, `failed` (a cell raised, timed out, or the kernel died) or
    `interrupted` (Ctrl-C; KeyboardInterrupt is re-raised once the run is recorded). Call
    `record.raise_for_status()` to turn a failure into NotebookExecutionError. Raises ParameterError
    before anything starts when a parameter is unknown or of the wrong type.

    timeout: seconds per cell (default: the cell_timeout setting). step_runs: {step name: run id} for
    `{{ steps.NAME... }}` references in parameter values. env: extra variables for the kernel.
    """
    settings = settings or load_settings()
    path = resolve_notebook(notebook, settings)
    key = notebook_key(path)
    declared = inspect_parameters(path)
    given = dict(parameters or {})
    if find_refs(given):
        steps = {name: find_run(settings, rid) for name, rid in (step_runs or {}).items()}
        given = resolve_refs(given, steps)
    values = check_parameters(key, declared, given)
    kernel_name = kernel or settings.kernel_name
    check_kernel(kernel_name)
    cell_timeout = settings.cell_timeout if timeout is None else int(timeout)

    identity = _identity(settings, env)
    started = utcnow()
    folder = runs_dir(settings) / key / (run_id or new_run_id(started))
    folder.mkdir(parents=True, exist_ok=False)
    commit, dirty = git_state(settings.home)
    record = RunRecord(
        run_id=folder.name,
        notebook=key,
        parameters=_jsonable(values),
        started=iso(started),
        notebook_path=_relative(path, settings.home),
        kernel=kernel_name,
        cell_timeout_s=cell_timeout if cell_timeout > 0 else None,
        git_commit=commit,
        git_dirty=dirty,
        pid_start=process_start(),
        user=identity.user,
        identity=identity.source,
        job=job,
        step=step,
        scheduled_for=scheduled_for,
        attempt=attempt,
        workbench_version=__version__,
        folder=folder,
    )
    record.save()

    try:
        nb, interrupted = _execute(path, folder, values, kernel_name, record, settings, env, progress, log_output)
        _finish(nb, record, declared, started)
    except Exception as exc:  # a bug or a full disk: never leave a live process's record saying `running`
        ended = utcnow()
        record.status, record.ended, record.duration_s = FAILED, iso(ended), round((ended - started).total_seconds(), 3)
        record.error = {
            "cell_index": None,
            "ename": type(exc).__name__,
            "evalue": str(exc)[:2000],
            "traceback": [],
            "message": f"The runner failed: {type(exc).__name__}: {str(exc)[:500]}",
        }
        record.save()
        raise
    if record.published_status == "alert" and settings.webhook_url:
        _send_alert(record, settings)
    if build_index:
        _build_index(settings)
    if interrupted:
        raise KeyboardInterrupt
    return record


def check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
    except NoSuchKernel:
        installed = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        raise SetupError(
            f"Jupyter kernel '{name}' is not installed. Installed kernels: {installed}. Pass one with --kernel "
            f"(or set WORKBENCH_KERNEL_NAME), or install it: python -m ipykernel install --sys-prefix --name {name}."
        ) from None


def _execute(
    path: Path,
    folder: Path,
    values: dict,
    kernel_name: str,
    record: RunRecord,
    settings: Settings,
    env: Mapping[str, str] | None,
    progress: bool,
    log_output: bool,
):
    """Parameterize and execute; returns (executed notebook, interrupted?) and sets status/error on the record."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.execute import prepare_notebook_metadata, remove_error_markers
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    partial = folder / f"{record.notebook}{PARTIAL_SUFFIX}"
    nb = load_notebook_node(str(path))
    if values:
        nb = parameterize_notebook(nb, values, kernel_name=kernel_name)
    nb = prepare_notebook_metadata(nb, str(path), str(partial))
    nb = remove_error_markers(nb)
    record.status, interrupted = SUCCEEDED, False
    try:
        from papermill.engines import papermill_engines

        papermill_engines.execute_notebook_with_engine(
            _engine.register_engine(),
            nb,
            kernel_name=kernel_name,
            output_path=str(partial),
            progress_bar=progress,
            log_output=log_output,
            start_timeout=KERNEL_START_TIMEOUT_S,
            execution_timeout=record.cell_timeout_s,
            kernel_env=_engine.kernel_env(settings, {**(env or {}), RUN_DIR_ENV: str(folder.resolve())}),
            kernel_cwd=path.parent,
        )
    except KeyboardInterrupt:
        record.status, interrupted = INTERRUPTED, True
        record.error = _stop_error(nb, "KeyboardInterrupt", "The run was stopped (Ctrl-C) while this cell ran.")
    except CellTimeoutError:
        record.status = FAILED
        record.error = _stop_error(
            nb,
            "CellTimeoutError",
            f"The cell ran longer than the {record.cell_timeout_s} s limit (--timeout) and was stopped.",
        )
    except DeadKernelError:
        record.status = FAILED
        record.error = _stop_error(nb, "DeadKernelError", "The kernel died while this cell ran (often: out of memory).")
    except Exception as exc:  # the kernel did not start, or papermill failed: nothing ran
        record.status = FAILED
        record.error = {
            "cell_index": None,
            "ename": type(exc).__name__,
            "evalue": str(exc)[:2000],
            "message": f"The notebook could not be executed: {type(exc).__name__}: {str(exc)[:500]}",
            "traceback": [],
        }
    if record.status == SUCCEEDED:
        error = _engine.find_error(nb)
        if error is not None:
            record.status, record.error = FAILED, error
    return nb, interrupted


def _stop_error(nb, ename: str, message: str) -> dict[str, Any]:
    index = _engine.started_cell(nb)
    cell = nb.cells[index] if index is not None else {}
    return {
        "cell_index": index,
        "execution_count": cell.get("execution_count"),
        "source": cell.get("source", ""),
        "ename": ename,
        "evalue": message,
        "message": message,
        "title": f"{ename}: {message}",
        "traceback": [],
    }


def _finish(nb, record: RunRecord, declared, started) -> None:
    """Collect what was published, write figures, notebook and report, then the final run.json."""
    import nbformat

    from ..reports.publish import collect
    from ..reports.render import render_report

    folder = record.folder
    published, figures = collect(nb)
    for name, fmt, data in figures:
        import base64

        payload = base64.b64decode(data) if fmt == "image/png" else data.encode("utf-8")
        atomic_write_bytes(folder / "figures" / name, payload)
    record.published = published
    ended = utcnow()
    record.ended, record.duration_s = iso(ended), round((ended - started).total_seconds(), 3)

    error_index = (record.error or {}).get("cell_index")
    if error_index is not None:
        _engine.mark_error(nb, error_index)
    try:
        atomic_write_text(folder / REPORT_FILE, render_report(nb, record, declared))
        record.files["report"] = REPORT_FILE
    except Exception as exc:  # a report that cannot render must not lose the run's record
        log.warning("could not render the report of run %s: %s: %s", record.run_id, type(exc).__name__, exc)
        record.files["report"] = None
        record.files["report_error"] = f"{type(exc).__name__}: {exc}"[:500]
    if record.error:
        _engine.add_error_note(
            nb, f"{record.error.get('ename')}: {record.error.get('evalue') or record.error.get('message', '')}"[:300]
        )
    notebook_file = f"{record.notebook}.ipynb"
    atomic_write_text(folder / notebook_file, nbformat.writes(nb))
    record.files["notebook"] = notebook_file
    (folder / f"{record.notebook}{PARTIAL_SUFFIX}").unlink(missing_ok=True)
    record.save()


def _build_index(settings: Settings) -> None:
    from ..reports.site import build_index

    try:
        build_index(settings)
    except Exception as exc:  # the run is recorded; the index can be rebuilt with `workbench reports build`
        log.warning("could not rebuild the reports index: %s: %s", type(exc).__name__, exc)


def _send_alert(record: RunRecord, settings: Settings) -> None:
    """POST the run's alert (workbench.alerts, with retries) and record the outcome in run.json.
    An alert that cannot be delivered is logged and recorded, never fatal to the run."""
    from ..alerts import notify_run

    try:
        result = notify_run(record, settings)
    except Exception as exc:  # a bug in building the payload must not lose the run's record
        log.warning("alert for run %s not sent: %s", record.run_id, type(exc).__name__)
        record.alert = {"delivered": False, "status_code": None, "attempts": 0, "error": type(exc).__name__}
    else:
        if result is None:
            return
        record.alert = result.to_dict()
    record.save()


def _identity(settings: Settings, env: Mapping[str, str] | None) -> Identity:
    if (env or {}).get("WORKBENCH_JOB_IDENTITY") == "service":
        return Identity(settings.service_user, settings.service_groups, "service")
    return current_identity(settings)


def _relative(path: Path, home: str) -> str:
    try:
        return str(path.resolve().relative_to(Path(home).resolve()))
    except ValueError:
        return str(path)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=str))
