"""The dataset catalog: names -> URI, format, zone, owner, columns with classification and mask,
and the grants that say which groups may read what, at which level.

The catalog is a YAML file (`catalog_path` setting), validated when it is loaded; every error names
the file, the dataset and the field. URIs may use `{lake}` for the lake root so one catalog serves
a laptop and a cluster.

    version: 1
    grants:                        # group -> level for every dataset: none, masked or full
      data-stewards: full
      data-scientists: masked
      stakeholders: none
    datasets:
      flights:
        uri: '{lake}/raw/flights'
        format: parquet
        zone: raw                  # raw or curated
        owner: data-stewards
        description: ...
        grants: {jfk-ops: masked}  # optional: per-dataset grants, overriding the top-level ones
        row_filters:               # optional: group -> Spark SQL predicate applied to its reads
          jfk-ops: "origin = 'JFK'"
        columns:
          tailnum: {type: string, classification: pii, mask: hash}
          time_hour: {type: timestamp, classification: sensitive, mask: year_only}
          note: {type: string, classification: sensitive, mask: {sql: "left(note, 3)"}}
        roles:                     # optional: modelling roles (workbench.data.roles documents them)
          target: {column: arr_delay, name: late, kind: binary, positive: "> 15"}

Columns default to classification `internal`. Sensitive and pii columns must have a mask; other
columns must not. `check_schema` compares a dataset's columns with the data itself.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings
from ..errors import CatalogError, UnknownDataset
from ..storage import atomic_write_text
from .roles import Roles, parse_roles

__all__ = [
    "Column",
    "Mask",
    "Dataset",
    "Catalog",
    "load_catalog",
    "parse_catalog",
    "write_initial_catalog",
    "LEVELS",
    "LEVEL_NONE",
    "LEVEL_MASKED",
    "LEVEL_FULL",
    "CLASSIFICATIONS",
    "MASK_KINDS",
    "ZONES",
]

LEVEL_NONE, LEVEL_MASKED, LEVEL_FULL = "none", "masked", "full"
LEVELS = (LEVEL_NONE, LEVEL_MASKED, LEVEL_FULL)  # in order of increasing access
CLASSIFICATIONS = ("public", "internal", "sensitive", "pii")
MASKED_CLASSES = frozenset({"sensitive", "pii"})
MASK_KINDS = ("hash", "redact", "null", "drop", "year_only", "sql")
ZONES = ("raw", "curated")

# Which Spark types each built-in mask accepts (simpleString prefixes); None means any type.
MASK_TYPES: dict[str, tuple[str, ...] | None] = {
    "hash": ("string", "int", "bigint", "smallint", "tinyint"),
    "redact": ("string",),
    "null": None,
    "drop": None,
    "year_only": ("date", "timestamp", "timestamp_ntz"),
    "sql": None,
}
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TOP_KEYS = frozenset({"version", "grants", "datasets"})
DATASET_KEYS = frozenset(
    {"uri", "format", "zone", "owner", "description", "partitioning", "columns", "grants", "row_filters", "roles"}
)
COLUMN_KEYS = frozenset({"type", "classification", "mask", "description"})


@dataclass(frozen=True)
class Mask:
    kind: str  # one of MASK_KINDS
    sql: str = ""  # the Spark SQL expression when kind == "sql"

    def __str__(self) -> str:
        return f"sql: {self.sql}" if self.kind == "sql" else self.kind


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str = ""
    classification: str = "internal"
    mask: Mask | None = None


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
    grants: dict[str, str] = field(default_factory=dict)  # per-dataset overrides: group -> level
    row_filters: dict[str, str] = field(default_factory=dict)  # group -> Spark SQL predicate
    roles: Roles = field(default_factory=Roles)  # modelling roles (workbench.data.roles), optional

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass
class Catalog:
    path: Path
    datasets: dict[str, Dataset] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, str] = field(default_factory=dict)  # group -> level for every dataset

    def get(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise UnknownDataset(unknown_dataset_message(name, self.datasets, self.path))
        return self.datasets[name]

    def grants_for(self, dataset: Dataset) -> dict[str, str]:
        """group -> level for one dataset: the top-level grants with the dataset's own on top."""
        return {**self.grants, **dataset.grants}

    @property
    def groups(self) -> list[str]:
        names = set(self.grants)
        for ds in self.datasets.values():
            names.update(ds.grants)
        return sorted(names)


def unknown_dataset_message(name: str, known: Iterable[str], path: Path | str) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"No dataset named '{name}' in the catalog {path}.{hint} Known datasets: {', '.join(known)}."


# ---- loading and validation ------------------------------------------------------------------
def load_catalog(settings: Settings) -> Catalog:
    path = settings.path("catalog_path")
    if not path.exists():
        raise CatalogError(
            f"No catalog at {path}. Run `workbench lake init` to create the sample lake and its catalog, or set WORKBENCH_CATALOG_PATH."
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path} is not valid YAML: {exc}") from exc
    return parse_catalog(raw, path, settings.lake)


