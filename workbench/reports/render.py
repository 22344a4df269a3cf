"""Rendering an executed notebook to the stakeholder report (`report.html`), in-process with nbconvert.

Code cells are hidden, outputs and markdown kept; a header shows the run and its parameters; a failed
run shows the failing cell and its traceback first. The page loads nothing from the network.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["render_report", "report_context", "TEMPLATE_DIR", "TEMPLATE_NAME"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "workbench_report"
_local = threading.local()  # an exporter compiles its templates once; keep one per thread


def _exporter():
    exporter = getattr(_local, "exporter", None)
    if exporter is None:
        import logging

        from nbconvert import HTMLExporter

        quiet = logging.getLogger("workbench.reports.nbconvert")
        quiet.setLevel(logging.ERROR)  # nbconvert warns about images without alt text on every plot
        exporter = HTMLExporter(
            log=quiet,
            template_name=TEMPLATE_NAME,
            extra_template_basedirs=[str(TEMPLATE_DIR)],
            exclude_input=True,
            exclude_input_prompt=True,
            exclude_output_prompt=True,
            embed_images=True,
        )
        _local.exporter = exporter
    return exporter


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _hub_url() -> str:
    try:
        from ..config import load_settings

        return load_settings().reports_hub_url
    except Exception:  # a report renders even where settings cannot be read
        return ""


def report_context(
    record, declared: Mapping[str, Any] | None = None, nb=None, hub_url: str | None = None
) -> dict[str, Any]:
    """What the report header shows: the run, every parameter (given or default), metrics, the error,
    and the way back (the index, the hub and its logout when `reports_hub_url` is set)."""
    from .site import absolute_time, format_value

    declared = declared or {}
    params = []
    for name, p in declared.items():
        given = name in record.parameters
        params.append(
            {
                "name": name,
                "given": given,
                "help": getattr(p, "help", ""),
                "value": repr(record.parameters[name]) if given else getattr(p, "default", ""),
            }
        )
    for name, value in record.parameters.items():
        if name not in declared:
            params.append({"name": name, "given": True, "help": "", "value": repr(value)})
    published = record.published or {}
    metrics = [
        {
            "name": k,
            "value": format_value(v),
            "status": (published.get("metric_status") or {}).get(k),
        }
        for k, v in (published.get("metrics") or {}).items()
    ]
    error = None
    if record.error:
        err = dict(record.error)
        index = err.get("cell_index")
        error = {
            **err,
            "source": err.get("source") or "",
            "cell_number": err.get("execution_count") or index,
            "title": err.get("title") or f"{err.get('ename') or 'Error'}: {err.get('evalue') or ''}".rstrip(": "),
            "traceback": err.get("traceback") or [],
        }
    return {
        "notebook": record.notebook,
        "run_id": record.run_id,
        "status": record.status,
        "published_status": published.get("status"),
        "started": record.started or "",
        "started_at": absolute_time(record.started),
        "hub_url": _hub_url() if hub_url is None else hub_url,
        "index": "../../../index.html",  # reports/runs/<notebook>/<run id>/report.html
        "duration": _duration(record.duration_s),
        "user": record.user,
        "host": record.host,
        "git_commit": record.git_commit,
        "git_dirty": record.git_dirty,
        "job": record.job,
        "step": record.step,
        "parameters": params,
        "metrics": metrics,
        "error": error,
    }


def _for_readers(nb):
    """A copy without stderr streams: logs (Spark's start-up chatter, warnings) are not results.
    The executed notebook in the run folder keeps them; a failure's traceback is in the header."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [
                o
                for o in cell.get("outputs", [])
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    return nb


def render_report(nb, record, declared: Mapping[str, Any] | None = None) -> str:
    """The report's HTML for an executed notebook node and its RunRecord."""
    resources = {"workbench": report_context(record, declared, nb), "metadata": {"name": record.notebook}}
    body, _ = _exporter().from_notebook_node(_for_readers(nb), resources=resources)
    return body
