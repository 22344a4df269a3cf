"""The dataset catalog: names -> URI, format, schema, ownership and description.

The catalog is a YAML file (`catalog_path` setting). URIs may use `{lake}` for the lake root so one
catalog serves a laptop and a cluster.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings
from ..errors import CatalogError, UnknownDataset
from ..storage import atomic_write_text

__all__ = ["Column", "Dataset", "Catalog", "load_catalog", "write_initial_catalog"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    uri: str
    format: str
    owner: str
    description: str
    zone: str = "raw"
    partitioning: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass
class Catalog:
    path: Path
    datasets: dict[str, Dataset] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Dataset:
        if name not in self.datasets:
            close = difflib.get_close_matches(name, list(self.datasets), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownDataset(f"No dataset named '{name}' in the catalog {self.path}.{hint} Known datasets: {', '.join(sorted(self.datasets))}.")
        return self.datasets[name]


def load_catalog(settings: Settings) -> Catalog:
    path = settings.path("catalog_path")
    if not path.exists():
        raise CatalogError(f"No catalog at {path}. Run `workbench lake init` to create the sample lake and its catalog, or set WORKBENCH_CATALOG_PATH.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path} is not valid YAML: {exc}") from exc
    datasets = {}
    for name, spec in (raw.get("datasets") or {}).items():
        datasets[name] = _dataset(path, name, spec or {}, settings)
    return Catalog(path=path, datasets=datasets, raw=raw)


def _dataset(path: Path, name: str, spec: dict, settings: Settings) -> Dataset:
    def need(key: str) -> Any:
        if key not in spec:
            raise CatalogError(f"{path}: dataset '{name}' has no '{key}'. Add it.")
        return spec[key]

    columns = tuple(
        Column(col, str((c or {}).get("type", "string")), str((c or {}).get("description", "")))
        for col, c in (spec.get("columns") or {}).items())
    return Dataset(
        name=name, uri=str(need("uri")).replace("{lake}", settings.lake), format=str(spec.get("format", "parquet")),
        owner=str(need("owner")), description=str(spec.get("description", "")), zone=str(spec.get("zone", "raw")),
        partitioning=tuple(spec.get("partitioning") or ()), columns=columns)


def spark_schema_columns(df) -> dict[str, dict[str, str]]:
    return {f.name: {"type": f.dataType.simpleString()} for f in df.schema.fields}


def write_initial_catalog(settings: Settings, spark) -> Path:
    """Describe every sample table in a first catalog file (written atomically)."""
    from ..lake import SAMPLE_TABLES, OWNER, RAW_ZONE

    datasets = {}
    for table in SAMPLE_TABLES:
        df = spark.read.parquet(f"{settings.lake}/{RAW_ZONE}/{table.name}")
        datasets[table.name] = {
            "uri": f"{{lake}}/{RAW_ZONE}/{table.name}", "format": "parquet", "zone": RAW_ZONE, "owner": OWNER,
            "description": table.description, "partitioning": list(table.partition_by),
            "columns": spark_schema_columns(df)}
    path = settings.path("catalog_path")
    atomic_write_text(path, yaml.safe_dump({"version": 1, "datasets": datasets}, sort_keys=False))
    return path
