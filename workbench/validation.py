"""Schemas: infer what a dataset looks like, keep it as versioned JSON, and validate batches against it.

TFDV-style: a schema holds, per column, a type, nullability and the allowed null fraction, a numeric
(or timestamp) range and a categorical domain. `validate(batch, schema)` computes a few aggregate
statistics of the batch (one vectorised pass in pandas, one Spark job on a Spark DataFrame) and
compares them with the schema, returning `Anomaly` records with a short, actionable description.
Descriptions name columns, counts and fractions, never data values.

    schema = infer_schema(train_df, name="flights")        # pandas or Spark
    schema.save(path) / Schema.load(path)                   # JSON with format_version and fingerprint
    anomalies = validate(batch_df, schema)                  # [] when the batch fits
    check(batch_df, schema)                                 # raises ValidationError carrying the anomalies
    schema.to_pandera()                                     # the same rules as a pandera schema (row-level drill-down)

Why not pandera for the checks themselves: pandera validates row by row and collects every failing
value (slow at scale, and it puts data values into its errors); our checks are aggregates, which is
what an anomaly report needs and what scales to Spark. pandera is the peer in
`benchmarks/bench_validation.py` and, through `to_pandera()`, the tool to find *which* rows fail.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import SetupError, ValidationError
from .storage import atomic_write_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["ColumnSchema", "Schema", "Anomaly", "infer_schema", "validate", "check", "save_versioned", "FORMAT_VERSION"]

FORMAT_VERSION = 1
TYPES = ("integer", "float", "string", "boolean", "timestamp")

# Anomaly kinds (as in TFDV: one per kind of problem).
MISSING_COLUMN = "missing_column"
UNEXPECTED_COLUMN = "unexpected_column"
WRONG_TYPE = "wrong_type"
TOO_MANY_NULLS = "too_many_nulls"
OUT_OF_RANGE = "out_of_range"
UNSEEN_CATEGORIES = "unseen_categories"


@dataclass
class ColumnSchema:
    name: str
    type: str  # one of TYPES
    nullable: bool = True
    max_null_fraction: float = 1.0
    min: float | str | None = None  # numbers, or ISO strings for timestamps
    max: float | str | None = None
    domain: list[str] | None = None  # categorical values seen (None: free text, not checked)
    max_unseen_fraction: float = 0.0


@dataclass
class Schema:
    columns: dict[str, ColumnSchema]
    name: str = ""
    rows: int = 0
    created: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def fingerprint(self) -> str:
        """A hash of the rules (not of the name, row count or date): equal rules, equal fingerprint."""
        rules = json.dumps({k: asdict(v) for k, v in sorted(self.columns.items())}, sort_keys=True, default=str)
        return hashlib.sha256(rules.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "rows": self.rows,
            "created": self.created,
            "fingerprint": self.fingerprint,
            "columns": [asdict(c) for c in self.columns.values()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ValidationError(
                f"Schema format_version {data.get('format_version')} is newer than this workbench reads "
                f"({FORMAT_VERSION}); upgrade the workbench."
            )
        cols = {c["name"]: ColumnSchema(**c) for c in data["columns"]}
        return cls(
            columns=cols,
            name=data.get("name", ""),
            rows=int(data.get("rows", 0)),
            created=data.get("created", ""),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
        )

    @classmethod
    def from_json(cls, text: str) -> Schema:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        return cls.from_json(Path(path).read_text())

    def to_pandera(self):
        """The same rules as a pandera DataFrameSchema (pandas), for row-level drill-down."""
        try:
            import pandera.pandas as pa
        except ImportError:
            raise SetupError("Schema.to_pandera needs pandera: `pip install 'pandera>=0.22'`.") from None
        cols = {}
        for c in self.columns.values():
            checks = []
            if c.type in ("integer", "float") and c.min is not None and c.max is not None:
                checks.append(pa.Check.in_range(c.min, c.max))
            if c.type == "string" and c.domain is not None:
                checks.append(pa.Check.isin(c.domain))
            dtype = {"integer": None, "float": float, "string": None, "boolean": None, "timestamp": "datetime64[ns]"}[
                c.type
            ]
            cols[c.name] = pa.Column(dtype, checks=checks, nullable=c.nullable, required=True)
        return pa.DataFrameSchema(cols, strict=True)


@dataclass(frozen=True)
class Anomaly:
    column: str
    kind: str
    description: str
    count: int = 0  # offending rows (0 when not a row count)
    fraction: float = 0.0

    def __str__(self) -> str:
        return f"{self.column}: {self.description}"


# ---- inference -------------------------------------------------------------------------------------
def infer_schema(
    frame, name: str = "", max_domain: int = 200, null_tolerance: float = 0.01, unseen_tolerance: float = 0.01
) -> Schema:
    """A schema from a pandas or Spark DataFrame.

    Strings with at most `max_domain` distinct values get a domain (more: free text, not checked).
    A column with nulls may have up to its observed null fraction + `null_tolerance`; one without
    nulls may have none. Up to `unseen_tolerance` of a batch's values may be outside a domain.
    """
    stats = _spark_profile(frame, max_domain) if _is_spark(frame) else _pandas_profile(frame, max_domain)
    rows = stats.pop("__rows__")
    columns = {}
    for col, s in stats.items():
        null_fraction = s["nulls"] / rows if rows else 0.0
        columns[col] = ColumnSchema(
            name=col,
            type=s["type"],
            nullable=s["nulls"] > 0,
            max_null_fraction=round(min(1.0, null_fraction + null_tolerance), 6) if s["nulls"] > 0 else 0.0,
            min=s.get("min"),
            max=s.get("max"),
            domain=s.get("domain"),
            max_unseen_fraction=unseen_tolerance if s.get("domain") is not None else 0.0,
        )
    return Schema(
        columns=columns, name=name, rows=int(rows), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )


def save_versioned(schema: Schema, folder: str | Path) -> Path:
    """Keep `schema` as `<folder>/<name>-v<N>.json`; a new N only when the rules (fingerprint) changed."""
    folder = Path(folder)
    stem = schema.name or "schema"
    existing = sorted(folder.glob(f"{stem}-v*.json"), key=lambda p: int(p.stem.rsplit("-v", 1)[1]))
    if existing and Schema.load(existing[-1]).fingerprint == schema.fingerprint:
        return existing[-1]
    n = int(existing[-1].stem.rsplit("-v", 1)[1]) + 1 if existing else 1
    return schema.save(folder / f"{stem}-v{n}.json")


def _pandas_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamp"
    return "string"


def _spark_type(data_type) -> str:
    name = data_type.typeName()
    if name in ("byte", "short", "integer", "long"):
        return "integer"
    if name in ("float", "double", "decimal"):
        return "float"
    if name == "boolean":
        return "boolean"
    if name in ("timestamp", "timestamp_ntz", "date"):
        return "timestamp"
    return "string"


def _bound(value) -> float | str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
        return pd.Timestamp(value).isoformat()
    return float(value)


def _pandas_profile(frame: pd.DataFrame, max_domain: int) -> dict[str, Any]:
    out: dict[str, Any] = {"__rows__": len(frame)}
    for col in frame.columns:
        s = frame[col]
        kind = _pandas_type(s)
        info: dict[str, Any] = {"type": kind, "nulls": int(s.isna().sum())}
        if kind in ("integer", "float", "timestamp"):
            info["min"], info["max"] = _bound(s.min()), _bound(s.max())
        elif kind == "string":
            values = s.dropna().astype(str).unique()
            info["domain"] = sorted(values.tolist()) if len(values) <= max_domain else None
        out[col] = info
    return out


def _spark_profile(df: DataFrame, max_domain: int) -> dict[str, Any]:
    from pyspark.sql import functions as F

    fields = {f.name: _spark_type(f.dataType) for f in df.schema.fields}
    aggs = [F.count(F.lit(1)).alias("__rows__")]
    for col, kind in fields.items():
        c = F.col(f"`{col}`")
        aggs.append(
            F.sum(F.when(c.isNull() | (F.isnan(c) if kind == "float" else F.lit(False)), 1).otherwise(0)).alias(
                f"n::{col}"
            )
        )
        if kind in ("integer", "float", "timestamp"):
            aggs += [F.min(c).alias(f"lo::{col}"), F.max(c).alias(f"hi::{col}")]
        elif kind == "string":
            aggs.append(F.approx_count_distinct(c).alias(f"d::{col}"))
    row = df.agg(*aggs).first().asDict()
    # Domains of the low-cardinality string columns, all in one more job (approx_count_distinct
    # errs by a few percent, so collect a little more than max_domain and check exactly).
    small = [c for c, k in fields.items() if k == "string" and (row[f"d::{c}"] or 0) <= max_domain * 1.1]
    domains = {}
    if small:
        sets = df.agg(*[F.collect_set(F.col(f"`{c}`")).alias(c) for c in small]).first().asDict()
        domains = {c: sorted(v) for c, v in sets.items() if len(v) <= max_domain}
    out: dict[str, Any] = {"__rows__": int(row["__rows__"])}
    for col, kind in fields.items():
        info: dict[str, Any] = {"type": kind, "nulls": int(row[f"n::{col}"] or 0)}
        if kind in ("integer", "float", "timestamp"):
            info["min"], info["max"] = _bound(row[f"lo::{col}"]), _bound(row[f"hi::{col}"])
        elif kind == "string":
            info["domain"] = domains.get(col)
        out[col] = info
    return out


# ---- validation ------------------------------------------------------------------------------------------
def validate(frame, schema: Schema, allow_extra_columns: bool = False) -> list[Anomaly]:
    """Anomalies of a pandas or Spark batch against `schema` (empty list: the batch fits)."""
    present = list(frame.columns)
    anomalies: list[Anomaly] = []
    for col in schema.columns:
        if col not in present:
            anomalies.append(
                Anomaly(
                    col,
                    MISSING_COLUMN,
                    "column is missing from the batch; the schema requires it. "
                    "Add it upstream, or re-infer the schema if it was dropped on purpose.",
                )
            )
    if not allow_extra_columns:
        for col in present:
            if col not in schema.columns:
                anomalies.append(
                    Anomaly(
                        col,
                        UNEXPECTED_COLUMN,
                        "column is not in the schema. Drop it, or re-infer the "
                        "schema if it is a new input the model should use.",
                    )
                )
    checked = [c for c in schema.columns.values() if c.name in present]
    stats = _spark_batch_stats(frame, checked) if _is_spark(frame) else _pandas_batch_stats(frame, checked)
    rows = stats.pop("__rows__")
    for spec in checked:
        anomalies += _compare(spec, stats[spec.name], rows)
    return anomalies


def check(frame, schema: Schema, allow_extra_columns: bool = False) -> None:
    """Raise ValidationError (carrying the anomalies) when the batch does not fit the schema."""
    anomalies = validate(frame, schema, allow_extra_columns)
    if anomalies:
        lines = "\n".join(f"  - {a}" for a in anomalies)
        raise ValidationError(
            f"The batch does not match schema '{schema.name or 'unnamed'}' ({len(anomalies)} anomalies):\n{lines}",
            anomalies,
        )


def _compare(spec: ColumnSchema, s: dict[str, Any], rows: int) -> list[Anomaly]:
    out: list[Anomaly] = []
    col = spec.name
    if s["type"] != spec.type and not _compatible(spec.type, s):
        bad = s.get("not_numeric")
        if bad:
            out.append(
                Anomaly(
                    col,
                    WRONG_TYPE,
                    f"expected {spec.type}, found {bad} value(s) ({bad / max(rows, 1):.1%}) that are not "
                    "numbers. Fix the producer, or cast the column before scoring.",
                    bad,
                    bad / max(rows, 1),
                )
            )
        else:
            out.append(
                Anomaly(
                    col,
                    WRONG_TYPE,
                    f"expected type {spec.type}, found {s['type']}. Cast the column, or re-infer "
                    "the schema if the type changed on purpose.",
                )
            )
            return out
    nulls = int(s["nulls"])
    fraction = nulls / rows if rows else 0.0
    if nulls and fraction > spec.max_null_fraction:
        allowed = "no nulls" if not spec.nullable else f"at most {spec.max_null_fraction:.1%} nulls"
        out.append(
            Anomaly(
                col,
                TOO_MANY_NULLS,
                f"{nulls} null(s) ({fraction:.1%} of rows); the schema allows {allowed}. "
                "Check the upstream join or extract.",
                nulls,
                fraction,
            )
        )
    below, above = int(s.get("below", 0)), int(s.get("above", 0))
    if below or above:
        n = below + above
        out.append(
            Anomaly(
                col,
                OUT_OF_RANGE,
                f"{n} value(s) ({n / max(rows, 1):.1%}) outside the range seen in training "
                f"({below} below the minimum, {above} above the maximum). Check units and the source, or "
                "retrain on data that covers this range.",
                n,
                n / max(rows, 1),
            )
        )
    unseen, values = int(s.get("unseen", 0)), int(s.get("non_null", 0))
    if unseen and values and unseen / values > spec.max_unseen_fraction:
        share = unseen / values
        out.append(
            Anomaly(
                col,
                UNSEEN_CATEGORIES,
                f"{unseen} value(s) ({share:.1%} of non-null values, "
                f"{int(s.get('unseen_distinct', 0))} distinct) are not in the training domain of {len(spec.domain or [])} "
                f"values; the schema allows {spec.max_unseen_fraction:.1%}. The model has not seen them: "
                "retrain, or route these rows elsewhere.",
                unseen,
                share,
            )
        )
    return out


def _compatible(expected: str, s: dict[str, Any]) -> bool:
    found = s["type"]
    if expected == "float" and found == "integer":
        return True
    if expected == "integer" and found == "float":  # pandas turns integers with nulls into floats
        return not s.get("fractional", 0)
    if expected in ("integer", "float") and found == "string":
        return not s.get("not_numeric", 0) and s.get("numeric_parsed", False)
    return False


def _pandas_batch_stats(frame: pd.DataFrame, specs: list[ColumnSchema]) -> dict[str, Any]:
    out: dict[str, Any] = {"__rows__": len(frame)}
    for spec in specs:
        s = frame[spec.name]
        kind = _pandas_type(s)
        info: dict[str, Any] = {"type": kind}
        isna = s.isna().to_numpy()
        info["nulls"] = int(isna.sum())
        values = s
        if spec.type in ("integer", "float") and kind == "string":
            values = pd.to_numeric(s, errors="coerce")
            info["not_numeric"] = int((values.isna().to_numpy() & ~isna).sum())
            info["numeric_parsed"] = True
            kind = "float"
        if spec.type == "integer" and kind == "float":
            arr = values.to_numpy(dtype="float64", na_value=np.nan)
            finite = arr[~np.isnan(arr)]
            info["fractional"] = int((finite != np.floor(finite)).sum())
        if spec.type in ("integer", "float") and kind in ("integer", "float") and spec.min is not None:
            arr = _numbers(values)
            info["below"] = int(np.count_nonzero(arr < float(spec.min)))
            info["above"] = int(np.count_nonzero(arr > float(spec.max)))
        elif spec.type == "timestamp" and kind == "timestamp" and spec.min is not None:
            info["below"] = int((s < pd.Timestamp(spec.min)).sum())
            info["above"] = int((s > pd.Timestamp(spec.max)).sum())
        elif spec.type == "string" and spec.domain is not None:
            unseen = ~s.isin(spec.domain).to_numpy() & ~isna  # values, not text forms: no copy
            info["non_null"] = int(len(s) - info["nulls"])
            info["unseen"] = int(np.count_nonzero(unseen))
            info["unseen_distinct"] = int(s[unseen].nunique()) if info["unseen"] else 0
        out[spec.name] = info
    return out


def _numbers(values: pd.Series) -> np.ndarray:
    """The values as a numpy array without copying plain numpy columns (NaN for missing otherwise)."""
    arr = values.to_numpy()
    if arr.dtype.kind in "iuf":
        return arr
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _spark_batch_stats(df: DataFrame, specs: list[ColumnSchema]) -> dict[str, Any]:
    from pyspark.sql import functions as F

    types = {f.name: _spark_type(f.dataType) for f in df.schema.fields}
    aggs = [F.count(F.lit(1)).alias("__rows__")]

    def count_if(cond, alias):
        return F.sum(F.when(cond, 1).otherwise(0)).alias(alias)

    for spec in specs:
        c, kind = F.col(f"`{spec.name}`"), types[spec.name]
        aggs.append(count_if(c.isNull() | (F.isnan(c) if kind == "float" else F.lit(False)), f"n::{spec.name}"))
        numeric = c
        if spec.type in ("integer", "float") and kind == "string":
            numeric = c.try_cast("double")
            aggs.append(count_if(c.isNotNull() & numeric.isNull(), f"nn::{spec.name}"))
        if spec.type == "integer" and kind in ("float", "string"):
            aggs.append(count_if(numeric.isNotNull() & (numeric != F.floor(numeric)), f"fr::{spec.name}"))
        if (
            spec.type in ("integer", "float", "timestamp")
            and spec.min is not None
            and (kind in ("integer", "float", "string") or kind == spec.type)
        ):
            lo = F.lit(spec.min).cast("timestamp") if spec.type == "timestamp" else F.lit(float(spec.min))
            hi = F.lit(spec.max).cast("timestamp") if spec.type == "timestamp" else F.lit(float(spec.max))
            aggs += [count_if(numeric < lo, f"lo::{spec.name}"), count_if(numeric > hi, f"hi::{spec.name}")]
        elif spec.type == "string" and spec.domain is not None:
            unseen = c.isNotNull() & ~c.cast("string").isin(spec.domain)
            aggs += [
                count_if(c.isNotNull(), f"nv::{spec.name}"),
                count_if(unseen, f"un::{spec.name}"),
                F.countDistinct(F.when(unseen, c)).alias(f"ud::{spec.name}"),
            ]
    row = df.agg(*aggs).first().asDict()
    out: dict[str, Any] = {"__rows__": int(row["__rows__"])}
    for spec in specs:
        kind = types[spec.name]
        info: dict[str, Any] = {"type": kind, "nulls": int(row.get(f"n::{spec.name}") or 0)}
        if f"nn::{spec.name}" in row:
            info["not_numeric"], info["numeric_parsed"] = int(row[f"nn::{spec.name}"] or 0), True
        if f"fr::{spec.name}" in row:
            info["fractional"] = int(row[f"fr::{spec.name}"] or 0)
        if f"lo::{spec.name}" in row:
            info["below"], info["above"] = int(row[f"lo::{spec.name}"] or 0), int(row[f"hi::{spec.name}"] or 0)
        if f"un::{spec.name}" in row:
            info["non_null"], info["unseen"] = int(row[f"nv::{spec.name}"] or 0), int(row[f"un::{spec.name}"] or 0)
            info["unseen_distinct"] = int(row[f"ud::{spec.name}"] or 0)
        out[spec.name] = info
    return out


def _is_spark(frame) -> bool:
    return type(frame).__module__.startswith("pyspark.")
