"""The serving core: payloads in, predictions out, no web framework.

`Service.invoke(endpoint, body, content_type)` returns a plain `Response(body, status, content_type)`;
`workbench.serving.app` only adapts it to HTTP (as MLflow's scoring server does), so everything here is
testable without a server. One request goes through:

1. **parse** (`parse_payload`): content type, size, JSON. Accepted bodies (wire formats named once below):
   one record `{"col": value, ..., "request_id": "r1", "entity_id": "N123"}`, a list of such records, or
   MLflow's `{"dataframe_split": {"columns": [...], "data": [[...]]}}` / `{"dataframe_records": [...]}`
   (`request_id` / `entity_id` may be columns there too).
2. **validate** (`RequestContract`): against the raw columns the model's feature function needs, with
   types from the catalog and the model signature. Every problem is named (code, field, expected, found,
   rows) and none reveals a value sent. Nothing invalid reaches a model.
3. **route** (`Router`): a stable hash of `entity_id` picks the variant (A/B or canary split); the same
   entity always gets the same variant. The shadow gets a copy of every row, off the response path.
4. **predict** through the micro-batcher (`batching.py`) within the request's time budget. A model that
   raises, returns non-finite values or misses the budget is answered by the fallback chain (previous
   champion, then a constant) marked `fallback: true`; repeated failures open the variant's circuit
   breaker. Values outside the trained domain are served and flagged (`out_of_domain`).
5. **log** every answered row to the prediction log (`predlog.py`) *before* the response is returned.

Error codes map to HTTP statuses in `ERROR_STATUS`; messages never contain request data.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from .. import registry
from ..config import Settings
from ..errors import RequestRejected, ServingError, WorkbenchError
from .batching import Job, MicroBatcher, Overloaded
from .metrics import Metrics
from .model import LoadedModel, Lookups, load_version
from .predlog import FULL, LogFull, PredictionLog

__all__ = [
    "Service",
    "ServeOptions",
    "Response",
    "RequestContract",
    "Router",
    "CircuitBreaker",
    "Limits",
    "parse_payload",
    "parse_fallback",
    "parse_split",
    "error_body",
    "ERROR_STATUS",
    "CONTENT_TYPE_JSON",
    "FORMAT_RECORDS",
    "FORMAT_DATAFRAME_SPLIT",
    "FORMAT_DATAFRAME_RECORDS",
    "ENDPOINT_PREDICT",
    "ENDPOINT_INVOCATIONS",
]

log = logging.getLogger("workbench.serving")

# ---- wire formats and error codes (named once) --------------------------------------------------------
CONTENT_TYPE_JSON = "application/json"
FORMAT_RECORDS = "records"
FORMAT_DATAFRAME_SPLIT = "dataframe_split"
FORMAT_DATAFRAME_RECORDS = "dataframe_records"
TENSOR_FORMATS = ("instances", "inputs")
ID_FIELDS = ("request_id", "entity_id")
ENDPOINT_PREDICT = "predict"
ENDPOINT_INVOCATIONS = "invocations"

ERROR_STATUS = {
    "BAD_REQUEST": 400,  # the JSON is not a payload we understand
    "MALFORMED_JSON": 400,
    "EMPTY_BODY": 400,
    "UNSUPPORTED_FORMAT": 400,  # MLflow tensor formats (instances/inputs)
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "PAYLOAD_TOO_LARGE": 413,
    "TOO_MANY_ROWS": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "SCHEMA_MISMATCH": 422,  # parsed, but not what the model needs
    "INTERNAL_ERROR": 500,
    "NOT_READY": 503,  # no model loaded yet
    "OVERLOADED": 503,  # too many rows waiting; retry later
    "MODEL_UNAVAILABLE": 503,  # the model and every fallback failed
}
MAX_PROBLEMS = 50
MAX_ROWS_PER_PROBLEM = 10
MAX_ID_CHARS = 128
_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")


def _key_name(key: str) -> str:
    """An unknown key as it may be shown: a column-like name as is, anything else (possibly data) hidden."""
    return key if _NAME_RE.match(key) else "(a key that is not a column name)"


@dataclass(frozen=True)
class Response:
    body: bytes
    status: int
    content_type: str = CONTENT_TYPE_JSON


def error_body(code: str, message: str, problems: list[dict] | None = None) -> bytes:
    payload: dict[str, Any] = {"error_code": code, "message": message}
    if problems is not None:
        payload["problems"] = problems
    return json.dumps(payload).encode()


def error_response(exc: RequestRejected) -> Response:
    status = exc.status or ERROR_STATUS.get(exc.code, 400)
    return Response(error_body(exc.code, str(exc), exc.problems or None), status)


# ---- parsing -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_rows: int = 1000
    max_string_chars: int = 256


class _NonFinite:
    """What a NaN / Infinity / -Infinity token in the JSON becomes (so validation can name its field)."""

    __slots__ = ()


NON_FINITE = _NonFinite()


def _parse_constant(_token: str) -> _NonFinite:
    return NON_FINITE


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == CONTENT_TYPE_JSON or (media.startswith("application/") and media.endswith("+json"))


def parse_payload(body: bytes, content_type: str | None, limits: Limits) -> tuple[str, list]:
    """(format, records) from a request body; raises RequestRejected naming what is wrong."""
    if not _is_json(content_type):
        found = "none" if not content_type else "another media type"
        raise RequestRejected(
            "UNSUPPORTED_MEDIA_TYPE",
            f"Send the body as {CONTENT_TYPE_JSON} (Content-Type header); found {found}.",
            [
                {
                    "code": "unsupported_media_type",
                    "field": "Content-Type",
                    "expected": CONTENT_TYPE_JSON,
                    "found": found,
                }
            ],
        )
    if len(body) > limits.max_body_bytes:
        raise too_large(limits)
    if not body.strip():
        raise RequestRejected(
            "EMPTY_BODY",
            "The body is empty; send a JSON record, a list of records, or a dataframe_split.",
            [{"code": "empty_body", "field": "body", "expected": "a JSON payload", "found": "nothing"}],
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected(
            "MALFORMED_JSON",
            "The body is not valid UTF-8.",
            [{"code": "malformed_json", "field": "body", "expected": "UTF-8 JSON", "found": "invalid UTF-8"}],
        ) from None
    try:
        data = json.loads(text, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise RequestRejected(
            "MALFORMED_JSON",
            f"The body is not valid JSON ({exc.msg} at {where}).",
            [
                {
                    "code": "malformed_json",
                    "field": "body",
                    "expected": "valid JSON",
                    "found": f"a syntax error at {where}",
                }
            ],
        ) from None
    except RecursionError:
        raise RequestRejected(
            "MALFORMED_JSON",
            "The JSON is nested too deeply.",
            [{"code": "malformed_json", "field": "body", "expected": "flat records", "found": "deep nesting"}],
        ) from None

    fmt, records = _records(data)
    if not records:
        raise RequestRejected(
            "BAD_REQUEST",
            "The payload holds no rows.",
            [{"code": "no_rows", "field": fmt, "expected": "at least one row", "found": "none"}],
        )
    if len(records) > limits.max_rows:
        raise RequestRejected(
            "TOO_MANY_ROWS",
            f"The payload holds more than {limits.max_rows} rows (serving_max_rows); split it.",
            [{"code": "too_many_rows", "field": fmt, "expected": f"at most {limits.max_rows} rows", "found": "more"}],
        )
    return fmt, records


def too_large(limits: Limits) -> RequestRejected:
    return RequestRejected(
        "PAYLOAD_TOO_LARGE",
        f"The body is larger than {limits.max_body_bytes} bytes (serving_max_body_bytes); "
        "split it into several requests.",
        [
            {
                "code": "payload_too_large",
                "field": "body",
                "expected": f"at most {limits.max_body_bytes} bytes",
                "found": "more",
            }
        ],
    )


def _bad(field_name: str, expected: str, found: Any, code: str = "bad_structure") -> RequestRejected:
    return RequestRejected(
        "BAD_REQUEST",
        f"'{field_name}' must be {expected}; found {_kind(found)}.",
        [{"code": code, "field": field_name, "expected": expected, "found": _kind(found)}],
    )


def _records(data: Any) -> tuple[str, list]:
    if isinstance(data, list):
        return FORMAT_RECORDS, data
    if not isinstance(data, dict):
        raise _bad("body", "a JSON object (one record) or an array of records", data)
    markers = [k for k in (FORMAT_DATAFRAME_SPLIT, FORMAT_DATAFRAME_RECORDS, *TENSOR_FORMATS) if k in data]
    if not markers:
        return FORMAT_RECORDS, [data]
    if len(markers) > 1:
        raise RequestRejected(
            "BAD_REQUEST",
            f"The payload names several formats ({', '.join(markers)}); send one.",
            [{"code": "ambiguous_format", "field": m, "expected": "one format", "found": "several"} for m in markers],
        )
    fmt = markers[0]
    if fmt in TENSOR_FORMATS:
        raise RequestRejected(
            "UNSUPPORTED_FORMAT",
            f"The tensor format '{fmt}' is not supported: send "
            f"{FORMAT_DATAFRAME_SPLIT}, {FORMAT_DATAFRAME_RECORDS} or JSON records.",
            [
                {
                    "code": "unsupported_format",
                    "field": fmt,
                    "expected": f"{FORMAT_DATAFRAME_SPLIT} or {FORMAT_DATAFRAME_RECORDS}",
                    "found": fmt,
                }
            ],
        )
    extra = [k for k in data if k not in (fmt, "params")]
    if extra:
        raise RequestRejected(
            "BAD_REQUEST",
            f"Unexpected top-level key(s) beside '{fmt}'.",
            [
                {
                    "code": "unexpected_key",
                    "field": _key_name(k),
                    "expected": f"only '{fmt}' (and 'params')",
                    "found": "another key",
                }
                for k in extra[:MAX_PROBLEMS]
            ],
        )
    value = data[fmt]
    if fmt == FORMAT_DATAFRAME_RECORDS:
        if not isinstance(value, list):
            raise _bad(fmt, "an array of records", value)
        return fmt, value
    if not isinstance(value, dict):
        raise _bad(fmt, "an object with 'columns' and 'data'", value)
    columns, rows = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _bad(f"{fmt}.columns", "an array of column names (strings)", columns)
    if len(set(columns)) != len(columns):
        raise RequestRejected(
            "BAD_REQUEST",
            f"'{fmt}.columns' names a column twice.",
            [
                {
                    "code": "duplicate_column",
                    "field": f"{fmt}.columns",
                    "expected": "unique names",
                    "found": "duplicates",
                }
            ],
        )
    if not isinstance(rows, list):
        raise _bad(f"{fmt}.data", "an array of rows (arrays)", rows)
    records, problems = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            problems.append(
                {
                    "code": "bad_row",
                    "field": f"{fmt}.data",
                    "row": i,
                    "expected": f"an array of {len(columns)} values",
                    "found": _kind(row) if not isinstance(row, list) else f"{len(row)} values",
                }
            )
            continue
        records.append(dict(zip(columns, row)))
    if problems:
        raise RequestRejected(
            "BAD_REQUEST", f"{len(problems)} row(s) of '{fmt}.data' do not match its columns.", _aggregate(problems)
        )
    return fmt, records


def _kind(value: Any) -> str:
    """The JSON type of a value, for messages (never the value itself)."""
    if value is None:
        return "null"
    if value is NON_FINITE:
        return "NaN or Infinity"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number" if math.isfinite(value) else "NaN or Infinity"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _aggregate(problems: list[dict]) -> list[dict]:
    """One entry per (code, field, expected, found), with the rows it affects (first few) and a count."""
    merged: dict[tuple, dict] = {}
    for p in problems:
        key = (p.get("code"), p.get("field"), p.get("expected"), p.get("found"))
        entry = merged.get(key)
        if entry is None:
            if len(merged) >= MAX_PROBLEMS:
                continue
            entry = merged[key] = {k: v for k, v in p.items() if k != "row"}
            entry["rows"], entry["count"] = [], 0
        entry["count"] += 1
        if "row" in p and len(entry["rows"]) < MAX_ROWS_PER_PROBLEM:
            entry["rows"].append(p["row"])
    out = list(merged.values())
    for entry in out:
        if not entry["rows"]:
            del entry["rows"]
    return out


# ---- validation ---------------------------------------------------------------------------------------
_EXPECTED = {
    "integer": "an integer",
    "number": "a finite number",
    "string": "a string",
    "timestamp": "an ISO 8601 timestamp string",
    "boolean": "true or false",
    "any": "a JSON scalar",
}


def _check_value(kind: str, value: Any, max_chars: int) -> tuple[Any, str | None, str | None]:
    """(converted value, problem code, found) for one non-null value."""
    if value is NON_FINITE:
        return None, "non_finite", "NaN or Infinity"
    t = type(value)
    if kind == "number":
        if t is float:
            return (value, None, None) if math.isfinite(value) else (None, "non_finite", "NaN or Infinity")
        if t is int:
            return float(value), None, None
    elif kind == "integer":
        if t is int:
            return value, None, None
        if t is float:
            if not math.isfinite(value):
                return None, "non_finite", "NaN or Infinity"
            if value.is_integer():
                return int(value), None, None
            return None, "wrong_type", "a number with a fraction"
    elif kind == "string":
        if t is str:
            return (
                (value, None, None)
                if len(value) <= max_chars
                else (None, "string_too_long", f"more than {max_chars} characters")
            )
    elif kind == "timestamp":
        if t is str:
            if len(value) > 64:
                return None, "string_too_long", "more than 64 characters"
            try:
                ts = datetime.fromisoformat(value)
            except ValueError:
                return None, "invalid_timestamp", "a string that is not an ISO 8601 timestamp"
            if ts.tzinfo is not None:
                ts = ts.astimezone(UTC).replace(tzinfo=None)
            return ts, None, None
    elif kind == "boolean":
        if t is bool:
            return value, None, None
    else:  # any scalar
        if t in (int, bool):
            return value, None, None
        if t is float:
            return (value, None, None) if math.isfinite(value) else (None, "non_finite", "NaN or Infinity")
        if t is str:
            return (
                (value, None, None)
                if len(value) <= max_chars
                else (None, "string_too_long", f"more than {max_chars} characters")
            )
    return None, "wrong_type", _kind(value)


class RequestContract:
    """What every request must hold: the raw columns of the routable models, with their JSON kinds."""

    def __init__(self, kinds: dict[str, str], limits: Limits):
        self.kinds = dict(kinds)
        self.columns = tuple(self.kinds)
        self.limits = limits
        self._known = set(self.columns) | set(ID_FIELDS)

    @classmethod
    def for_models(cls, models: list[LoadedModel], limits: Limits) -> RequestContract:
        kinds: dict[str, str] = {}
        for m in models:
            for col in m.raw_columns:
                kind = m.raw_kinds.get(col, "any")
                if col in kinds and kinds[col] != kind:
                    # two variants disagree: accept what both can take (an integer is a number)
                    kind = "number" if {kinds[col], kind} == {"integer", "number"} else "any"
                kinds[col] = kind
        return cls(kinds, limits)

    def validate(self, records: list, base_id: str) -> tuple[list[dict], list[str], list[str | None], list[dict]]:
        """(rows, request_ids, entity_ids, warnings); raises RequestRejected(SCHEMA_MISMATCH) naming every problem."""
        problems: list[dict] = []
        unknown: dict[str, int] = {}
        rows, request_ids, entity_ids = [], [], []
        max_chars = self.limits.max_string_chars
        many = len(records) > 1
        kinds = self.kinds
        for i, rec in enumerate(records):
            if type(rec) is not dict:
                problems.append(
                    {
                        "code": "not_an_object",
                        "field": "record",
                        "row": i,
                        "expected": "a JSON object",
                        "found": _kind(rec),
                    }
                )
                continue
            row = {}
            for col, kind in kinds.items():
                if col not in rec:
                    problems.append(
                        {
                            "code": "missing_column",
                            "field": col,
                            "row": i,
                            "expected": _EXPECTED[kind],
                            "found": "no such key",
                        }
                    )
                    continue
                value = rec[col]
                if value is None:
                    row[col] = None
                    continue
                converted, code, found = _check_value(kind, value, max_chars)
                if code is not None:
                    problems.append({"code": code, "field": col, "row": i, "expected": _EXPECTED[kind], "found": found})
                else:
                    row[col] = converted
            ids = []
            for name in ID_FIELDS:
                value = rec.get(name)
                if value is None:
                    ids.append(None)
                elif type(value) is int or (type(value) is str and _ID_RE.match(value)):
                    ids.append(str(value))
                else:
                    problems.append(
                        {
                            "code": "invalid_id",
                            "field": name,
                            "row": i,
                            "expected": f"a string of 1-{MAX_ID_CHARS} letters, digits or ._:- (or an integer)",
                            "found": _kind(value)
                            if type(value) is not str
                            else "a string outside that alphabet or length",
                        }
                    )
                    ids.append(None)
            if len(rec) > len(kinds):
                for key in rec:
                    if key not in self._known:
                        unknown[key] = unknown.get(key, 0) + 1
            rows.append(row)
            request_ids.append(ids[0] or (f"{base_id}-{i}" if many else base_id))
            entity_ids.append(ids[1])
        if problems:
            agg = _aggregate(problems)
            raise RequestRejected(
                "SCHEMA_MISMATCH", f"The request has {len(agg)} problem(s); each is named in 'problems'.", agg
            )
        warnings = [
            {
                "code": "unknown_column",
                "field": _key_name(k),
                "count": n,
                "expected": "a column the model uses",
                "found": "an unknown column (ignored)",
            }
            for k, n in list(unknown.items())[:MAX_PROBLEMS]
        ]
        return rows, request_ids, entity_ids, warnings

    def json_schema(self) -> dict[str, Any]:
        types = {
            "integer": {"type": ["integer", "null"]},
            "number": {"type": ["number", "null"]},
            "string": {"type": ["string", "null"], "maxLength": self.limits.max_string_chars},
            "timestamp": {"type": ["string", "null"], "format": "date-time"},
            "boolean": {"type": ["boolean", "null"]},
            "any": {},
        }
        props = {c: dict(types[k]) for c, k in self.kinds.items()}
        props["request_id"] = {
            "type": "string",
            "maxLength": MAX_ID_CHARS,
            "description": "Your id for this row (generated when absent).",
        }
        props["entity_id"] = {
            "type": "string",
            "maxLength": MAX_ID_CHARS,
            "description": "Routes A/B and canary splits: the same entity always gets the same variant.",
        }
        return {"type": "object", "required": list(self.columns), "properties": props}


# ---- routing -------------------------------------------------------------------------------------------
def parse_split(items) -> dict[str, float]:
    """['challenger=10', ...] -> {'challenger': 10.0}; percentages of traffic, summing to at most 100."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, pct = str(item).partition("=")
        try:
            value = float(pct)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or not 0 < value <= 100:
            raise ServingError(
                f"--split takes ALIAS=PERCENT with 0 < PERCENT <= 100 (e.g. challenger=10); found '{item}'."
            )
        out[name.strip()] = value
    if sum(out.values()) > 100:
        raise ServingError(f"The --split percentages add up to {sum(out.values()):g}, more than 100.")
    return out


