"""`publish()`: how a notebook hands metrics, figures and a status to its run record and the index.

Each call displays one output whose bundle carries a JSON item under PUBLISH_MIMETYPE (plus a
text line, and the figure as PNG). The job runner collects those items from the executed notebook,
so nothing travels by side channel and an interactive session simply shows what would be published.
"""

from __future__ import annotations

import base64
import io
import math
import numbers
import re
from typing import Any

from ..errors import ReportError

__all__ = ["publish", "collect", "PUBLISH_MIMETYPE", "STATUSES", "worst_status"]

PUBLISH_MIMETYPE = "application/vnd.workbench.publish+json"
STATUSES = ("ok", "warn", "alert")
_SEVERITY = {None: -1, "ok": 0, "warn": 1, "alert": 2}
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_SCALARS = (str, bool, int, float, type(None))


def worst_status(*statuses: str | None) -> str | None:
    return max(statuses, key=lambda s: _SEVERITY.get(s, -1), default=None)


def publish(
    metric: str | None = None,
    value: float | None = None,
    status: str | None = None,
    figure=None,
    name: str | None = None,
    **extra,
) -> None:
    """Publish a metric, a figure, a status ("ok" | "warn" | "alert") and/or named values.

    In a job run they land in run.json and the reports index (a status of "alert" makes the run exit
    with status 2); outside a run this only shows what would be published. `name` names the figure
    (its file name and caption). Extra keyword values (str, number, bool) are stored under `values`
    and can be passed to the next step of a job chain (`{{ steps.train.values.KEY }}`).
    """
    item: dict[str, Any] = {}
    if metric is not None:
        if not isinstance(metric, str) or not metric.strip():
            raise ReportError("publish(metric=...) takes the metric's name as a non-empty string.")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise ReportError(
                f"publish(metric='{metric}', value=...) needs a finite number as value; found a {type(value).__name__}"
                f"{' that is not finite' if isinstance(value, numbers.Real) and not isinstance(value, bool) else ''}."
            )
        item["metric"], item["value"] = metric.strip(), float(value)
    elif value is not None:
        raise ReportError("publish(value=...) needs metric='name' too, so the value can be charted.")
    if status is not None:
        if status not in STATUSES:
            raise ReportError(f"publish(status=...) must be one of {', '.join(STATUSES)}; found a value that is not.")
        item["status"] = status
    for key, val in extra.items():
        if not isinstance(val, _SCALARS):
            raise ReportError(
                f"publish({key}=...) must be a string, number, boolean or None; found a {type(val).__name__}."
            )
    if extra:
        item["values"] = dict(extra)
    bundle: dict[str, Any] = {}
    if figure is not None:
        fmt, data = _figure_data(figure)
        item["figure"] = _NAME.sub("-", name).strip("-") if name else None
        bundle[fmt] = data
    elif name is not None:
        item["name"] = name
    if not item:
        raise ReportError(
            "publish() was called with nothing to publish: give metric= and value=, status=, figure= or named values."
        )
    bundle[PUBLISH_MIMETYPE] = item
    bundle["text/plain"] = _describe(item)
    _display(bundle)


def _describe(item: dict[str, Any]) -> str:
    parts = []
    if "metric" in item:
        parts.append(f"metric {item['metric']} = {item['value']:g}")
    if "figure" in item:
        parts.append(f"figure {item['figure'] or ''}".rstrip())
    if "values" in item:
        parts.append(", ".join(f"{k}={v}" for k, v in item["values"].items()))
    if "status" in item:
        parts.append(f"status {item['status']}")
    return "published " + "; ".join(parts)


def _figure_data(figure) -> tuple[str, str]:
    """(mimetype, data) for a matplotlib figure, PNG bytes, or anything with _repr_png_/_repr_svg_."""
    if isinstance(figure, (bytes, bytearray)):
        return "image/png", base64.b64encode(bytes(figure)).decode("ascii")
    if hasattr(figure, "savefig"):
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        try:  # shown once, as published: stop the inline backend from showing it again
            import matplotlib.pyplot as plt

            plt.close(figure)
        except Exception:
            pass
        return "image/png", base64.b64encode(buf.getvalue()).decode("ascii")
    for method, fmt in (("_repr_png_", "image/png"), ("_repr_svg_", "image/svg+xml")):
        if hasattr(figure, method):
            data = getattr(figure, method)()
            if data:
                return fmt, base64.b64encode(data).decode("ascii") if isinstance(data, bytes) else data
    raise ReportError(
        f"publish(figure=...) takes a matplotlib figure, PNG bytes, or an object with _repr_png_ or _repr_svg_; found a {type(figure).__name__}."
    )


def _display(bundle: dict[str, Any]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(bundle, raw=True)


# ---- the runner's side ------------------------------------------------------------------------
def collect(nb) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """(published, figures) from an executed notebook's outputs.

    published: {"status": worst status, "metrics": {name: value}, "metric_status": {name: status},
    "figures": [{"name", "file"}], "values": {...}}. figures: (file name, mimetype, data) to write.
    A metric published twice keeps its last value.
    """
    published: dict[str, Any] = {"status": None, "metrics": {}, "metric_status": {}, "figures": [], "values": {}}
    files: list[tuple[str, str, str]] = []
    used: set[str] = set()
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data") or {}
            item = data.get(PUBLISH_MIMETYPE)
            if not isinstance(item, dict):
                continue
            if "metric" in item:
                published["metrics"][item["metric"]] = item.get("value")
                if item.get("status"):
                    published["metric_status"][item["metric"]] = item["status"]
            if item.get("status") in STATUSES:
                published["status"] = worst_status(published["status"], item["status"])
            published["values"].update(item.get("values") or {})
            if "figure" in item:
                fmt = "image/png" if "image/png" in data else "image/svg+xml" if "image/svg+xml" in data else None
                if fmt is None:
                    continue
                stem = item.get("figure") or f"figure-{len(files) + 1}"
                candidate, n = stem, 2
                while candidate in used:
                    candidate, n = f"{stem}-{n}", n + 1
                used.add(candidate)
                file = f"{candidate}.{'png' if fmt == 'image/png' else 'svg'}"
                files.append((file, fmt, data[fmt]))
                published["figures"].append({"name": candidate, "file": f"figures/{file}"})
    return published, files
