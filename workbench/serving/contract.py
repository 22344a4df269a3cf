"""The request contract: what every request must hold (the raw columns of the routable models, with their
JSON kinds), checked on the parsed JSON. Every problem is named (code, field, expected, found, rows) and none
reveals a value sent; nothing invalid reaches a model. `json_schema()` is the same contract for OpenAPI,
so the document says exactly what validation accepts.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import RequestRejected
from .protocol import ID_FIELDS, ID_RE, MAX_ID_CHARS, MAX_PROBLEMS, NON_FINITE, Limits, _aggregate, _key_name, _kind

if TYPE_CHECKING:
    from .model import LoadedModel

__all__ = ["RequestContract"]

MAX_NUMBER = 1.7976931348623157e308  # what a JSON number may be and still be a float64
# integers a float64 holds exactly (what the model sees); beyond, a parser may already have rounded the value
MIN_INTEGER, MAX_INTEGER = -(2**53), 2**53
_LEAP = re.compile(r"(T\d\d:\d\d):60")
ID_SCHEMA = {
    "type": ["string", "integer", "null"],
    "pattern": f"^{ID_RE.pattern}$",
    "minimum": MIN_INTEGER,
    "maximum": MAX_INTEGER,
}

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
            if abs(value) > MAX_NUMBER:
                return None, "out_of_range", "a number beyond the float64 range"
            return float(value), None, None
    elif kind == "integer":
        if t is int:
            if not MIN_INTEGER <= value <= MAX_INTEGER:
                return None, "out_of_range", "an integer beyond +-2^53"
            return value, None, None
        if t is float:
            if not math.isfinite(value):
                return None, "non_finite", "NaN or Infinity"
            if value.is_integer():
                if not MIN_INTEGER <= value <= MAX_INTEGER:
                    return None, "out_of_range", "an integer beyond +-2^53"
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
            try:  # RFC 3339 as JSON Schema's date-time: a lowercase t/z, a leap second (read as :59)
                ts = datetime.fromisoformat(_LEAP.sub(r"\1:59", value.upper()))
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


def _integral(value) -> bool:
    return (type(value) is int or value.is_integer()) and MIN_INTEGER <= value <= MAX_INTEGER


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
                elif type(value) is str and ID_RE.fullmatch(value):
                    ids.append(value)
                elif type(value) in (int, float) and _integral(value):  # JSON Schema: 7.0 is an integer
                    ids.append(str(int(value)))
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
        """The record as JSON Schema (2020-12, as OpenAPI 3.1 uses it): exactly what `validate` accepts."""
        chars = self.limits.max_string_chars
        number = {"minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
        types = {
            "integer": {"type": ["integer", "null"], "minimum": MIN_INTEGER, "maximum": MAX_INTEGER},
            "number": {"type": ["number", "null"], **number},
            "string": {"type": ["string", "null"], "maxLength": chars},
            "timestamp": {"type": ["string", "null"], "format": "date-time", "maxLength": 64},
            "boolean": {"type": ["boolean", "null"]},
            "any": {"type": ["string", "number", "boolean", "null"], "maxLength": chars, **number},
        }
        props = {c: dict(types[k]) for c, k in self.kinds.items()}
        props["request_id"] = {
            **ID_SCHEMA,
            "description": f"Your id for this row (generated when absent): 1-{MAX_ID_CHARS} letters, digits or ._:-, "
            "or an integer.",
        }
        props["entity_id"] = {
            **ID_SCHEMA,
            "description": "Routes A/B and canary splits: the same entity always gets the same variant.",
        }
        return {"type": "object", "required": list(self.columns), "properties": props}