class Router:
    """Variant by a stable hash of the entity: bucket = hash(salt, entity) in [0, 100).

    Splits take consecutive bucket ranges in the order given; the primary takes the rest. Raising a
    variant's percentage only moves entities from the primary into it (the salt is the model name, not
    the split), so a canary can be widened without reshuffling who saw what."""

    def __init__(self, primary: str, splits: dict[str, float], salt: str):
        self.primary = primary
        self.salt = salt.encode()
        self.ranges: list[tuple[float, str]] = []
        upper = 0.0
        for name, pct in splits.items():
            upper += pct
            self.ranges.append((upper, name))

    def bucket(self, key: str) -> float:
        digest = hashlib.blake2b(key.encode(), digest_size=8, key=self.salt[:64]).digest()
        return int.from_bytes(digest, "big") / 2.0**64 * 100.0

    def route(self, entity_id: str | None, request_id: str, available=None) -> str:
        if not self.ranges:
            return self.primary
        b = self.bucket(entity_id if entity_id is not None else request_id)
        for upper, name in self.ranges:
            if b < upper:
                return name if available is None or name in available else self.primary
        return self.primary


# ---- circuit breaker and fallback --------------------------------------------------------------------
class CircuitBreaker:
    """Closed -> open after `failures` consecutive failures -> half-open after `cooldown` seconds (one
    trial batch) -> closed on success, open again on failure. Thread-safe."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failures: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures = max(1, int(failures))
        self.cooldown = float(cooldown)
        self.clock = clock
        self.state = self.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self._trial = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.state == self.OPEN and self.clock() - self.opened_at >= self.cooldown:
                self.state, self._trial = self.HALF_OPEN, False
            if self.state == self.CLOSED:
                return True
            if self.state == self.HALF_OPEN and not self._trial:
                self._trial = True
                return True
            return False

    def record(self, success: bool) -> None:
        with self._lock:
            if success:
                self.state, self.consecutive, self._trial = self.CLOSED, 0, False
                return
            self.consecutive += 1
            if self.state == self.HALF_OPEN or self.consecutive >= self.failures:
                self.state, self.opened_at, self._trial = self.OPEN, self.clock(), False

    @property
    def is_open(self) -> bool:
        return self.state == self.OPEN


@dataclass(frozen=True)
class FallbackStep:
    kind: str  # "previous" | "constant"
    value: float = 0.0


def parse_fallback(text: str) -> tuple[FallbackStep, ...]:
    """'previous', 'constant:0.2', 'none', or a chain 'previous,constant:0.2' (tried in order)."""
    steps = []
    for part in [p.strip() for p in str(text or "").split(",") if p.strip()]:
        if part == "none":
            continue
        if part == "previous":
            steps.append(FallbackStep("previous"))
            continue
        kind, _, value = part.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if kind != "constant" or not math.isfinite(number):
            raise ServingError(
                f"serving_fallback takes 'previous', 'constant:NUMBER', 'none' or a comma-separated chain; found '{part}'."
            )
        steps.append(FallbackStep("constant", number))
    return tuple(steps)


# ---- options -----------------------------------------------------------------------------------------------
@dataclass
class ServeOptions:
    """Everything `workbench serve` decides, from settings plus command-line flags."""

    model_name: str
    alias: str = registry.CHAMPION
    shadow: str | None = None
    split: dict[str, float] = field(default_factory=dict)
    fallback: str = "previous"
    timeout: float = 0.5  # seconds per request
    batch_max_rows: int = 64
    batch_wait: float = 0.005  # seconds
    max_pending_rows: int = 4096
    max_body_bytes: int = 1 << 20
    max_rows: int = 1000
    max_string_chars: int = 256
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0  # seconds
    reload_interval: float = 10.0  # seconds; 0 disables hot reload
    shadow_threshold: float = 0.1
    log_predictions: bool = True
    shadow_batch_rows: int = 256
    shadow_batch_wait: float = 0.02

    @classmethod
    def from_settings(cls, settings: Settings, model_name: str | None = None, **overrides: Any) -> ServeOptions:
        values = dict(
            model_name=model_name or settings.model_name,
            fallback=settings.serving_fallback,
            timeout=settings.serving_timeout_ms / 1000.0,
            batch_max_rows=settings.serving_batch_max_rows,
            batch_wait=settings.serving_batch_wait_ms / 1000.0,
            max_pending_rows=settings.serving_max_pending_rows,
            max_body_bytes=settings.serving_max_body_bytes,
            max_rows=settings.serving_max_rows,
            max_string_chars=settings.serving_max_string_chars,
            breaker_failures=settings.serving_breaker_failures,
            breaker_cooldown=settings.serving_breaker_cooldown_ms / 1000.0,
            reload_interval=settings.serving_reload_interval_ms / 1000.0,
            shadow_threshold=float(settings.serving_shadow_disagreement),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        parse_fallback(self.fallback)
        names = [self.alias, *self.split]
        if len(set(names)) != len(names):
            raise ServingError(
                f"--split names the primary alias '{self.alias}' (or one alias twice); each variant must be another alias."
            )
        if self.shadow and self.shadow in names:
            raise ServingError(
                f"The shadow '{self.shadow}' is also a served variant; choose another alias for --shadow."
            )
        if sum(self.split.values()) > 100:
            raise ServingError("The --split percentages add up to more than 100.")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_body_bytes, self.max_rows, self.max_string_chars)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---- the service ---------------------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str  # the alias it serves
    role: str  # "primary" | "split" | "shadow"
    breaker: CircuitBreaker
    model: LoadedModel | None = None
    percent: float = 0.0
    error: str = ""  # why it is not loaded


@dataclass
class Work:
    """The validated rows of one request (or of the rows of it a lane must answer)."""

    rows: list[dict]
    request_ids: list[str]
    entity_ids: list[str | None]
    variants: list[str]
    arrival: float  # epoch seconds
    t0: float  # perf_counter at arrival
    reasons: list[str] | None = None  # fallback lane: why each row falls back
    primary: np.ndarray | None = None  # shadow lane: what the primary answered
    decorated: dict | None = (
        None  # shadow lane: primary's decorated rows (by feature function) or model input (by _input_key)
    )
    frame: pd.DataFrame | None = None  # shadow lane: the raw rows as a frame


@dataclass
class Answer:
    prediction: float
    label: int | None
    version: str
    variant: str
    fallback: bool = False
    reason: str | None = None
    out_of_domain: list[str] = field(default_factory=list)
    needs_fallback: str | None = None  # set by a lane that could not answer the row


TIMEOUT = object()


class Service:
    """One served model name: its variants, batchers, prediction log, metrics and hot reload.

    Dependencies are injected: `lookups` (feature-function lookup tables), `predlog` (or None to log
    nothing), `metrics`, `clock`. Use it from one event loop: `await start()`, `await invoke(...)`,
    `await close()`."""

    def __init__(
        self,
        settings: Settings,
        options: ServeOptions,
        lookups: Lookups | None = None,
        predlog: PredictionLog | None | str = "settings",
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        options.check()
        self.settings = settings
        self.options = options
        self.lookups = lookups or Lookups(settings)
        self.metrics = metrics or Metrics()
        if predlog == "settings":
            predlog = PredictionLog.from_settings(settings, options.model_name) if options.log_predictions else None
        self.predlog: PredictionLog | None = predlog
        self.fallback_steps = parse_fallback(options.fallback)
        self.variants: dict[str, Variant] = {options.alias: Variant(options.alias, "primary", self._breaker(clock))}
        for name, pct in options.split.items():
            self.variants[name] = Variant(name, "split", self._breaker(clock), percent=pct)
        self.shadow = Variant(options.shadow, "shadow", self._breaker(clock)) if options.shadow else None
        self.fallback_model: LoadedModel | None = None
        self.fallback_breaker = self._breaker(clock)
        self.router = Router(options.alias, options.split, salt=options.model_name)
        self.contract: RequestContract | None = None
        self.ready = False
        self.not_ready_reason = "the model is loading"
        self.started_at = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._swap_lock = threading.Lock()
        self.main = MicroBatcher(
            "main",
            self._run_main,
            options.batch_max_rows,
            options.batch_wait,
            options.max_pending_rows,
            on_batch=lambda j, r: self.metrics.batch_rows.labels("main").observe(r),
        )
        self.fallback_lane = MicroBatcher(
            "fallback",
            self._run_fallback,
            options.batch_max_rows,
            options.batch_wait,
            options.max_pending_rows,
            on_batch=lambda j, r: self.metrics.batch_rows.labels("fallback").observe(r),
        )
        self.shadow_lane = MicroBatcher(
            "shadow",
            self._run_shadow,
            options.shadow_batch_rows,
            options.shadow_batch_wait,
            options.max_pending_rows,
            drop_when_full=True,
            on_batch=lambda j, r: self.metrics.batch_rows.labels("shadow").observe(r),
        )
        self.watcher = None

    def _breaker(self, clock) -> CircuitBreaker:
        return CircuitBreaker(self.options.breaker_failures, self.options.breaker_cooldown, clock)

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self, load: bool = True, background: bool = True) -> Service:
        """Start the batchers and the log; load the models (in a thread, so /healthz answers meanwhile)."""
        self._loop = asyncio.get_running_loop()
        self.main.start()
        self.fallback_lane.start()
        self.shadow_lane.start()
        if self.predlog is not None:
            self.predlog.start()
        if load:
            task = self._loop.run_in_executor(None, self._load_all)
            if not background:
                await task
        return self

    async def close(self) -> None:
        """Graceful: stop reloading, answer what is pending, let the shadow finish, flush the log."""
        self.ready = False
        self.not_ready_reason = "the service is shutting down"
        if self.watcher is not None:
            self.watcher.stop()
        await self.main.close()
        await self.fallback_lane.close()
        await self.shadow_lane.close()
        if self.predlog is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.predlog.close)
            self.metrics.sync_predlog(self.predlog)

    def _load_all(self) -> None:
        """Load every variant (the primary is required for readiness), the shadow and the fallback model."""
        from .reload import AliasWatcher

        cache: dict[int, LoadedModel] = {}
        for variant in [*self.variants.values(), *([self.shadow] if self.shadow else [])]:
            try:
                version = registry.get_version(self.options.model_name, variant.name, self.settings).version
                model = cache.get(version) or load_version(
                    self.settings, self.options.model_name, version, self.lookups
                )
                model.ref = variant.name
                cache[version] = model
                self.swap(variant.name, model, initial=True)
            except WorkbenchError as exc:
                variant.error = str(exc)
                log.error("Variant '%s' of model '%s' is not served: %s", variant.name, self.options.model_name, exc)
        if (
            any(s.kind == "previous" for s in self.fallback_steps)
            and self.variants[self.options.alias].model is not None
        ):
            self._load_previous(cache)
        if self.options.reload_interval > 0:
            self.watcher = AliasWatcher(self, self.options.reload_interval).start()
        if self.variants[self.options.alias].model is None:
            self.not_ready_reason = (
                f"the '{self.options.alias}' model could not be loaded: {self.variants[self.options.alias].error}"
            )
        else:
            self.ready = True  # only once every variant had its chance: no early traffic all on the primary

    def _load_previous(self, cache: dict[int, LoadedModel]) -> None:
        current = self.variants[self.options.alias].model
        try:
            stack = registry._stack(registry.history(self.options.model_name, self.options.alias, self.settings))
        except WorkbenchError:
            stack = []
        earlier = [v for v in stack if v != current.version]
        if not earlier:
            log.warning(
                "Fallback 'previous': model '%s' has no earlier '%s' in its alias history; no previous model.",
                self.options.model_name,
                self.options.alias,
            )
            return
        version = earlier[-1]
        try:
            self.fallback_model = cache.get(version) or load_version(
                self.settings, self.options.model_name, version, self.lookups
            )
            self.fallback_model.ref = f"previous {self.options.alias}"
        except WorkbenchError as exc:
            log.error("Fallback 'previous' (version %s) could not be loaded: %s", version, exc)

    def swap(self, variant_name: str, model: LoadedModel, initial: bool = False) -> None:
        """Atomically serve `model` for `variant_name` (batches in flight finish on the old one)."""
        with self._swap_lock:
            variant = (
                self.shadow
                if self.shadow is not None and self.shadow.name == variant_name
                else self.variants[variant_name]
            )
            old = variant.model
            variant.model, variant.error = model, ""
            variant.breaker.record(True)
            if variant.role == "primary" and old is not None and old.version != model.version and not initial:
                self.fallback_model = old  # the previous champion answers when the new one fails
                old.ref = f"previous {variant_name}"
            routable = [v.model for v in self.variants.values() if v.model is not None]
            self.contract = RequestContract.for_models(routable, self.options.limits)
            self.metrics.model_version.labels(variant_name).set(model.version)
            if not initial and self.variants[self.options.alias].model is not None:
                self.ready = True

    # ---- request path ---------------------------------------------------------------------------------------------
    async def invoke(
        self,
        endpoint: str,
        body: bytes,
        content_type: str | None,
        request_id: str | None = None,
        oversized: bool = False,
    ) -> Response:
        """Answer one request. `oversized`: the adapter stopped reading the body at max_body_bytes."""
        t0 = time.perf_counter()
        arrival = time.time()
        try:
            if oversized:
                raise too_large(self.options.limits)
            if not self.ready:
                raise RequestRejected(
                    "NOT_READY", f"Not ready: {self.not_ready_reason}. Retry when /readyz answers 200."
                )
            fmt, records = parse_payload(body, content_type, self.options.limits)
            base_id = request_id if request_id and _ID_RE.match(request_id) else uuid.uuid4().hex[:20]
            rows, rids, eids, warnings = self.contract.validate(records, base_id)
            available = {n for n, v in self.variants.items() if v.model is not None}
            route = self.router.route
            variants = [route(e, r, available) for e, r in zip(eids, rids)]
            work = Work(rows, rids, eids, variants, arrival, t0)
            answers = await self._answer(work)
            response = Response(self._format(endpoint, work, answers, warnings), 200)
        except RequestRejected as exc:
            self.metrics.errors.labels(exc.code).inc()
            response = error_response(exc)
        except LogFull as exc:  # predlog_on_full=block and the writer cannot keep up
            self.metrics.errors.labels("OVERLOADED").inc()
            response = Response(error_body("OVERLOADED", f"{exc} The request was not answered; retry later."), 503)
        except Exception:
            log.exception("Unexpected error while answering a request")
            self.metrics.errors.labels("INTERNAL_ERROR").inc()
            response = Response(
                error_body("INTERNAL_ERROR", "An internal error occurred; it is logged on the server."), 500
            )
        self.metrics.requests.labels(endpoint, str(response.status)).inc()
        self.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - t0)
        return response

    async def _answer(self, work: Work) -> list[Answer]:
        n = len(work.rows)
        result = await self._submit(self.main, work, self.options.timeout)
        if result is TIMEOUT:
            answers: list[Answer | None] = [None] * n
            reasons = ["timeout"] * n
        else:
            answers = result
            reasons = [a.needs_fallback if a.needs_fallback else None for a in answers]
        need = [i for i in range(n) if answers[i] is None or answers[i].needs_fallback]
        if need:
            await self._fallback(work, answers, need, [reasons[i] or "error" for i in need])
        self.metrics.sync_predlog(self.predlog)
        return answers

    async def _submit(self, lane: MicroBatcher, work: Work, budget: float):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = Job(len(work.rows), work, future)
        try:
            lane.submit(job)
        except Overloaded as exc:
            raise RequestRejected("OVERLOADED", f"{exc} Retry later.") from None
        left = work.t0 + budget - time.perf_counter() if lane is self.main else budget
        timer = loop.call_later(max(0.0, left), _expire, job)
        try:
            return await future
        finally:
            timer.cancel()

    async def _fallback(self, work: Work, answers: list, need: list[int], reasons: list[str]) -> None:
        remaining, why = list(need), dict(zip(need, reasons))
        for step in self.fallback_steps:
            if not remaining:
                break
            if step.kind == "constant":
                primary = self.variants[self.options.alias].model
                label = (
                    int(step.value >= primary.spec.decision_threshold)
                    if primary is not None and primary.is_classifier
                    else None
                )
                for i in remaining:
                    answers[i] = Answer(step.value, label, "constant", work.variants[i], True, why[i])
                await self._log_constant(work, answers, remaining)
                remaining = []
            elif step.kind == "previous":
                model = self.fallback_model
                if model is None or not self.fallback_breaker.allow():
                    continue
                sub = Work(
                    [work.rows[i] for i in remaining],
                    [work.request_ids[i] for i in remaining],
                    [work.entity_ids[i] for i in remaining],
                    [work.variants[i] for i in remaining],
                    work.arrival,
                    work.t0,
                    reasons=[why[i] for i in remaining],
                )
                result = await self._submit(self.fallback_lane, sub, self.options.timeout)
                if result is TIMEOUT:
                    self.fallback_breaker.record(False)
                    continue
                still = []
                for i, a in zip(remaining, result):
                    if a.needs_fallback:
                        still.append(i)
                    else:
                        answers[i] = a
                remaining = still
        if remaining:
            raise RequestRejected(
                "MODEL_UNAVAILABLE",
                f"{len(remaining)} row(s) could not be predicted: the model failed "
                "or ran out of time and no fallback could answer. Retry later.",
            )

    async def _log_constant(self, work: Work, answers: list, idx: list[int]) -> None:
        if self.predlog is None:
            return
        now = time.perf_counter()
        frame = _log_frame(
            [work.request_ids[i] for i in idx],
            [work.entity_ids[i] for i in idx],
            [work.arrival] * len(idx),
            [answers[i] for i in idx],
            [(now - work.t0) * 1000.0] * len(idx),
            None,
        )
        for i in idx:
            self.metrics.fallbacks.labels(work.variants[i], answers[i].reason).inc()
        await self._log(frame)

    async def _log(self, frame: pd.DataFrame) -> None:
        try:
            if self.predlog.submit(frame, block=False) == FULL:
                await asyncio.get_running_loop().run_in_executor(None, self.predlog.submit, frame)
        except LogFull as exc:
            raise RequestRejected("OVERLOADED", f"{exc} The request was not answered.") from None

    def _format(self, endpoint: str, work: Work, answers: list[Answer], warnings: list[dict]) -> bytes:
        meta = []
        for i, a in enumerate(answers):
            item = {
                "request_id": work.request_ids[i],
                "entity_id": work.entity_ids[i],
                "prediction": a.prediction,
                "model_version": a.version,
                "variant": a.variant,
                "fallback": a.fallback,
                "out_of_domain": a.out_of_domain,
            }
            if a.label is not None:
                item["label"] = a.label
            if a.fallback:
                item["fallback_reason"] = a.reason
            meta.append(item)
        if endpoint == ENDPOINT_INVOCATIONS:
            classifier = any(a.label is not None for a in answers)
            preds = (
                [[1.0 - a.prediction, a.prediction] for a in answers] if classifier else [a.prediction for a in answers]
            )
            payload: dict[str, Any] = {"predictions": preds, "workbench": meta}
        else:
            payload = {"predictions": meta}
        if warnings:
            payload["warnings"] = warnings
        return json.dumps(payload).encode()

    # ---- lanes (run in their batcher's thread) ---------------------------------------------------------------------
    def _run_main(self, jobs: list[Job]) -> list[list[Answer] | None]:
        rows, owner, variants = [], [], []
        for j, job in enumerate(jobs):
            w = job.payload
            rows.extend(w.rows)
            owner.extend([j] * len(w.rows))
            variants.extend(w.variants)
        raw = pd.DataFrame.from_records(rows, columns=self._raw_columns(rows))
        answers: list[Answer | None] = [None] * len(rows)
        features: list[pd.DataFrame | None] = [None] * len(rows)
        decorated: dict[str, pd.DataFrame] = {}
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(variants):
            groups.setdefault(name, []).append(i)
        outcome: dict[str, bool] = {}
        for name, idx in groups.items():
            variant = self.variants.get(name) or self.variants[self.options.alias]
            model = variant.model
            if model is None:
                for i in idx:
                    answers[i] = Answer(math.nan, None, "", name, needs_fallback="not_loaded")
                continue
            if not variant.breaker.allow():
                for i in idx:
                    answers[i] = Answer(math.nan, None, str(model.version), name, needs_fallback="circuit_open")
                continue
            scores, X, ok = self._score(model, raw, idx, decorated)
            outcome[name] = bool(ok.all())
            labels = model.labels(scores)
            ood = model.domain.check(X) if X is not None else [[] for _ in idx]
            version = str(model.version)
            for k, i in enumerate(idx):
                if ok[k]:
                    answers[i] = Answer(
                        float(scores[k]),
                        int(labels[k]) if labels is not None else None,
                        version,
                        name,
                        out_of_domain=ood[k],
                    )
                else:
                    answers[i] = Answer(math.nan, None, version, name, needs_fallback="error")
            if X is not None:
                for k, i in enumerate(idx):
                    features[i] = (X, k)
        # claim the jobs whose requests are still waiting; a job claimed elsewhere timed out
        timed_out: set[str] = set()
        results: list[list[Answer] | None] = []
        answered_rows: list[int] = []
        start = 0
        claimed = []
        for j, job in enumerate(jobs):
            n = len(job.payload.rows)
            mine = job.claim()
            claimed.append(mine)
            if mine:
                results.append(answers[start : start + n])
                answered_rows.extend(i for i in range(start, start + n) if not answers[i].needs_fallback)
            else:
                results.append(None)
                timed_out.update(job.payload.variants)
            start += n
        for name, ok in outcome.items():
            variant = self.variants.get(name) or self.variants[self.options.alias]
            success = ok and name not in timed_out
            variant.breaker.record(success)
            self.metrics.circuit_open.labels(name).set(1 if variant.breaker.is_open else 0)
            if not ok:
                self.metrics.model_errors.labels(name).inc()
        self._record_and_log(jobs, owner, answers, features, answered_rows, shadow=False)
        if self.shadow is not None and self.shadow.model is not None and answered_rows:
            self._to_shadow(jobs, owner, answers, raw, decorated, answered_rows)
        return results

    def _run_fallback(self, jobs: list[Job]) -> list[list[Answer] | None]:
        model = self.fallback_model
        rows, owner = [], []
        for j, job in enumerate(jobs):
            rows.extend(job.payload.rows)
            owner.extend([j] * len(job.payload.rows))
        idx = list(range(len(rows)))
        raw = pd.DataFrame.from_records(rows, columns=self._raw_columns(rows))
        reasons = [r for job in jobs for r in job.payload.reasons]
        variants = [v for job in jobs for v in job.payload.variants]
        scores, X, ok = self._score(model, raw, idx, {})
        self.fallback_breaker.record(bool(ok.all()))
        labels = model.labels(scores)
        ood = model.domain.check(X) if X is not None else [[] for _ in idx]
        answers = [
            Answer(
                float(scores[k]),
                int(labels[k]) if labels is not None else None,
                str(model.version),
                variants[k],
                True,
                reasons[k],
                ood[k],
            )
            if ok[k]
            else Answer(math.nan, None, str(model.version), variants[k], needs_fallback=reasons[k])
            for k in idx
        ]
        features = [(X, k) if X is not None else None for k in idx]
        results, answered, start = [], [], 0
        for job in jobs:
            n = len(job.payload.rows)
            if job.claim():
                results.append(answers[start : start + n])
                answered.extend(i for i in range(start, start + n) if not answers[i].needs_fallback)
            else:
                results.append(None)
            start += n
        self._record_and_log(jobs, owner, answers, features, answered, shadow=False)
        return results

    def _run_shadow(self, jobs: list[Job]) -> list[None]:
        variant = self.shadow
        model = variant.model if variant is not None else None
        if model is None:
            return [None] * len(jobs)
        works = [job.payload for job in jobs]
        raws, primaries, owner, decorated_parts, inputs = [], [], [], [], []
        xkey = _input_key(model)
        for j, w in enumerate(works):
            raws.append(w.frame)
            primaries.append(w.primary)
            owner.extend([j] * len(w.request_ids))
            decorated_parts.append((w.decorated or {}).get(model.spec.feature_function))
            inputs.append((w.decorated or {}).get(xkey))
        try:
            if all(x is not None for x in inputs):
                X = pd.concat(inputs, ignore_index=True)
            elif all(d is not None for d in decorated_parts):
                deco = pd.concat(decorated_parts, ignore_index=True)
                from ..features import model_frame

                X = model_frame(deco, list(model.spec.numeric), list(model.spec.categorical))
            else:
                _, X = model.prepare(pd.concat(raws, ignore_index=True))
            scores = model.predict(X)
            if not np.all(np.isfinite(scores)):
                raise ServingError("non-finite shadow predictions")
        except Exception as exc:
            n = len(owner)
            self.metrics.shadow_failures.inc(n)
            variant.breaker.record(False)
            log.debug("Shadow '%s' failed on %d row(s): %s", variant.name, n, exc.__class__.__name__)
            return [None] * len(jobs)
        variant.breaker.record(True)
        primary = np.concatenate(primaries)
        if model.is_classifier:
            disagree = (scores >= model.spec.decision_threshold) != (primary >= model.spec.decision_threshold)
        else:
            disagree = np.abs(scores - primary) > self.options.shadow_threshold * np.maximum(np.abs(primary), 1e-12)
        self.metrics.shadow(len(scores), int(disagree.sum()))
        if self.predlog is not None:
            labels = model.labels(scores)
            ood = model.domain.check(X)
            version = str(model.version)
            answers = [
                Answer(
                    float(scores[k]),
                    int(labels[k]) if labels is not None else None,
                    version,
                    variant.name,
                    out_of_domain=ood[k],
                )
                for k in range(len(scores))
            ]
            rids = [r for w in works for r in w.request_ids]
            eids = [e for w in works for e in w.entity_ids]
            arrivals = [a for w in works for a in w.arrivals]
            now = time.perf_counter()
            lat = [(now - t0) * 1000.0 for w in works for t0 in w.t0s]
            frame = _log_frame(rids, eids, arrivals, answers, lat, X.reset_index(drop=True), shadow=True)
            try:
                self.predlog.submit(frame, block=False)  # shadow rows never wait
            except ServingError:
                pass
        return [None] * len(jobs)

    def _raw_columns(self, rows: list[dict]) -> list[str]:
        contract = self.contract
        cols = list(contract.columns) if contract is not None else []
        if rows and len(rows[0]) != len(cols):
            cols = list(dict.fromkeys([*cols, *rows[0]]))
        return cols

    def _score(self, model: LoadedModel, raw: pd.DataFrame, idx: list[int], decorated: dict[str, pd.DataFrame]):
        """(scores, X, ok) for the rows `idx` of `raw`; a failing group is retried row by row, so one bad row
        never takes its batch neighbours into the fallback."""
        fn, xkey = model.spec.feature_function, _input_key(model)
        try:
            if xkey not in decorated:  # decorated rows and model input, shared by variants alike
                if fn not in decorated:
                    decorated[fn] = model.decorator.apply_pandas(raw)
                from ..features import model_frame

                decorated[xkey] = model_frame(
                    decorated[fn], list(model.spec.numeric), list(model.spec.categorical)
                ).reset_index(drop=True)
            X_all = decorated[xkey]
            X = X_all if len(idx) == len(X_all) else X_all.iloc[idx].reset_index(drop=True)
            scores = model.predict(X)
            ok = np.isfinite(scores)
            if ok.all() or len(idx) == 1:
                return scores, X, ok
        except Exception as exc:
            if len(idx) == 1:
                log.debug("Model %s failed on one row: %s", model.label, exc.__class__.__name__)
                return np.full(1, math.nan), None, np.zeros(1, dtype=bool)
        scores = np.full(len(idx), math.nan)
        ok = np.zeros(len(idx), dtype=bool)
        parts, positions = [], []
        for k, i in enumerate(idx):
            try:
                _, x1 = model.prepare(raw.iloc[[i]])
                s = model.predict(x1)
            except Exception:
                continue
            if np.isfinite(s[0]):
                scores[k], ok[k] = s[0], True
            parts.append(x1)
            positions.append(k)
        X = pd.concat(parts).set_axis(positions).reindex(range(len(idx))) if parts else None
        return scores, X, ok

    def _record_and_log(self, jobs, owner, answers, features, rows_idx, shadow: bool) -> None:
        if not rows_idx:
            return
        now = time.perf_counter()
        works = [job.payload for job in jobs]
        offsets, start = [], 0
        for w in works:
            offsets.append(start)
            start += len(w.rows)
        rids, eids, arrivals, lat, picked = [], [], [], [], []
        for i in rows_idx:
            w = works[owner[i]]
            k = i - offsets[owner[i]]
            rids.append(w.request_ids[k])
            eids.append(w.entity_ids[k])
            arrivals.append(w.arrival)
            ms = (now - w.t0) * 1000.0
            lat.append(ms)
            a = answers[i]
            picked.append(a)
            self.metrics.predictions.labels(a.variant, a.version).inc()
            self.metrics.prediction_latency.labels(a.variant).observe(ms / 1000.0)
            if a.fallback:
                self.metrics.fallbacks.labels(a.variant, a.reason or "error").inc()
            if a.out_of_domain:
                self.metrics.out_of_domain.labels(a.variant).inc()
        if self.predlog is None:
            return
        feats = _feature_rows(features, rows_idx)
        frame = _log_frame(rids, eids, arrivals, picked, lat, feats, shadow=shadow)
        self.predlog.submit(frame)  # may block (predlog_on_full=block): the answer waits for its log row

    def _to_shadow(self, jobs, owner, answers, raw, decorated, answered_rows) -> None:
        """Queue the answered rows for the shadow (off the response path; dropped, and counted, if it lags)."""
        idx = answered_rows
        works = [job.payload for job in jobs]
        offsets, start = [], 0
        for w in works:
            offsets.append(start)
            start += len(w.rows)
        pos = [(works[owner[i]], i - offsets[owner[i]]) for i in idx]
        sub = Work(
            rows=[],
            request_ids=[w.request_ids[k] for w, k in pos],
            entity_ids=[w.entity_ids[k] for w, k in pos],
            variants=[answers[i].variant for i in idx],
            arrival=0.0,
            t0=0.0,
            primary=np.array([answers[i].prediction for i in idx]),
            frame=raw.iloc[idx].reset_index(drop=True),
        )
        sub.arrivals = [w.arrival for w, _ in pos]
        sub.t0s = [w.t0 for w, _ in pos]
        fn, xkey = self.shadow.model.spec.feature_function, _input_key(self.shadow.model)
        if xkey in decorated:  # the shadow reads the same input as the primary: reuse it
            sub.decorated = {xkey: decorated[xkey].iloc[idx].reset_index(drop=True)}
        elif fn in decorated:
            sub.decorated = {fn: decorated[fn].iloc[idx].reset_index(drop=True)}
        job = Job(len(idx), sub)
        self._loop.call_soon_threadsafe(self._shadow_submit, job)

    def _shadow_submit(self, job: Job) -> None:
        try:
            if not self.shadow_lane.submit(job):
                self.metrics.shadow_dropped.inc(job.rows)
        except Overloaded:
            self.metrics.shadow_dropped.inc(job.rows)

    # ---- other endpoints -----------------------------------------------------------------------------------------
    def health(self) -> Response:
        return Response(
            json.dumps({"status": "alive", "uptime_s": round(time.time() - self.started_at, 1)}).encode(), 200
        )

    def readiness(self) -> Response:
        body = {
            "ready": self.ready,
            "model": self.options.model_name,
            "variants": {
                n: {
                    "role": v.role,
                    "version": v.model.version if v.model else None,
                    "percent": v.percent or None,
                    "circuit": v.breaker.state,
                    **({"error": v.error} if v.error else {}),
                }
                for n, v in [*self.variants.items(), *([(self.shadow.name, self.shadow)] if self.shadow else [])]
            },
            "fallback": {
                "steps": [s.kind if s.kind != "constant" else f"constant:{s.value:g}" for s in self.fallback_steps],
                "previous_version": self.fallback_model.version if self.fallback_model else None,
            },
        }
        if not self.ready:
            body["reason"] = self.not_ready_reason
        return Response(json.dumps(body).encode(), 200 if self.ready else 503)

    def metrics_response(self) -> Response:
        self.metrics.sync_predlog(self.predlog)
        body, content_type = self.metrics.render()
        return Response(body, 200, content_type)

    def openapi(self) -> dict[str, Any]:
        from .openapi import build

        return build(self)


def _input_key(model: LoadedModel) -> tuple:
    """Models with equal keys get the same input frame from the same raw rows."""
    return ("X", model.spec.feature_function, model.spec.numeric, model.spec.categorical)


def _expire(job: Job) -> None:
    if job.claim() and job.future is not None and not job.future.done():
        job.future.set_result(TIMEOUT)


def _feature_rows(features: list, rows_idx: list[int]) -> pd.DataFrame | None:
    """The model-input rows (X, k) of the answered rows, stacked (one take per distinct X frame)."""
    if not rows_idx:
        return None
    by_frame: dict[int, tuple[pd.DataFrame, list[int], list[int]]] = {}
    for pos, i in enumerate(rows_idx):
        ref = features[i]
        if ref is None:
            continue
        X, k = ref
        entry = by_frame.setdefault(id(X), (X, [], []))
        entry[1].append(k)
        entry[2].append(pos)
    if not by_frame:
        return None
    if len(by_frame) == 1:
        X, ks, positions = next(iter(by_frame.values()))
        if len(positions) == len(rows_idx):
            return X.iloc[ks].reset_index(drop=True) if ks != list(range(len(X))) else X.reset_index(drop=True)
    parts = []
    for X, ks, positions in by_frame.values():
        part = X.iloc[ks].copy()
        part.index = positions
        parts.append(part)
    return pd.concat(parts).reindex(range(len(rows_idx)))


def _log_frame(
    rids, eids, arrivals, answers: list[Answer], latencies, features: pd.DataFrame | None, shadow: bool = False
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "request_id": rids,
            "entity_id": eids,
            "timestamp": pd.to_datetime(np.asarray(arrivals, dtype="float64"), unit="s", utc=True),
            "model_version": [a.version for a in answers],
            "variant": [a.variant for a in answers],
            "shadow": shadow,
            "prediction": [a.prediction for a in answers],
            "latency_ms": latencies,
            "fallback": [a.fallback for a in answers],
            "fallback_reason": [a.reason for a in answers],
            "out_of_domain": [a.out_of_domain for a in answers],
        }
    )
    if features is not None and len(features.columns):
        frame = pd.concat([frame, features.reset_index(drop=True)], axis=1)
    return frame
