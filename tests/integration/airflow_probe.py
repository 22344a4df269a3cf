"""Run by the Airflow virtual environment's python (not the workbench's): load a DAG folder with a real
`DagBag` and print what Airflow made of it as JSON on the last line of stdout.

Usage: python airflow_probe.py DAG_FOLDER. It imports only Airflow, never the workbench.
"""

from __future__ import annotations

import inspect
import json
import sys


def _dagbag_class():
    try:  # Airflow 3.1+
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2 and 3.0
        from airflow.models.dagbag import DagBag
    return DagBag


def _seconds(delta) -> float | None:
    return None if delta is None else delta.total_seconds()


def describe(folder: str) -> dict:
    import airflow

    DagBag = _dagbag_class()
    # Airflow 3.3 dropped include_examples (the examples follow [core] load_examples, off in the tests)
    examples = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    bag = DagBag(dag_folder=folder, **examples)
    dags = {}
    for dag_id, dag in sorted(bag.dags.items()):
        tasks = {}
        for task in dag.tasks:
            tasks[task.task_id] = {
                "operator": type(task).__module__ + "." + type(task).__name__,
                "upstream": sorted(task.upstream_task_ids),
                "downstream": sorted(task.downstream_task_ids),
                "retries": task.retries,
                "retry_delay": _seconds(task.retry_delay),
                "retry_exponential_backoff": task.retry_exponential_backoff,
                "bash_command": task.bash_command,
                "env": task.env,
                "cwd": task.cwd,
            }
        order = [t.task_id for t in dag.topological_sort()] if hasattr(dag, "topological_sort") else None
        dags[dag_id] = {
            "fileloc": dag.fileloc,
            "schedule": dag.schedule if isinstance(dag.schedule, str) else None,
            "timetable": {
                "type": type(dag.timetable).__name__,
                "expression": getattr(dag.timetable, "expression", None) or getattr(dag.timetable, "_expression", None),
                "timezone": str(getattr(dag.timetable, "timezone", None) or getattr(dag.timetable, "_timezone", None)),
            },
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "tags": sorted(dag.tags),
            "order": order,
            "tasks": tasks,
        }
    return {
        "airflow_version": airflow.__version__,
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "warnings": {str(k): [str(w) for w in v] for k, v in getattr(bag, "captured_warnings", {}).items()},
        "dags": dags,
    }


if __name__ == "__main__":
    print(json.dumps(describe(sys.argv[1]), default=str))
