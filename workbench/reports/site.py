"""The static reports site: `<reports>/index.html`, rebuilt from the run records.

One self-contained page (inline CSS, inline SVG charts, nothing from the network) that answers "is
everything fine?": one card per job (its jobs.yaml name) and, for ad-hoc runs, per notebook and
dataset; each card shows its latest status and values from its latest run only (a chain: the latest
run of each step), SHIP / DO NOT SHIP where a run published a `decision`, trends over that card's
runs only, and figures of its latest run. Times are relative ("2 h ago", as of the build; a small
inline script refreshes them when the page is opened) with the absolute UTC time on hover. A header
links back to the hub (the `reports_hub_url` setting). Links to reports are relative, so the folder
can be copied anywhere (object storage, a web server) as it is.
"""

from __future__ import annotations

import fcntl
import html
import json
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Settings, load_settings
from ..storage import atomic_write_text

__all__ = ["build_index", "trend_svg", "card_key", "relative_time", "format_value", "INDEX_FILE"]

INDEX_FILE = "index.html"
LOCK_FILE = ".index.lock"
MAX_RUNS_LISTED = 500
MAX_POINTS = 60
HEADLINE_METRICS = 6  # values shown on a card; the rest fold under "more"
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


def relative_time(moment: str | None, now: datetime) -> str:
    """'just now', '5 min ago', '2 h ago', '3 d ago' for an ISO time (UTC), as of `now`."""
    from ..runs.record import parse_iso

    when = parse_iso(moment)
    if when is None:
        return ""
    seconds = (now - when).total_seconds()
    if seconds < 0:
        return "in the future"
    for size, unit in ((86400 * 365, "y"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def absolute_time(moment: str | None) -> str:
    """'2026-12-01 06:00 UTC' for an ISO time: what the hover shows."""
    from ..runs.record import parse_iso

    when = parse_iso(moment)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else ""


def format_value(value: Any) -> str:
    """A published number as a reader expects it: integers without decimals, others to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def card_key(record) -> tuple[str, str, str]:
    """(kind, id, title) of the card a run belongs to: its job (jobs.yaml name), else its notebook and
    the dataset it was given (ad-hoc runs of one notebook on different data are different cards)."""
    if record.job:
        return "job", f"job-{record.job}", record.job
    dataset = (record.parameters or {}).get("dataset")
    if dataset:
        return "adhoc", f"nb-{record.notebook}-{dataset}", record.notebook
    return "adhoc", f"nb-{record.notebook}", record.notebook


def _metrics(latest: list, runs_oldest_first: list) -> list[dict[str, Any]]:
    """Headline values from the card's latest run(s) only; each trend over the card's own runs."""
    metrics = []
    for record in latest:
        published = record.published or {}
        for name, value in (published.get("metrics") or {}).items():
            series = [
                (r.run_id, r.published["metrics"][name], (r.published.get("metric_status") or {}).get(name))
                for r in runs_oldest_first
                if r.step == record.step and name in ((r.published or {}).get("metrics") or {})
            ]
            metrics.append(
                {
                    "name": name,
                    "latest": format_value(value),
                    "status": (published.get("metric_status") or {}).get(name),
                    "runs": len(series),
                    "svg": trend_svg(series) if len(series) > 1 else "",  # a trend needs two runs
                }
            )
    return metrics


def _figures(record, reports_dir: Path) -> list[dict[str, str]]:
    figures = []
    if record.folder is None:
        return figures
    for fig in (record.published or {}).get("figures") or []:
        file = record.folder / fig["file"]
        if file.is_file():
            figures.append(
                {"name": fig["name"], "src": file.relative_to(reports_dir).as_posix(), "run_id": record.run_id}
            )
    return figures


def _card(kind: str, card_id: str, title: str, runs: list, reports_dir: Path, now: datetime) -> dict[str, Any]:
    """One card from its runs (newest first). A job's latest runs are those of its latest scheduled
    time (one per step of a chain); an ad-hoc card's latest run is its newest one."""
    newest = runs[0]
    if kind == "job":
        instance = [r for r in runs if r.scheduled_for == newest.scheduled_for] if newest.scheduled_for else [newest]
        latest_by_step: dict[Any, Any] = {}
        for r in instance:  # newest first: the last attempt of each step
            latest_by_step.setdefault(r.step, r)
        latest = sorted(latest_by_step.values(), key=lambda r: (r.started or "", r.run_id))
    else:
        latest = [newest]
    decision = next(
        (
            r.published["values"]["decision"]
            for r in reversed(latest)
            if "decision" in ((r.published or {}).get("values") or {})
        ),
        None,
    )
    statuses = [r.status for r in latest]
    published = [r.published_status for r in latest if r.published_status]
    status = next((s for s in ("failed", "interrupted", "running") if s in statuses), "succeeded")
    verdict = next((s for s in ("alert", "warn", "ok") if s in published), None)
    with_figures = next((r for r in reversed(latest) if (r.published or {}).get("figures")), None)
    dataset = (newest.parameters or {}).get("dataset") if kind == "adhoc" else None
    return {
        "kind": kind,
        "id": card_id,
        "title": title,
        "dataset": dataset,
        "notebooks": sorted({r.notebook for r in runs}),
        "latest": newest,
        "latest_runs": [
            {
                "record": r,
                "link": _link(r, reports_dir),
                "when": relative_time(r.started, now),
                "at": absolute_time(r.started),
            }
            for r in latest
        ],
        "status": status,
        "verdict": verdict,
        "decision": decision,
        "ship": decision == "SHIP" if decision else None,
        "link": _link(latest[-1], reports_dir),
        "when": relative_time(newest.started, now),
        "at": absolute_time(newest.started),
        "runs": len(runs),
        "metrics": _metrics(latest, list(reversed(runs))),
        "figures": _figures(with_figures, reports_dir) if with_figures is not None else [],
        "failed": sum(1 for r in runs if r.status == "failed"),
    }


def _context(records: list, reports_dir: Path, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    groups: dict[str, tuple[str, str, list]] = {}
    for record in records:  # newest first
        kind, card_id, title = card_key(record)
        groups.setdefault(card_id, (kind, title, []))[2].append(record)
    cards = [_card(kind, card_id, title, runs, reports_dir, now) for card_id, (kind, title, runs) in groups.items()]
    cards.sort(key=lambda c: (c["kind"] != "job", c["title"], c["dataset"] or ""))
    table = [
        {
            "record": r,
            "link": _link(r, reports_dir),
            "params": _params_text(r.parameters),
            "duration": _duration(r.duration_s),
            "when": relative_time(r.started, now),
            "at": absolute_time(r.started),
        }
        for r in records[:MAX_RUNS_LISTED]
    ]
    summary = {
        "cards": len(cards),
        "attention": sum(
            1 for c in cards if c["status"] != "succeeded" or c["verdict"] in ("alert", "warn") or c["ship"] is False
        ),
    }
    return {"notebooks": cards, "runs": table, "total_runs": len(records), "listed": len(table), "summary": summary}


def build_index(settings: Settings | None = None) -> Path:
    """Write `<reports>/index.html` from every run record and return its path."""
    from ..runs.history import load_runs
    from ..runs.record import iso, utcnow

    settings = settings or load_settings()
    reports_dir = settings.path("reports_dir")
    with _locked(reports_dir):
        records = load_runs(settings)
        now = utcnow()
        page = _template().render(
            generated=iso(now),
            generated_at=absolute_time(iso(now)),
            hub_url=settings.reports_hub_url,
            headline=HEADLINE_METRICS,
            **_context(records, reports_dir, now),
        )
        path = reports_dir / INDEX_FILE
        atomic_write_text(path, page)
    return path
