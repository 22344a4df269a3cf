"""Alert delivery: the one webhook sender, a JSON POST to the `webhook_url` setting.

The job runner calls `notify_run(record)` when a run's notebook publishes status `alert`; a notebook or
a script may call `notify(status, alert_payload(...))` itself. Both send the same payload and go through
`post_json`, which retries connection errors and 5xx answers (3 attempts, 0.5 s then 1 s apart) and
never retries a 4xx. The URL often carries a secret token, so it never appears in messages or logs.
Delivery failures are returned, not raised: the run still finishes with its own status, and the
runner writes the outcome into the run's record (`alert` in run.json) and logs a warning.

The payload is one JSON object (`Content-Type: application/json`); any receiver that accepts a JSON
POST works (Slack and Teams incoming webhooks read the `text` field):

    event            "workbench.alert"
    version          1 (the payload's schema version; fields are only ever added)
    source           what raised it: the notebook's file name without .ipynb for a run
    status           "alert"
    summary          one line: which published metrics were at alert
    text             "[ALERT] <source>: <summary> (<report_url>)", for chat receivers
    metrics          {name: value} the notebook published
    report_url       file:// URI of the run's rendered report ("" when it did not render)
    sent_at          ISO 8601 time of sending, UTC
    run_id           the run (`workbench runs show RUN_ID`)
    notebook         same as source
    published_status "alert", what the notebook published
    run_status       how execution ended: succeeded (an alert is published by a run that succeeded)
    job              the scheduled job of the run, or null
    step             the job's step, or null
    started          ISO 8601 start of the run, UTC
    ended            ISO 8601 end of the run, UTC
    report           the report's path under the reports folder (runs/<notebook>/<run_id>/report.html),
                     the same path on the reports site behind the hub (/services/reports/...)

`alert_payload(...)` builds the first nine fields for any source; extra keyword arguments are added
as they are.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .runs.layout import RUNS_SUBDIR

if TYPE_CHECKING:
    from .runs.record import RunRecord

__all__ = ["WebhookResult", "alert_payload", "run_payload", "post_json", "notify", "notify_run", "EVENT"]

log = logging.getLogger(__name__)
EVENT = "workbench.alert"
SCHEMA_VERSION = 1
ATTEMPTS = 3
BACKOFF_S = 0.5
TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 5.0  # per attempt, for a run's alert: the runner waits for it before it exits


@dataclass(frozen=True)
class WebhookResult:
    delivered: bool
    status_code: int | None = None
    attempts: int = 0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alert_payload(
    source: str, status: str, summary: str = "", metrics: Mapping[str, float] | None = None, url: str = "", **extra: Any
) -> dict[str, Any]:
    """The JSON body sent for an alert: what raised it, its status, a one-line summary, the metrics
    behind it and where to read the report. `extra` keys (run_id, job, ...) are added as they are."""
    text = f"[{status.upper()}] {source}" + (f": {summary}" if summary else "") + (f" ({url})" if url else "")
    body = {
        "event": EVENT,
        "version": SCHEMA_VERSION,
        "source": source,
        "status": status,
        "summary": summary,
        "text": text,
        "metrics": dict(metrics or {}),
        "report_url": url,
        "sent_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    body.update(extra)
    return body


def run_payload(record: RunRecord) -> dict[str, Any]:
    """The alert payload of a run whose notebook published a status (see the module docstring)."""
    published = record.published or {}
    status = record.published_status or ""
    metrics = record.metrics
    flagged = [name for name, s in (published.get("metric_status") or {}).items() if s == status]
    if flagged:
        summary = ", ".join(f"{n}={metrics[n]:g}" if n in metrics else n for n in flagged) + f" at {status}"
    else:
        summary = f"the notebook published status {status}"
    report = record.report_path
    relative = f"{RUNS_SUBDIR}/{record.notebook}/{record.run_id}/{report.name}" if report is not None else None
    return alert_payload(
        record.notebook,
        status,
        summary,
        metrics,
        report.resolve().as_uri() if report is not None else "",
        run_id=record.run_id,
        notebook=record.notebook,
        published_status=record.published_status,
        run_status=record.status,
        job=record.job,
        step=record.step,
        started=record.started,
        ended=record.ended,
        report=relative,
    )


def post_json(
    url: str,
    payload: Mapping[str, Any],
    timeout: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_S,
) -> WebhookResult:
    """POST `payload` as JSON; retry connection errors and 5xx answers with exponential backoff."""
    import httpx

    body = json.dumps(payload, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "workbench-alerts"}
    error, code = "", None
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=timeout)
            code = response.status_code
            if response.is_success:
                return WebhookResult(True, code, attempt)
            error = f"the webhook answered HTTP {code}"
            if code < 500:
                break  # the receiver refuses this request; repeating it will not help
        except httpx.HTTPError as exc:
            error = f"the webhook could not be reached ({exc.__class__.__name__})"
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    log.warning("alert not delivered: %s after %d attempt(s); check the webhook_url setting", error, attempt)
    return WebhookResult(False, code, attempt, error)


def notify(
    status: str, payload: Mapping[str, Any], settings: Settings | None = None, **kwargs: Any
) -> WebhookResult | None:
    """Send `payload` to the configured webhook when `status` is `alert`; None when nothing was sent
    (another status, or no `webhook_url` set)."""
    settings = settings or load_settings()
    if status != "alert" or not settings.webhook_url:
        return None
    return post_json(settings.webhook_url, payload, **kwargs)


def notify_run(record: RunRecord, settings: Settings | None = None, **kwargs: Any) -> WebhookResult | None:
    """The alert of a finished run: sent when its notebook published `alert` and `webhook_url` is set."""
    kwargs.setdefault("timeout", RUN_TIMEOUT_S)
    return notify(record.published_status or "", run_payload(record), settings, **kwargs)