def parse_catalog(raw: Any, path: Path | str, lake: str) -> Catalog:
    """Validate a catalog document and build the Catalog. Raises CatalogError naming file, dataset and field."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{path}: the catalog must be a mapping with 'datasets' and 'grants', found a {type(raw).__name__}."
        )
    _unknown_keys(path, "the catalog", raw, TOP_KEYS)
    grants = _grants(path, "top-level 'grants'", raw.get("grants"))
    datasets_raw = raw.get("datasets") or {}
    if not isinstance(datasets_raw, dict):
        raise CatalogError(
            f"{path}: 'datasets' must be a mapping of dataset names, found a {type(datasets_raw).__name__}."
        )
    datasets = {str(name): _dataset(path, str(name), spec, lake, grants) for name, spec in datasets_raw.items()}
    return Catalog(path=path, datasets=datasets, raw=raw, grants=grants)


def _unknown_keys(path: Path, where: str, spec: dict, known: frozenset[str]) -> None:
    for key in spec:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise CatalogError(
                f"{path}: {where} has an unknown field '{key}'.{hint} Known fields: {', '.join(sorted(known))}."
            )


def _grants(path: Path, where: str, spec: Any) -> dict[str, str]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise CatalogError(
            f"{path}: {where} must map group names to a level ({', '.join(LEVELS)}), found a {type(spec).__name__}."
        )
    out = {}
    for group, level in spec.items():
        group = str(group)
        if not GROUP_RE.match(group):
            raise CatalogError(
                f"{path}: {where}: group name '{group}' is invalid; use letters, digits, '.', '_' and '-'."
            )
        if level not in LEVELS:
            close = difflib.get_close_matches(str(level), LEVELS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise CatalogError(
                f"{path}: {where}: group '{group}' is granted an undefined level '{level}'; expected one of {', '.join(LEVELS)}.{hint}"
            )
        out[group] = level
    return out


def _dataset(path: Path, name: str, spec: Any, lake: str, top_grants: dict[str, str]) -> Dataset:
    where = f"dataset '{name}'"
    if not isinstance(spec, dict):
        raise CatalogError(
            f"{path}: {where} must be a mapping of fields (uri, owner, columns, ...), found a {type(spec).__name__}."
        )
    _unknown_keys(path, where, spec, DATASET_KEYS)

    def need(key: str) -> str:
        if not spec.get(key):
            raise CatalogError(f"{path}: {where} has no '{key}'. Add it.")
        return str(spec[key])

    zone = str(spec.get("zone", "raw"))
    if zone not in ZONES:
        raise CatalogError(f"{path}: {where}, field 'zone': expected one of {', '.join(ZONES)}, found '{zone}'.")
    columns_raw = spec.get("columns") or {}
    if not isinstance(columns_raw, dict):
        raise CatalogError(f"{path}: {where}, field 'columns' must map column names to their description.")
    columns = tuple(_column(path, name, str(col), c) for col, c in columns_raw.items())
    grants = _grants(path, f"{where}, field 'grants'", spec.get("grants"))
    row_filters = _row_filters(path, where, spec.get("row_filters"), {**top_grants, **grants})
    partitioning = spec.get("partitioning") or ()
    if isinstance(partitioning, str) or not all(isinstance(p, str) for p in partitioning):
        raise CatalogError(f"{path}: {where}, field 'partitioning' must be a list of column names.")
    return Dataset(
        name=name,
        uri=need("uri").replace("{lake}", lake),
        format=str(spec.get("format", "parquet")),
        owner=need("owner"),
        description=str(spec.get("description", "")),
        zone=zone,
        partitioning=tuple(partitioning),
        columns=columns,
        grants=grants,
        row_filters=row_filters,
        roles=parse_roles(path, name, spec.get("roles"), [c.name for c in columns]),
    )


def _row_filters(path: Path, where: str, spec: Any, grants: dict[str, str]) -> dict[str, str]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise CatalogError(f"{path}: {where}, field 'row_filters' must map group names to a Spark SQL predicate.")
    out = {}
    for group, predicate in spec.items():
        group = str(group)
        if grants.get(group, LEVEL_NONE) == LEVEL_NONE:
            raise CatalogError(
                f"{path}: {where}, field 'row_filters': group '{group}' has a row filter but no grant to this dataset. "
                f"Grant it a level ('masked' or 'full') in 'grants', or remove the filter."
            )
        if not isinstance(predicate, str) or not predicate.strip():
            raise CatalogError(
                f"{path}: {where}, field 'row_filters': the filter of group '{group}' must be a non-empty Spark SQL predicate."
            )
        out[group] = predicate.strip()
    return out


def _column(path: Path, dataset: str, name: str, spec: Any) -> Column:
    where = f"dataset '{dataset}', column '{name}'"
    spec = spec or {}
    if not isinstance(spec, dict):
        raise CatalogError(
            f"{path}: {where} must be a mapping (type, classification, mask), found a {type(spec).__name__}."
        )
    _unknown_keys(path, where, spec, COLUMN_KEYS)
    ctype = str(spec.get("type", "string"))
    classification = str(spec.get("classification", "internal"))
    if classification not in CLASSIFICATIONS:
        raise CatalogError(
            f"{path}: {where}, field 'classification': expected one of {', '.join(CLASSIFICATIONS)}, found '{classification}'."
        )
    mask = _mask(path, where, spec.get("mask"))
    if classification in MASKED_CLASSES and mask is None:
        raise CatalogError(
            f"{path}: {where} is classified '{classification}' but has no 'mask'. Add one of {', '.join(MASK_KINDS[:-1])} or {{sql: <expression>}}."
        )
    if classification not in MASKED_CLASSES and mask is not None:
        raise CatalogError(
            f"{path}: {where} has a mask but is classified '{classification}'; masks apply to sensitive and pii columns. Classify it sensitive or pii, or remove the mask."
        )
    if mask is not None:
        accepted = MASK_TYPES[mask.kind]
        if accepted is not None and ctype not in accepted:
            raise CatalogError(
                f"{path}: {where}, field 'mask': '{mask.kind}' applies to columns of type {', '.join(accepted)}; this column is '{ctype}'. Use null, drop or a sql mask."
            )
    return Column(name, ctype, str(spec.get("description", "")), classification, mask)


def _mask(path: Path, where: str, spec: Any) -> Mask | None:
    if spec is None:
        return None
    if isinstance(spec, dict):
        if set(spec) != {"sql"} or not isinstance(spec["sql"], str) or not spec["sql"].strip():
            raise CatalogError(
                f"{path}: {where}, field 'mask': a custom mask is written {{sql: <Spark SQL expression>}}, found a mapping with keys {', '.join(map(str, spec))}."
            )
        return Mask("sql", spec["sql"].strip())
    if spec not in MASK_KINDS or spec == "sql":
        close = difflib.get_close_matches(str(spec), MASK_KINDS[:-1], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise CatalogError(
            f"{path}: {where}, field 'mask': unknown mask '{spec}'; expected one of {', '.join(MASK_KINDS[:-1])} or {{sql: <expression>}}.{hint}"
        )
    return Mask(str(spec))


# ---- checking against the data ---------------------------------------------------------------
def check_schema(catalog: Catalog, dataset: Dataset, schema) -> list[str]:
    """Compare the catalog's columns with a Spark schema of the data.

    Raises CatalogError for a catalog column that is not in the data or has another type.
    Returns the names of data columns the catalog does not describe (unclassified: never released
    at the masked level).
    """
    types = {f.name: f.dataType.simpleString() for f in schema.fields}
    for col in dataset.columns:
        if col.name not in types:
            raise CatalogError(
                f"{catalog.path}: dataset '{dataset.name}', column '{col.name}': not in the data at {dataset.uri}. "
                f"Columns in the data: {', '.join(types)}. Fix the name or remove the column."
            )
        if types[col.name] != col.type:
            raise CatalogError(
                f"{catalog.path}: dataset '{dataset.name}', column '{col.name}', field 'type': the catalog says "
                f"'{col.type}', the data has '{types[col.name]}'. Correct the catalog."
            )
    return [name for name in types if dataset.column(name) is None]


# ---- the first catalog of a new lake ---------------------------------------------------------
def spark_schema_columns(df) -> dict[str, dict[str, str]]:
    return {f.name: {"type": f.dataType.simpleString()} for f in df.schema.fields}


def write_initial_catalog(settings: Settings, spark) -> Path:
    """Describe every sample table in a first catalog file (written atomically). Every column starts
    `internal`; stewards then classify the sensitive ones and give them masks."""
    from ..lake import OWNER, RAW_ZONE, SAMPLE_TABLES

    datasets = {}
    for table in SAMPLE_TABLES:
        df = spark.read.parquet(f"{settings.lake}/{RAW_ZONE}/{table.name}")
        datasets[table.name] = {
            "uri": f"{{lake}}/{RAW_ZONE}/{table.name}",
            "format": "parquet",
            "zone": RAW_ZONE,
            "owner": OWNER,
            "description": table.description,
            "partitioning": list(table.partition_by),
            "columns": spark_schema_columns(df),
        }
        if table.roles:
            datasets[table.name]["roles"] = table.roles
    grants = {OWNER: LEVEL_FULL, "data-scientists": LEVEL_MASKED}
    path = settings.path("catalog_path")
    atomic_write_text(path, yaml.safe_dump({"version": 1, "grants": grants, "datasets": datasets}, sort_keys=False))
    return path
