"""Alert delivery: a JSON POST to the `webhook_url` setting for runs that end in status `alert`.

The payload is one JSON object (`alert_payload`); any receiver that accepts a JSON POST works
(Slack and Teams incoming webhooks read the `text` field). The URL often carries a secret token, so it
never appears in messages or logs. Delivery failures are returned, not raised: a monitoring run
should still finish and record that its alert could not be delivered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import Settings, load_settings

__all__ = ["WebhookResult", "alert_payload", "post_json", "notify"]

log = logging.getLogger(__name__)
EVENT = "workbench.alert"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class WebhookResult:
    delivered: bool
    status_code: int | None = None
    attempts: int = 0
    error: str = ""


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


def post_json(
    url: str, payload: Mapping[str, Any], timeout: float = 10.0, attempts: int = 3, backoff: float = 0.5
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
