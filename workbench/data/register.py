"""Registering a dataset: a parquet folder becomes a validated catalog entry (`workbench data add`).

    entry, candidates = describe(spark, "/data/visits", owner="data-stewards")
    path = add_dataset(settings, "visits", "/data/visits", owner="data-stewards", spark=spark)

`describe` reads the folder's schema (Spark type names, as the catalog wants them), its hive-style
partition columns, and, in one pass, which columns look like identifiers (named `id`, `*_id`,
`email`, `name`, ... or text/integer columns with a distinct value on nearly every row): those are
returned as candidates to classify `pii`, never classified here; every column starts `internal`.
`add_dataset` appends the entry to the catalog file (its comments kept), validates the whole catalog
with it, and writes atomically; an invalid result is never written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings
from ..errors import CatalogError
from ..storage import atomic_write_text

__all__ = ["describe", "add_dataset", "identifier_candidates"]

_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key|email|e_?mail|phone|name|ssn|passport|account)$", re.IGNORECASE)
_ID_TYPES = ("string", "int", "bigint")
NEARLY_UNIQUE = 0.95  # distinct values per row above which a text or integer column looks like an identifier


def identifier_candidates(df, rows: int | None = None) -> list[str]:
    """Columns that look like identifiers, by name or by being nearly unique (one aggregation)."""
    from pyspark.sql import functions as F

    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    by_name = [c for c in types if _ID_NAME.search(c)]
    typed = [c for c, t in types.items() if t in _ID_TYPES and c not in by_name]
    if not typed:
        return by_name
    aggs = [F.count(F.lit(1)).alias("__rows")] + [F.approx_count_distinct(c, 0.05).alias(c) for c in typed]
    first = df.agg(*aggs).first()
    total = rows if rows is not None else int(first["__rows"])
    unique = [c for c in typed if total >= 20 and first[c] >= NEARLY_UNIQUE * total]
    return [c for c in types if c in set(by_name) | set(unique)]


def describe(
    spark, path: str, owner: str, description: str = "", zone: str = "raw"
) -> tuple[dict[str, Any], list[str]]:
    """(the catalog entry for the parquet folder at `path`, candidate identifier columns)."""
    try:
        df = spark.read.parquet(path)
    except Exception as exc:  # a missing folder, or not parquet: say which
        raise CatalogError(
            f"Could not read parquet at {path} ({exc.__class__.__name__}). Point `workbench data add` at a folder of parquet files."
        ) from None
    partitioning = _partition_columns(spark, path, df)
    entry = {
        "uri": path,
        "format": "parquet",
        "zone": zone,
        "owner": owner,
        "description": description or f"Registered from {path}; describe it here.",
        "partitioning": partitioning,
        "columns": {f.name: {"type": f.dataType.simpleString()} for f in df.schema.fields},
    }
    return entry, identifier_candidates(df)


def _partition_columns(spark, path: str, df) -> list[str]:
    """Hive-style partition columns (`col=value` folders directly under `path`), in schema order."""
    local = Path(path.removeprefix("file://"))
    if not local.is_dir():
        return []
    names = {p.name.split("=", 1)[0] for p in local.iterdir() if p.is_dir() and "=" in p.name}
    return [f.name for f in df.schema.fields if f.name in names]


def add_dataset(
    settings: Settings,
    name: str,
    path: str,
    owner: str,
    description: str = "",
    spark=None,
    entry: dict[str, Any] | None = None,
) -> Path:
    """Append a validated entry for `name` to the catalog file and return its path."""
    from .catalog import parse_catalog

    catalog_path = settings.path("catalog_path")
    text = catalog_path.read_text() if catalog_path.exists() else "version: 1\ngrants: {}\ndatasets: {}\n"
    raw = yaml.safe_load(text) or {}
    if name in (raw.get("datasets") or {}):
        raise CatalogError(f"{catalog_path}: a dataset named '{name}' is already in the catalog; choose another name.")
    if entry is None:
        from ..spark import get_spark

        entry, _ = describe(spark or get_spark(settings=settings), path, owner, description)
    lake = settings.lake.rstrip("/")
    if entry["uri"].startswith(lake + "/"):  # inside the lake: portable between a laptop and a cluster
        entry = {**entry, "uri": "{lake}" + entry["uri"][len(lake) :]}
    new_text = _appended(text, raw, name, entry)
    parsed = yaml.safe_load(new_text)
    if (parsed.get("datasets") or {}).get(name) != entry:  # `datasets` is not the last block: rewrite instead
        parsed = {**raw, "datasets": {**(raw.get("datasets") or {}), name: entry}}
        new_text = yaml.safe_dump(parsed, sort_keys=False)
    parse_catalog(parsed, catalog_path, settings.lake)  # raises CatalogError: nothing is written
    atomic_write_text(catalog_path, new_text)
    return catalog_path


def _appended(text: str, raw: dict, name: str, entry: dict[str, Any]) -> str:
    block = yaml.safe_dump({name: entry}, sort_keys=False)
    if not raw.get("datasets"):
        text = re.sub(r"(?m)^datasets:.*$", "datasets:", text) if "datasets:" in text else text + "datasets:\n"
    indented = "".join(f"  {line}\n" if line else "\n" for line in block.splitlines())
    return text.rstrip("\n") + "\n" + indented
