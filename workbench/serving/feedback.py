"""The `/feedback` wire format: `{"request_id": ..., "reward": ...}` or a list of them, parsed and checked.

    outcomes = parse_feedback(body, content_type, limits, kind="binary")   # [Outcome] or RequestRejected

An item has `request_id` (the id a `/predict` answer carried), `reward` (a number; `true`/`false` count as 1/0;
an experiment with binary rewards takes only 0 or 1) and optionally `variant` (the variant the caller believes
answered: a mismatch, or the shadow's name, is refused). Anything else is refused whole with 4xx and one problem
per bad item, naming its index, its field and what was expected - never echoing the values sent, like the
prediction contract. Which ids exist and which were already rewarded is the outcome store's check
(`outcomes.OutcomeStore.add_outcomes`), in the same transaction as the write.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import RequestRejected
from .outcomes import Outcome, problem
from .protocol import CONTENT_TYPE_JSON, ID_RE, NON_FINITE, Limits, _is_json, _parse_constant

__all__ = ["parse_feedback", "rejection", "FIELDS"]

FIELDS = ("request_id", "reward", "variant")
STATUS_BY_CODE = {"UNKNOWN_REQUEST_ID": 404, "ALREADY_REWARDED": 409}


def rejection(problems: list[dict]) -> RequestRejected:
    """One RequestRejected for a batch's problems: 404 when every problem is an unknown id, 409 when every one is
    an id already rewarded, else 422; the error code is the problems' code when they share one."""
    codes = {p["code"] for p in problems}
    code = codes.pop() if len(codes) == 1 else "FEEDBACK_INVALID"
    status = STATUS_BY_CODE.get(code, 422)
    n = len(problems)
    message = (
        f"The feedback was not stored: {n} item(s) have a problem (see 'problems'; each names its index). "
        "Nothing of this batch was stored; fix those items and send the batch again."
    )
    return RequestRejected(code, message, problems[:50], status=status)


def parse_feedback(body: bytes, content_type: str | None, limits: Limits, kind: str = "numeric") -> list[Outcome]:
    if not _is_json(content_type):
        raise RequestRejected(
            "UNSUPPORTED_MEDIA_TYPE", f"Send feedback as {CONTENT_TYPE_JSON} (Content-Type header).", status=415
        )
    if not body.strip():
        raise RequestRejected("EMPTY_BODY", 'The body is empty; send {"request_id": "...", "reward": 1}.', status=400)
    try:
        payload = json.loads(body, parse_constant=_parse_constant)
    except (ValueError, RecursionError):
        raise RequestRejected("MALFORMED_JSON", "The body is not valid JSON.", status=400) from None
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not items:
        raise RequestRejected(
            "BAD_REQUEST",
            'Send one object {"request_id": "...", "reward": 1} or a non-empty list of them.',
            status=400,
        )
    if len(items) > limits.max_rows:
        raise RequestRejected(
            "TOO_MANY_ROWS", f"At most {limits.max_rows} feedback items per request; send smaller batches.", status=422
        )
    problems: list[dict] = []
    out: list[Outcome] = []
    for index, item in enumerate(items):
        found = _item(index, item, kind, problems)
        if found is not None:
            out.append(found)
    if problems:
        raise rejection(problems)
    return out


def _item(index: int, item: Any, kind: str, problems: list[dict]) -> Outcome | None:
    if not isinstance(item, dict):
        problems.append(problem("BAD_ITEM", index, 'Each item must be an object {"request_id": ..., "reward": ...}.'))
        return None
    before = len(problems)
    unknown = [k for k in item if k not in FIELDS]
    if unknown:
        problems.append(
            problem("UNKNOWN_FIELD", index, f"{len(unknown)} unknown field(s); an item has only {', '.join(FIELDS)}.")
        )
    rid = item.get("request_id")
    if "request_id" not in item:
        problems.append(problem("MISSING_FIELD", index, "'request_id' is missing."))
    elif not isinstance(rid, str) or not ID_RE.fullmatch(rid):
        problems.append(
            problem("BAD_REQUEST_ID", index, "'request_id' must be a string of 1-128 letters, digits or . _ : -")
        )
    reward = item.get("reward")
    value = None
    if "reward" not in item:
        problems.append(problem("MISSING_FIELD", index, "'reward' is missing."))
    elif reward is NON_FINITE or (isinstance(reward, float) and not math.isfinite(reward)):
        problems.append(problem("NON_FINITE_REWARD", index, "'reward' is NaN or infinite; send a finite number."))
    elif isinstance(reward, bool):
        value = 1.0 if reward else 0.0
    elif isinstance(reward, (int, float)):
        try:
            value = float(reward)
        except OverflowError:  # an integer beyond a double
            value = math.inf
        if not math.isfinite(value):
            problems.append(problem("NON_FINITE_REWARD", index, "'reward' is too large; send a finite number."))
        elif kind == "binary" and value not in (0.0, 1.0):
            problems.append(
                problem("BAD_REWARD", index, "This experiment takes binary rewards: 0 or 1 (or true/false).")
            )
    else:
        problems.append(problem("BAD_REWARD_TYPE", index, "'reward' must be a number (or true/false)."))
    variant = item.get("variant")
    if variant is not None and (not isinstance(variant, str) or not ID_RE.fullmatch(variant)):
        problems.append(problem("BAD_VARIANT", index, "'variant' must be the name of a served variant (a string)."))
    if len(problems) > before:
        return None
    return Outcome(index, rid, value, variant)
