"""The wire protocol of `workbench serve`: formats, limits, error codes and parsing (no model knowledge).

Accepted bodies (named once here): one record `{"col": value, ..., "request_id": "r1", "entity_id": "N123"}`,
a list of such records, or MLflow's `{"dataframe_split": {"columns": [...], "data": [[...]]}}` /
`{"dataframe_records": [...]}` (`request_id` / `entity_id` may be columns there too). `parse_payload`
checks content type, size and JSON (orjson, with the standard library's parser as the fallback that
names a syntax error's position and maps NaN/Infinity tokens to `NON_FINITE`), and returns the records.
Error codes map to HTTP statuses in `ERROR_STATUS`; messages never contain request data.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import RequestRejected

__all__ = [
    "Response",
    "Limits",
    "parse_payload",
    "error_body",
    "error_response",
    "too_large",
    "dumps",
    "ERROR_STATUS",
    "CONTENT_TYPE_JSON",
    "FORMAT_RECORDS",
    "FORMAT_DATAFRAME_SPLIT",
    "FORMAT_DATAFRAME_RECORDS",
    "ENDPOINT_PREDICT",
    "ENDPOINT_INVOCATIONS",
    "ID_FIELDS",
    "ID_RE",
    "MAX_ID_CHARS",
    "NON_FINITE",
]

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
    "TOO_MANY_ROWS": 422,  # well-formed, beyond the contract's maxItems (413 is for bytes)
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
ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # use fullmatch (a `$` would let a trailing newline through)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")


def _key_name(key: str) -> str:
    """An unknown key as it may be shown: a column-like name as is, anything else (possibly data) hidden."""
    return key if _NAME_RE.match(key) else "(a key that is not a column name)"


@dataclass(frozen=True)
class Response:
    body: bytes
    status: int
    content_type: str = CONTENT_TYPE_JSON


def dumps(payload: Any) -> bytes:
    """The one JSON encoder of responses (orjson: numpy arrays and floats as JSON numbers)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(code: str, message: str, problems: list[dict] | None = None) -> bytes:
    payload: dict[str, Any] = {"error_code": code, "message": message}
    if problems is not None:
        payload["problems"] = problems
    return dumps(payload)


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
        data = orjson.loads(body)  # the fast path; anything it refuses is parsed again below to name the problem
    except (orjson.JSONDecodeError, RecursionError):
        data = _parse_slowly(body)
    return _checked(data, limits)


def _parse_slowly(body: bytes) -> Any:
    """The standard library's parser: NaN/Infinity tokens become NON_FINITE (validation names their field),
    and a syntax error is named by its position."""
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
    return data


def _checked(data: Any, limits: Limits) -> tuple[str, list]:
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
