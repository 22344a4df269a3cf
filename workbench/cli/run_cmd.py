"""`workbench run`: run a notebook headlessly with parameters (flags as in papermill's CLI)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import yaml

from ..config import load_settings
from ..errors import ParameterError

EPILOG = """\
Exit status: 0 succeeded, 1 a cell failed (or timed out), 2 succeeded but the notebook published
status 'alert', 64 bad parameters, 130 interrupted (Ctrl-C).

Parameter sources merge in order -f, -y, -p/-r (later wins). -p values are read as the type the
notebook declares (n = 5 -> int; columns = [] -> list, given as a,b or [a, b]).

examples:
  workbench run 01_explore -p dataset weather -p sample_rows 500
  workbench run explore -y '{dataset: flights, columns: [carrier, dep_delay]}' --timeout 600
  workbench run explore --help-notebook          show the notebook's parameters
"""


EXAMPLES = [("workbench run 01_explore -p dataset flights", "run a notebook headlessly; report under reports/runs/")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a notebook headlessly with parameters; writes reports/runs/<notebook>/<run_id>/",
        description="Execute a notebook from the notebooks folder in a new kernel with papermill. Parameters are "
        "checked against the notebook's `parameters` cell before the kernel starts. The run folder gets the "
        "executed notebook, report.html (code hidden, parameters in a header) and run.json; the reports "
        "index is rebuilt.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "notebook",
        nargs="?",
        help="file name, short name (explore for 01_explore) or path of the notebook; omit to list the notebooks",
    )
    p.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="a parameter; the value is read as the type the notebook declares",
    )
    p.add_argument(
        "-r",
        "--parameters_raw",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="a parameter passed as a string",
    )
    p.add_argument(
        "-y", "--parameters_yaml", action="append", metavar="YAML", default=[], help="parameters as a YAML mapping"
    )
    p.add_argument(
        "-f", "--parameters_file", action="append", metavar="FILE", default=[], help="parameters from a YAML file"
    )
    p.add_argument("-k", "--kernel", help="Jupyter kernel to run in (default: the kernel_name setting)")
    p.add_argument(
        "--timeout",
        "--execution-timeout",
        dest="timeout",
        type=int,
        metavar="SECONDS",
        help="seconds one cell may run before the run fails; 0 for no limit (default: the cell_timeout setting)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar; print only the run id on stdout (for scripts: RUN=$(workbench run nb -q))",
    )
    p.add_argument("--no-progress-bar", action="store_true", help="no progress bar, keep the summary")
    p.add_argument("--log-output", action="store_true", help="copy the notebook's output to stderr as it runs")
    p.add_argument("--help-notebook", action="store_true", help="show the notebook's parameters and exit")
    jobs = p.add_argument_group("options used by the scheduler and exported Airflow DAGs")
    jobs.add_argument(
        "--step-run",
        action="append",
        default=[],
        metavar="STEP=RUN_ID",
        help="bind {{ steps.STEP.* }} references in parameter values to that run",
    )
    jobs.add_argument("--job", help="record the run as part of this job")
    jobs.add_argument("--job-step", help="record the run as this step of the job")
    jobs.add_argument("--scheduled-for", metavar="ISO_TIME", help="the schedule time this run is for")
    jobs.add_argument("--attempt", type=int, help="attempt number (retries)")
    jobs.add_argument("--run-id", help="use this run id instead of a new one")
    p.set_defaults(func=run)


def gather_parameters(args: argparse.Namespace) -> dict:
    """Merge the parameter sources like papermill: files, then YAML strings, then -p/-r."""
    merged: dict = {}
    for file in args.parameters_file:
        merged.update(_mapping(Path(file).read_text(), f"file {file}"))
    for text in args.parameters_yaml:
        merged.update(_mapping(text, "-y"))
    for name, value in args.parameters_raw:
        merged[name] = value
    for name, value in args.parameters:
        merged[name] = value
    return merged


def _mapping(text: str, where: str) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"Parameters from {where} are not valid YAML: {exc}.") from exc
    if not isinstance(data, dict):
        raise ParameterError(
            f"Parameters from {where} must be a YAML mapping (name: value), found a {type(data).__name__}."
        )
    return data


def _step_runs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, run_id = pair.partition("=")
        if not sep or not name or not run_id:
            raise ParameterError(f"--step-run takes STEP=RUN_ID; found '{pair}'.")
        out[name] = run_id
    return out


def _stop_on_signals() -> None:
    """SIGINT (Ctrl-C, the scheduler stopping) and SIGTERM (systemd, Airflow killing a task) stop the run
    cleanly: kernel shut down, run recorded `interrupted`. Also when started with SIGINT ignored (nohup, `&`)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (main() called from a thread): keep the defaults
        pass


def run(args: argparse.Namespace) -> int:
    from ..jobs.fastimport import skip_iri_grammar

    skip_iri_grammar()
    from ..jobs.notebooks import describe_parameters, inspect_parameters, list_notebooks, notebook_key, resolve_notebook

    settings = load_settings()
    if not args.notebook:
        names = [notebook_key(p) for p in list_notebooks(settings)]
        print("Notebooks in", settings.path("notebooks_dir"), ":", ", ".join(names) if names else "none")
        print("Run one with: workbench run NAME -p key value")
        return 0
    if args.help_notebook:
        path = resolve_notebook(args.notebook, settings)
        params = inspect_parameters(path)
        print(f"Parameters of {notebook_key(path)} ({path}):")
        for param in params.values():
            print(
                f"  {param.name:<20} {param.type or 'any':<6} default {param.default}"
                + (f"  # {param.help}" if param.help else "")
            )
        if not params:
            print("  none: " + describe_parameters(params))
        return 0

    from ..jobs.runner import run_notebook

    _stop_on_signals()
    logging.basicConfig(
        level=logging.INFO if args.log_output else logging.WARNING, format="%(message)s", stream=sys.stderr
    )
    progress = not (args.quiet or args.no_progress_bar) and sys.stderr.isatty()
    record = run_notebook(
        args.notebook,
        gather_parameters(args),
        settings,
        kernel=args.kernel,
        timeout=args.timeout,
        progress=progress,
        log_output=args.log_output,
        step_runs=_step_runs(args.step_run),
        job=args.job,
        step=args.job_step,
        scheduled_for=args.scheduled_for,
        attempt=args.attempt,
        run_id=args.run_id,
    )
    if args.quiet:
        print(record.run_id)
    else:
        extra = f", published {record.published_status}" if record.published_status else ""
        print(f"{record.notebook} {record.run_id}: {record.status} in {record.duration_s:.1f} s{extra}")
        print(f"  report  {record.report_path or '(not rendered)'}")
        print(f"  index   {settings.path('reports_dir') / 'index.html'}")
        if record.alert:
            from .runs_cmd import describe_alert

            print(f"  alert   {describe_alert(record.alert)}")
    if record.error:
        err = record.error
        where = f"cell {err['execution_count'] or err['cell_index']}: " if err.get("cell_index") is not None else ""
        print(
            f"error: {where}{err.get('ename')}: {err.get('evalue') or err.get('message') or ''}".rstrip(": "),
            file=sys.stderr,
        )
    return record.exit_code
