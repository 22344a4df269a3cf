"""The static reports site: `<reports>/index.html`, rebuilt from the run records.

One self-contained page (inline CSS, inline SVG charts, no script, no network): the notebooks with
their latest status, a small trend chart per published metric, the latest published figures, and
a table of runs linking to each rendered report. Links are relative, so the folder can be copied
anywhere (object storage, a web server) as it is.
"""

from __future__ import annotations

import fcntl
import html
import json
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import Settings, load_settings
from ..storage import atomic_write_text

__all__ = ["build_index", "trend_svg", "INDEX_FILE"]

INDEX_FILE = "index.html"
LOCK_FILE = ".index.lock"
MAX_RUNS_LISTED = 500
MAX_POINTS = 60
_COLORS = {"ok": "#1a7f37", "warn": "#bf8700", "alert": "#cf222e", None: "#0969da"}
_env = None


def _template():
    global _env
    if _env is None:
        import jinja2

        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _env.get_template("site/index.html.j2")


@contextmanager
def _locked(folder: Path):
    """Serialise index builds of concurrent runs, so the last one written has seen every record."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def trend_svg(points: Iterable[tuple[str, float, str | None]], width: int = 260, height: int = 64) -> str:
    """An inline SVG line chart of (label, value, status) points, oldest first; each point has a tooltip."""
    points = [p for p in points if isinstance(p[1], (int, float))][-MAX_POINTS:]
    if not points:
        return ""
    pad_x, pad_top, pad_bottom = 6, 6, 14
    values = [float(v) for _, v, _ in points]
    low, high = min(values), max(values)
    span = (high - low) or (abs(high) or 1.0)
    if high == low:
        low, high = low - span / 2, high + span / 2
    inner_w, inner_h = width - 2 * pad_x, height - pad_top - pad_bottom
    step = inner_w / (len(points) - 1) if len(points) > 1 else 0

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad_x + (i * step if len(points) > 1 else inner_w / 2)
        y = pad_top + inner_h * (1 - (v - low) / (high - low))
        return round(x, 1), round(y, 1)

    coords = [xy(i, v) for i, v in enumerate(values)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    parts.append(
        f'<line x1="{pad_x}" y1="{height - pad_bottom}" x2="{width - pad_x}" y2="{height - pad_bottom}" stroke="#d0d7de"/>'
    )
    if len(coords) > 1:
        parts.append(
            '<polyline fill="none" stroke="#57606a" stroke-width="1.5" points="'
            + " ".join(f"{x},{y}" for x, y in coords)
            + '"/>'
        )
    for (label, value, status), (x, y) in zip(points, coords):
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="3" fill="{_COLORS.get(status, _COLORS[None])}">'
            f"<title>{html.escape(str(label))}: {value:g}{' (' + html.escape(status) + ')' if status else ''}</title></circle>"
        )
    parts.append(f'<text x="{pad_x}" y="{height - 2}" font-size="10" fill="#57606a">min {min(values):g}</text>')
    parts.append(
        f'<text x="{width - pad_x}" y="{height - 2}" font-size="10" fill="#57606a" text-anchor="end">max {max(values):g}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _link(record, reports_dir: Path) -> str | None:
    path = record.report_path
    if not path or not path.is_file():
        return None
    try:
        return path.relative_to(reports_dir).as_posix()
    except ValueError:
        return path.as_uri()


def _params_text(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in parameters.items())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _context(records: list, reports_dir: Path) -> dict[str, Any]:
    from ..runs.history import latest_by_notebook

    by_notebook: dict[str, list] = {}
    for record in records:
        by_notebook.setdefault(record.notebook, []).append(record)
    notebooks = []
    for name, latest in sorted(latest_by_notebook(records).items()):
        runs = by_notebook[name]
        oldest_first = list(reversed(runs))
        metric_names: list[str] = []
        for r in oldest_first:
            for m in (r.published or {}).get("metrics") or {}:
                if m not in metric_names:
                    metric_names.append(m)
        metrics = []
        for m in metric_names:
            series = [
                (r.run_id, r.published["metrics"][m], (r.published.get("metric_status") or {}).get(m))
                for r in oldest_first
                if m in ((r.published or {}).get("metrics") or {})
            ]
            metrics.append(
                {
                    "name": m,
                    "latest": series[-1][1],
                    "status": series[-1][2],
                    "runs": len(series),
                    "svg": trend_svg(series),
                }
            )
        with_figures = next((r for r in runs if (r.published or {}).get("figures")), None)
        figures = []
        if with_figures is not None and with_figures.folder is not None:
            for fig in with_figures.published["figures"]:
                file = with_figures.folder / fig["file"]
                if file.is_file():
                    figures.append(
                        {
                            "name": fig["name"],
                            "src": file.relative_to(reports_dir).as_posix(),
                            "run_id": with_figures.run_id,
                        }
                    )
        notebooks.append(
            {
                "name": name,
                "latest": latest,
                "link": _link(latest, reports_dir),
                "runs": len(runs),
                "metrics": metrics,
                "figures": figures,
                "failed": sum(1 for r in runs if r.status == "failed"),
            }
        )
    table = [
        {
            "record": r,
            "link": _link(r, reports_dir),
            "params": _params_text(r.parameters),
            "duration": _duration(r.duration_s),
        }
        for r in records[:MAX_RUNS_LISTED]
    ]
    return {"notebooks": notebooks, "runs": table, "total_runs": len(records), "listed": len(table)}


def build_index(settings: Settings | None = None) -> Path:
    """Write `<reports>/index.html` from every run record and return its path."""
    from ..runs.history import load_runs
    from ..runs.record import iso, utcnow

    settings = settings or load_settings()
    reports_dir = settings.path("reports_dir")
    with _locked(reports_dir):
        records = load_runs(settings)
        page = _template().render(generated=iso(utcnow()), **_context(records, reports_dir))
        path = reports_dir / INDEX_FILE
        atomic_write_text(path, page)
    return path
